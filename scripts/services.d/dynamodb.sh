# Sourced by scripts/services.sh: a DynamoDB-API server (moto, from PyPI) for stent-dynamodb.
#
# Installs moto[server] into a virtualenv under $services_dir once, starts it on a loopback
# port unless something already answers there, and exports:
#   STENT_DYNAMODB_URL   the endpoint the conformance suite talks to
#   STENT_MOTO_SERVER    the server command (moto_server's options -H and -p), for tests that
#                        start and kill their own server
#
# moto's own server handles requests on several threads without a lock, so two conditional
# writes on one item can both pass their condition, and a read can see an item half-written;
# DynamoDB applies each write atomically. moto-serial is moto_server handling one request at
# a time, which gives moto DynamoDB's per-item atomicity.

start_dynamodb() {
  local port=${STENT_MOTO_PORT:-5599}
  local venv="$services_dir/moto-venv"
  local moto_spec='moto[server]>=5.2,<5.3'

  if [ ! -x "$venv/bin/moto_server" ]; then
    echo "installing $moto_spec into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$moto_spec"
  fi
  printf '%s\n' \
    "#!$venv/bin/python" \
    'import sys' \
    'import werkzeug.serving' \
    'from moto import server' \
    '' \
    'def run_simple(*args, **kwargs):' \
    '    kwargs["threaded"] = False' \
    '    return werkzeug.serving.run_simple(*args, **kwargs)' \
    '' \
    'server.run_simple = run_simple' \
    'server.main(sys.argv[1:])' >"$venv/bin/moto-serial"
  chmod +x "$venv/bin/moto-serial"
  export STENT_MOTO_SERVER="$venv/bin/moto-serial"

  if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "starting moto (one request at a time) on 127.0.0.1:$port"
    nohup "$STENT_MOTO_SERVER" -H 127.0.0.1 -p "$port" >"$services_dir/moto-$port.log" 2>&1 &
    disown || true
    wait_port 127.0.0.1 "$port" 60
  fi
  export STENT_DYNAMODB_URL=${STENT_DYNAMODB_URL:-http://127.0.0.1:$port}
  # The local server takes any credentials; programs that read the SDK's standard chain
  # (stent::connect, the CLI) find these instead of probing instance metadata.
  export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-test}
  export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-test}
  export AWS_REGION=${AWS_REGION:-us-east-1}
  export AWS_EC2_METADATA_DISABLED=true
}

start_dynamodb
