# Sourced by scripts/test: makes sure every server the tests talk to is up, and exports
# the STENT_*_URL variables that point the conformance suites at them.

services_dir=${STENT_SERVICES_DIR:-$HOME/.cache/stent/services}
mkdir -p "$services_dir"

wait_port() { # host port seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "no server answered on $1:$2 after $3 s" >&2
  return 1
}

# A server built from a Debian source package (no binary is reachable) for a lane of its own
# (scripts/services.d/valkey.sh, redis8.sh): the first run downloads the tarball, checks its
# sha256, builds it in a scratch directory (a minute or a few) and keeps only the server
# binary, in $services_dir/NAME-VERSION/; later runs reuse it. Then starts it on 127.0.0.1:PORT
# unless the same server already answers there (another server there is an error), and a
# 3-master cluster of it on CLUSTER_PORTS (scripts/services.d/redis-cluster.sh) unless
# CLUSTER_URL_VAR is set. Leaves the standalone URL in $built_url and the cluster's in
# $built_cluster_url (empty when the variable was preset).
#   NAME VERSION TARBALL_URL SHA256 TARBALL_DIR BINARY INFO_LINE PORT CLUSTER_PORTS CLUSTER_URL_VAR
# INFO_LINE is the line of `INFO server` that names the server (`valkey_version:9.1.2`).
start_built_server() {
  local name=$1 version=$2 url=$3 sha256=$4 tarball_dir=$5 binary=$6 info=$7 port=$8
  local cluster_ports=$9 cluster_var=${10}
  local bin_dir="$services_dir/$name-$version"
  local server="$bin_dir/$binary"
  local run_dir="$services_dir/$name"
  local log="$services_dir/$name-build.log"
  local tmp status started sum
  built_url="" built_cluster_url=""

  if [ ! -x "$server" ]; then
    echo "building $name $version from Debian's source package (log: $log)"
    started=$SECONDS
    tmp=$(mktemp -d "$services_dir/$name-build.XXXXXX") || return 1
    status=0
    # Every step is checked by hand: set -e does not apply where this is called (`|| …`).
    if ! curl -fsSL --retry 3 -o "$tmp/orig.tar.gz" "$url"; then
      echo "downloading $url failed" >&2
      status=1
    elif ! sum=$(sha256sum "$tmp/orig.tar.gz" | cut -d' ' -f1) || [ "$sum" != "$sha256" ]; then
      echo "SHA-256 MISMATCH for $url:" >&2
      echo "  expected $sha256" >&2
      echo "  got      $sum" >&2
      status=1
    elif ! tar -xzf "$tmp/orig.tar.gz" -C "$tmp" || [ ! -d "$tmp/$tarball_dir" ]; then
      echo "$tmp/orig.tar.gz did not unpack to $tarball_dir/" >&2
      status=1
    elif ! make -C "$tmp/$tarball_dir" -j2 BUILD_TLS=no >"$log" 2>&1; then
      tail -n 40 "$log" >&2
      echo "building $name failed (full log: $log)" >&2
      status=1
    elif [ ! -x "$tmp/$tarball_dir/src/$binary" ]; then
      echo "the build left no src/$binary (log: $log)" >&2
      status=1
    else
      # Into place only whole: a rename on the same file system.
      mkdir -p "$bin_dir" &&
        mv "$tmp/$tarball_dir/src/$binary" "$bin_dir/$binary.new.$$" &&
        mv -f "$bin_dir/$binary.new.$$" "$server" || status=1
    fi
    rm -rf "$tmp"
    if [ "$status" != 0 ]; then
      echo "no $name server: the build failed" >&2
      return 1
    fi
    echo "built $name $version in $((SECONDS - started)) s: $server"
  fi

  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    # Something answers: the lane must not quietly run against another server.
    if ! redis-cli -p "$port" info server 2>/dev/null | tr -d '\r' | grep -qx "$info"; then
      echo "a server that is not $name $version answers on 127.0.0.1:$port; stop it or choose another port" >&2
      return 1
    fi
  else
    echo "starting $name $version on 127.0.0.1:$port"
    mkdir -p "$run_dir"
    "$server" --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
      --dir "$run_dir" --logfile "$run_dir/$name-$port.log" --pidfile "$run_dir/$name-$port.pid" || {
      echo "$binary did not start (log: $run_dir/$name-$port.log)" >&2
      return 1
    }
    wait_port 127.0.0.1 "$port" 30 || return 1
  fi
  built_url=redis://127.0.0.1:$port
  if [ -z "${!cluster_var:-}" ]; then
    start_redis_cluster "$server" "$cluster_ports" "$name-cluster" || return 1
    built_cluster_url=$cluster_url
  fi
}

start_postgres() {
  if ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
    wait_port 127.0.0.1 5432 30
  fi
  export STENT_POSTGRES_URL=${STENT_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
}

start_redis() {
  if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
    echo "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /tmp --logfile "$services_dir/redis-6379.log"
    wait_port 127.0.0.1 6379 30
  fi
  export STENT_REDIS_URL=${STENT_REDIS_URL:-redis://127.0.0.1:6379}
}

start_services() {
  start_postgres
  start_redis
  # Backends add their own servers below (a Redis Cluster, a DynamoDB-API server).
  local extra
  for extra in "$root"/scripts/services.d/*.sh; do
    [ -e "$extra" ] || continue
    # shellcheck source=/dev/null
    source "$extra"
  done
}
