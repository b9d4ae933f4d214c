# Sourced by scripts/services.sh: a Valkey server and a 3-master Valkey cluster for the Valkey
# lane of scripts/test (the Redis suites of stent-redis run against them), built from Debian's
# source package by start_built_server (scripts/services.sh) and kept in
# $services_dir/valkey-9.1.2/. The server listens on 127.0.0.1:${STENT_VALKEY_PORT:-6390},
# the cluster on ${STENT_VALKEY_CLUSTER_PORTS:-7201 7202 7203}. Exports:
#   STENT_VALKEY_URL           redis://127.0.0.1:PORT
#   STENT_VALKEY_CLUSTER_URL   redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3
# A preset STENT_VALKEY_URL is used as given: nothing is built or started. Safe to run
# again: a running server is left as it is.

valkey_version=9.1.2

start_valkey() {
  if [ -n "${STENT_VALKEY_URL:-}" ]; then
    export STENT_VALKEY_URL
    return 0
  fi
  start_built_server valkey "$valkey_version" \
    "http://deb.debian.org/debian/pool/main/v/valkey/valkey_${valkey_version}.orig.tar.gz" \
    8e8557da7426a51b4e0fb514a65ef6241dc7c85cb408243af389070abf379cec \
    valkey-io-valkey-7f1dffe valkey-server "valkey_version:$valkey_version" \
    "${STENT_VALKEY_PORT:-6390}" "${STENT_VALKEY_CLUSTER_PORTS:-7201 7202 7203}" \
    STENT_VALKEY_CLUSTER_URL || return 1
  export STENT_VALKEY_URL=$built_url
  [ -z "$built_cluster_url" ] || export STENT_VALKEY_CLUSTER_URL=$built_cluster_url
}

start_valkey
