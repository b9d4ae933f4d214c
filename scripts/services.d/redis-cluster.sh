# Sourced by scripts/services.sh: a 3-master Redis Cluster on loopback ports for the
# cluster lane of stent-redis.
#
# Starts one cluster-mode redis-server per port unless something already answers there,
# forms the cluster only when it is not formed yet, waits for cluster_state:ok, and exports:
#   STENT_REDIS_CLUSTER_URL   redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3
# Safe to run again: a running, healthy cluster is left as it is. Ports come from
# STENT_REDIS_CLUSTER_PORTS (default "7101 7102 7103").

redis_cluster_state() { # port field
  redis-cli -p "$1" cluster info 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"
}

redis_cluster_node() { # dir port [server binary]
  # A node's config file remembers the cluster it was part of; a fresh node needs a fresh
  # file (nothing else is kept: --save "" --appendonly no).
  rm -f "$1/nodes-$2.conf"
  "${3:-redis-server}" --port "$2" --bind 127.0.0.1 --daemonize yes \
    --cluster-enabled yes --cluster-config-file "$1/nodes-$2.conf" \
    --cluster-node-timeout 5000 --save "" --appendonly no \
    --dir "$1" --logfile "$1/redis-$2.log" --pidfile "$1/redis-$2.pid"
}

# Whether every node reports cluster_state:ok and knows all the others, polling up to
# $1 tenths of a second.
redis_cluster_healthy() { # tenths port...
  local tries=$1 i p ok
  shift
  for ((i = 0; i < tries; i++)); do
    ok=1
    for p in "$@"; do
      if [ "$(redis_cluster_state "$p" cluster_state)" != "ok" ] ||
        [ "$(redis_cluster_state "$p" cluster_known_nodes)" != "$#" ]; then
        ok=0
        break
      fi
    done
    [ "$ok" = 1 ] && return 0
    sleep 0.1
  done
  return 1
}

# Whether no node knows any other yet (ready for `redis-cli --cluster create`).
redis_cluster_fresh() { # port...
  local p
  for p in "$@"; do
    [ "$(redis_cluster_state "$p" cluster_known_nodes)" = "1" ] || return 1
  done
}

# With arguments, another cluster of the same shape (scripts/services.d/valkey.sh): the
# server binary, its ports and its directory's name; its URL is left in $cluster_url and
# STENT_REDIS_CLUSTER_URL is not touched.
start_redis_cluster() { # [server ports dir-name]
  local server=${1:-redis-server}
  local ports=(${2:-${STENT_REDIS_CLUSTER_PORTS:-7101 7102 7103}})
  local dir="$services_dir/${3:-redis-cluster}" label=${3:-Redis Cluster}
  local p nodes=() url="" i
  mkdir -p "$dir"

  for p in "${ports[@]}"; do
    nodes+=("127.0.0.1:$p")
    url+="${url:+,}127.0.0.1:$p"
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "starting $label node on 127.0.0.1:$p"
      redis_cluster_node "$dir" "$p" "$server"
    fi
  done
  for p in "${ports[@]}"; do
    wait_port 127.0.0.1 "$p" 30
  done

  if ! redis_cluster_healthy 20 "${ports[@]}"; then
    if redis_cluster_fresh "${ports[@]}"; then
      :
    else
      # Half formed or broken (a node restarted on its own forgot the cluster): nothing
      # is persisted, so start every node afresh.
      echo "resetting the broken $label ${nodes[*]}"
      for p in "${ports[@]}"; do
        redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true
      done
      for p in "${ports[@]}"; do
        for ((i = 0; i < 100; i++)); do
          (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || break
          sleep 0.1
        done
        redis_cluster_node "$dir" "$p" "$server"
      done
      for p in "${ports[@]}"; do
        wait_port 127.0.0.1 "$p" 30
      done
    fi
    echo "forming the $label ${nodes[*]}"
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >"$dir/create.log" 2>&1 || {
      cat "$dir/create.log" >&2
      return 1
    }
    if ! redis_cluster_healthy 300 "${ports[@]}"; then
      echo "the $label ${nodes[*]} did not become healthy" >&2
      for p in "${ports[@]}"; do
        redis-cli -p "$p" cluster info >&2 || true
      done
      return 1
    fi
  fi
  cluster_url=redis+cluster://$url
  [ -n "${1:-}" ] || export STENT_REDIS_CLUSTER_URL=${STENT_REDIS_CLUSTER_URL:-$cluster_url}
}

start_redis_cluster
