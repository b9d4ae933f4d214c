# Sourced by scripts/services.sh: a standalone Valkey server for the Valkey lane of
# scripts/test (the standalone-Redis suites of stent-redis run against it).
#
# Valkey comes from Debian's source package (no binary is reachable): the first run
# downloads the tarball, checks its sha256, builds valkey-server in a scratch directory
# (a few minutes) and keeps only the binary, in $services_dir/valkey-9.1.2/; later runs
# reuse it. Starts it on 127.0.0.1:${STENT_VALKEY_PORT:-6390} unless a Valkey already
# answers there, and a 3-master Valkey cluster on ${STENT_VALKEY_CLUSTER_PORTS:-7201 7202 7203}
# (formed as scripts/services.d/redis-cluster.sh forms Redis's), and exports:
#   STENT_VALKEY_URL           redis://127.0.0.1:PORT
#   STENT_VALKEY_CLUSTER_URL   redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3
# A preset STENT_VALKEY_URL is used as given: nothing is built or started. Safe to run
# again: a running server is left as it is.

valkey_version=9.1.2
valkey_tarball_url=http://deb.debian.org/debian/pool/main/v/valkey/valkey_${valkey_version}.orig.tar.gz
valkey_tarball_sha256=8e8557da7426a51b4e0fb514a65ef6241dc7c85cb408243af389070abf379cec
valkey_tarball_dir=valkey-io-valkey-7f1dffe

# Downloads, checks and builds the source in $1, leaving $1/$valkey_tarball_dir/src/valkey-server.
# Every step is checked by hand: set -e does not apply where this is called (`|| …`).
valkey_build() { # scratch-dir log
  local tarball="$1/valkey.orig.tar.gz" sum
  curl -fsSL --retry 3 -o "$tarball" "$valkey_tarball_url" || {
    echo "downloading $valkey_tarball_url failed" >&2
    return 1
  }
  sum=$(sha256sum "$tarball" | cut -d' ' -f1) || return 1
  if [ "$sum" != "$valkey_tarball_sha256" ]; then
    echo "SHA-256 MISMATCH for $valkey_tarball_url:" >&2
    echo "  expected $valkey_tarball_sha256" >&2
    echo "  got      $sum" >&2
    return 1
  fi
  tar -xzf "$tarball" -C "$1" || { echo "unpacking $tarball failed" >&2; return 1; }
  [ -d "$1/$valkey_tarball_dir" ] || {
    echo "the tarball did not unpack to $valkey_tarball_dir/" >&2
    return 1
  }
  make -C "$1/$valkey_tarball_dir" -j2 BUILD_TLS=no >"$2" 2>&1 || {
    tail -n 40 "$2" >&2
    echo "building Valkey failed (full log: $2)" >&2
    return 1
  }
  [ -x "$1/$valkey_tarball_dir/src/valkey-server" ] || {
    echo "the build left no src/valkey-server (log: $2)" >&2
    return 1
  }
}

start_valkey() {
  if [ -n "${STENT_VALKEY_URL:-}" ]; then
    export STENT_VALKEY_URL
    return 0
  fi
  local port=${STENT_VALKEY_PORT:-6390}
  local bin_dir="$services_dir/valkey-$valkey_version"
  local server="$bin_dir/valkey-server"
  local run_dir="$services_dir/valkey"
  local log="$services_dir/valkey-build.log"
  local tmp status started

  if [ ! -x "$server" ]; then
    echo "building Valkey $valkey_version from Debian's source package (a few minutes; log: $log)"
    started=$SECONDS
    tmp=$(mktemp -d "$services_dir/valkey-build.XXXXXX") || return 1
    status=0
    valkey_build "$tmp" "$log" || status=$?
    if [ "$status" = 0 ]; then
      # Into place only whole: a rename on the same file system.
      mkdir -p "$bin_dir" &&
        mv "$tmp/$valkey_tarball_dir/src/valkey-server" "$bin_dir/valkey-server.new.$$" &&
        mv -f "$bin_dir/valkey-server.new.$$" "$server" || status=1
    fi
    rm -rf "$tmp"
    if [ "$status" != 0 ]; then
      echo "no Valkey server: the build failed" >&2
      return 1
    fi
    echo "built Valkey $valkey_version in $((SECONDS - started)) s: $server"
  fi

  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    # Something answers: the lane must not quietly run against a Redis.
    if ! redis-cli -p "$port" info server 2>/dev/null | grep -q '^valkey_version:'; then
      echo "a server that is not Valkey answers on 127.0.0.1:$port; stop it or set STENT_VALKEY_PORT" >&2
      return 1
    fi
  else
    echo "starting Valkey $valkey_version on 127.0.0.1:$port"
    mkdir -p "$run_dir"
    "$server" --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
      --dir "$run_dir" --logfile "$run_dir/valkey-$port.log" --pidfile "$run_dir/valkey-$port.pid" || {
      echo "valkey-server did not start (log: $run_dir/valkey-$port.log)" >&2
      return 1
    }
    wait_port 127.0.0.1 "$port" 30 || return 1
  fi
  export STENT_VALKEY_URL=redis://127.0.0.1:$port
  if [ -z "${STENT_VALKEY_CLUSTER_URL:-}" ]; then
    start_redis_cluster "$server" "${STENT_VALKEY_CLUSTER_PORTS:-7201 7202 7203}" valkey-cluster || return 1
    export STENT_VALKEY_CLUSTER_URL=$cluster_url
  fi
}

start_valkey
