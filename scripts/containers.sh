# Sourced by scripts/test for the containers lane: a Docker engine, the local images the
# conformance suites start through testcontainers, and the clean-up of their containers.
#
#   start_docker                starts dockerd when no engine answers (installs Debian's
#                               docker.io first when it is missing)
#   build_images                builds each local image that is missing or out of date, and
#                               exports STENT_<BACKEND>_IMAGE for the ones not set already
#   remove_stale_containers     removes the conformance containers whose test run is gone
#   check_containers_removed L  prints the container log L and fails unless every container
#                               it started is gone
#
# No image registry is reachable on the project's machines, so every image is built here:
# a Debian base from debootstrap (the machine's own apt mirror), then PostgreSQL, Redis and
# moto on it. Each image carries the hash of its recipe and is rebuilt only when it is
# missing or its recipe changed.

containers_dir="$root/scripts/containers"
services_dir=${services_dir:-${STENT_SERVICES_DIR:-$HOME/.cache/stent/services}}
mkdir -p "$services_dir"

# The label every conformance container carries (see stent-conformance's servers module).
containers_label=dev.stent.conformance

apt_install() { # package...
  echo "installing $* (Debian packages)"
  {
    apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
  } >"$services_dir/apt-install.log" 2>&1 || {
    cat "$services_dir/apt-install.log" >&2
    return 1
  }
}

start_docker() {
  if docker info >/dev/null 2>&1; then
    echo "Docker engine: $(docker version --format '{{.Server.Version}}') (already running)"
    return 0
  fi
  if ! command -v dockerd >/dev/null 2>&1; then
    # debootstrap builds the base image, which a machine without Docker lacks too.
    apt_install docker.io debootstrap
  fi
  # A daemon that was killed leaves its pid file, and a new one refuses to start over it.
  if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    rm -f /var/run/docker.pid
  fi
  echo "starting dockerd (log: $services_dir/dockerd.log)"
  setsid nohup dockerd >"$services_dir/dockerd.log" 2>&1 </dev/null &
  local i
  for ((i = 0; i < 300; i++)); do
    docker info >/dev/null 2>&1 && break
    sleep 0.1
  done
  if ! docker info >/dev/null 2>&1; then
    echo "dockerd did not answer within 30 s:" >&2
    tail -n 20 "$services_dir/dockerd.log" >&2
    return 1
  fi
  echo "Docker engine: $(docker version --format '{{.Server.Version}}')"
}

