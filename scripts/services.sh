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
