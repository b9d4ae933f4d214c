# Sourced by scripts/services.sh: a Redis 8.6 server and a 3-master Redis 8.6 cluster for the
# Redis 8 lane of scripts/test and the benches (the newest Redis next to Debian's stable 7.0
# on 6379 and 7101–7103). Built from Debian's source package (experimental) by
# start_built_server (scripts/services.sh) and kept in $services_dir/redis8-8.6.3/. The server
# listens on 127.0.0.1:${STENT_REDIS8_PORT:-6391}, the cluster on
# ${STENT_REDIS8_CLUSTER_PORTS:-7211 7212 7213}. Exports:
#   STENT_REDIS8_URL           redis://127.0.0.1:PORT
#   STENT_REDIS8_CLUSTER_URL   redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3
# A preset STENT_REDIS8_URL is used as given: nothing is built or started. Safe to run
# again: a running server is left as it is.

redis8_version=8.6.3

start_redis8() {
  if [ -n "${STENT_REDIS8_URL:-}" ]; then
    export STENT_REDIS8_URL
    return 0
  fi
  start_built_server redis8 "$redis8_version" \
    "http://deb.debian.org/debian/pool/main/r/redis/redis_${redis8_version}.orig.tar.gz" \
    58d0d1eb49a1ea6c2179659707fec171b1e2e2b8d5157ed2ec59d1d66ad5a654 \
    "redis-$redis8_version" redis-server "redis_version:$redis8_version" \
    "${STENT_REDIS8_PORT:-6391}" "${STENT_REDIS8_CLUSTER_PORTS:-7211 7212 7213}" \
    STENT_REDIS8_CLUSTER_URL || return 1
  export STENT_REDIS8_URL=$built_url
  [ -z "$built_cluster_url" ] || export STENT_REDIS8_CLUSTER_URL=$built_cluster_url
}

start_redis8