# The Debian mirror this machine's apt uses (deb822 or one-line sources).
apt_mirror() {
  local uri
  uri=$(
    {
      awk '/^URIs:/ { uri = $2 } /^Suites:/ && / bookworm( |$)/ && uri { print uri; exit }' \
        /etc/apt/sources.list.d/*.sources 2>/dev/null
      awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null
    } | head -n 1
  )
  echo "${uri:-http://deb.debian.org/debian}"
}

# Whether image $1 exists and was built from the recipe whose hash is $2.
image_current() { # image recipe-hash
  [ "$(docker image inspect --format '{{index .Config.Labels "dev.stent.recipe"}}' "$1" 2>/dev/null)" = "$2" ]
}

recipe_hash() { # directory
  (cd "$1" && find . -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)
}

build_base_image() {
  local image=local/debian:bookworm
  docker image inspect "$image" >/dev/null 2>&1 && return 0
  command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
  local mirror rootfs start=$SECONDS
  mirror=$(apt_mirror)
  rootfs=$(mktemp -d)
  echo "building $image (debootstrap from $mirror)"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$services_dir/debootstrap.log" 2>&1 || {
    tail -n 20 "$services_dir/debootstrap.log" >&2
    rm -rf "$rootfs"
    return 1
  }
  # Packages installed during a build must not try to start their services.
  printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
  chmod +x "$rootfs/usr/sbin/policy-rc.d"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import - "$image" >/dev/null
  rm -rf "$rootfs"
  echo "built $image in $((SECONDS - start)) s"
}

build_image() { # image recipe-directory
  local image=$1 dir=$2 hash context start=$SECONDS
  hash=$(recipe_hash "$dir")
  if image_current "$image" "$hash"; then
    echo "image $image: up to date"
    return 0
  fi
  echo "building $image from $dir"
  context=$(mktemp -d)
  cp -a "$dir"/. "$context"
  if [ -f "$context/Dockerfile" ] && grep -q '^COPY wheels ' "$context/Dockerfile"; then
    # Containers reach the apt mirror but not necessarily the Python index: the wheels come
    # from the host's pip.
    python3 -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$context/wheels" \
      'moto[dynamodb]>=5.2,<5.3' flask flask-cors >"$services_dir/pip-wheel.log" 2>&1 || {
      tail -n 20 "$services_dir/pip-wheel.log" >&2
      rm -rf "$context"
      return 1
    }
  fi
  DOCKER_BUILDKIT=0 docker build --quiet --label "dev.stent.recipe=$hash" -t "$image" "$context" \
    >"$services_dir/docker-build.log" 2>&1 || {
    tail -n 30 "$services_dir/docker-build.log" >&2
    rm -rf "$context"
    return 1
  }
  rm -rf "$context"
  echo "built $image in $((SECONDS - start)) s"
}

build_images() {
  # An image named by the caller is used as it is.
  local need=0
  [ -n "${STENT_POSTGRES_IMAGE:-}" ] || need=1
  [ -n "${STENT_REDIS_IMAGE:-}" ] || need=1
  [ -n "${STENT_DYNAMODB_IMAGE:-}" ] || need=1
  [ "$need" = 1 ] || return 0
  build_base_image
  if [ -z "${STENT_POSTGRES_IMAGE:-}" ]; then
    build_image local/postgres:15 "$containers_dir/postgres"
    export STENT_POSTGRES_IMAGE=local/postgres:15
  fi
  if [ -z "${STENT_REDIS_IMAGE:-}" ]; then
    build_image local/redis:7 "$containers_dir/redis"
    export STENT_REDIS_IMAGE=local/redis:7
  fi
  if [ -z "${STENT_DYNAMODB_IMAGE:-}" ]; then
    build_image local/dynamodb-moto:5.2 "$containers_dir/dynamodb"
    export STENT_DYNAMODB_IMAGE=local/dynamodb-moto:5.2
  fi
}

# Conformance containers whose watched test process is gone: left by a run that was killed
# together with its watchdog. Containers of runs still going (another checkout's) are kept.
remove_stale_containers() {
  local id name pid
  for id in $(docker ps -aq --filter "label=$containers_label"); do
    name=$(docker inspect --format '{{.Name}}' "$id" 2>/dev/null) || continue
    pid=$(docker inspect --format "{{index .Config.Labels \"$containers_label.watch-pid\"}}" "$id" 2>/dev/null)
    if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
      docker rm -f -v "$id" >/dev/null 2>&1 && echo "removed leftover container ${name#/}"
    fi
  done
}

# Prints the container log $1 (a "started" line per container, a "removed" line when its
# watchdog removed it) once every container it started is gone; fails when one stays.
check_containers_removed() { # log
  local log=$1 names name i left
  names=$(sed -n 's/^started container \([^ ]*\).*/\1/p' "$log" | sort -u)
  for ((i = 0; i < 150; i++)); do
    left=""
    for name in $names; do
      docker inspect "$name" >/dev/null 2>&1 && left+=" $name"
    done
    [ -z "$left" ] && break
    sleep 0.1
  done
  cat "$log"
  if [ -z "$names" ]; then
    echo "no container was started" >&2
    return 1
  fi
  if [ -n "$left" ]; then
    echo "still there 15 s after the run ended (removing them now):$left" >&2
    for name in $left; do docker rm -f -v "$name" >/dev/null 2>&1 || true; done
    return 1
  fi
  echo "every container started was removed: $(echo "$names" | wc -w) container(s)"
}
