#!/usr/bin/env bash
# Builds every image convsync's containers need from local sources only, since no image
# registry is reachable here: a Debian base made with debootstrap from the machine's own
# Debian mirror, a Go builder holding the host's Go toolchain, a runtime base, and
# PostgreSQL, Redis, Kafka and Prometheus images from Debian's packages and the Kafka jars
# deploy/local resolves. Then convsync's own image from the repository's Dockerfile with
# those bases as its build arguments. Needs podman (deploy/containers/engine.sh install).
# Idempotent: the Debian base is made once, the rest reuses podman's layer cache.
#
#   deploy/containers/images.sh build|env|clean
#
# `env` prints the variables that point deploy/compose.yaml and internal/testenv at these
# images; source its output.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/deploy/containers"
LOCAL=${CONVSYNC_LOCAL_DIR:-"$ROOT/.local"}
DIR="$LOCAL/containers"
LOGS="$DIR/logs"
export CONTAINERS_CONF=${CONTAINERS_CONF:-"$DIR/containers.conf"}

GOROOT_HOST=$(go env GOROOT)
GO_VERSION=$(go env GOVERSION)
GO_VERSION=${GO_VERSION#go}

BASE=localhost/debian:bookworm
APT=localhost/convsync-apt:bookworm
GO_IMAGE=localhost/convsync-go:$GO_VERSION
RUNTIME=localhost/convsync-runtime:bookworm
POSTGRES=localhost/convsync-postgres:15
REDIS=localhost/convsync-redis:7
KAFKA=localhost/convsync-kafka:3.9.1
PROMETHEUS=localhost/convsync-prometheus:bookworm
CONVSYNC=localhost/convsync:local

log() { printf '[images] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }
exists() { podman image exists "$1"; }

# mirror is the Debian mirror apt uses on this machine (deb822 or one-line sources).
mirror() {
  local m
  m=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$m" ] || m=$(awk '$1 == "deb" && $3 !~ /security/ {print $2; exit}' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null)
  echo "${m:-http://deb.debian.org/debian}"
}

base() {
  if exists "$BASE"; then return; fi
  have debootstrap || die "debootstrap is missing: run deploy/containers/engine.sh install"
  local rootfs="$DIR/rootfs" m
  m=$(mirror)
  log "debootstrap bookworm from $m (once)"
  rm -rf "$rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" "$m" >"$LOGS/debootstrap.log" 2>&1 ||
    die "debootstrap failed: see $LOGS/debootstrap.log"
  tar -C "$rootfs" -c . | podman import -q - "$BASE" >/dev/null
  rm -rf "$rootfs"
}

# kafka_libs prints a folder holding the Kafka jars: deploy/local's when it resolved them
# for the current pom, else our own, resolved the same way.
kafka_libs() {
  local stamp libs
  stamp=$(sha256sum "$ROOT/deploy/local/kafka/pom.xml" | cut -c1-16)
  for libs in "$LOCAL/kafka/libs" "$DIR/kafka-libs"; do
    if [ -f "$libs/.stamp" ] && [ "$(cat "$libs/.stamp")" = "$stamp" ]; then echo "$libs"; return; fi
  done
  libs="$DIR/kafka-libs"
  if ! have mvn; then
    log "installing maven"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends maven openjdk-17-jre-headless >/dev/null
  fi
  log "resolving Apache Kafka jars from Maven Central (once)"
  rm -rf "$libs" && mkdir -p "$libs"
  mvn -q -B -f "$ROOT/deploy/local/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$libs" -DincludeScope=runtime >"$LOGS/mvn.log" 2>&1 ||
    die "mvn could not resolve Kafka: see $LOGS/mvn.log"
  echo "$stamp" >"$libs/.stamp"
  echo "$libs"
}

# build NAME TAG CONTEXT [podman build arguments...]: its output goes to a log, shown on failure.
build() {
  local name=$1 tag=$2 ctx=$3
  shift 3
  local t0=$SECONDS
  if ! podman build -q --layers -t "$tag" "$@" "$ctx" >"$LOGS/build-$name.log" 2>&1; then
    tail -n 40 "$LOGS/build-$name.log" >&2
    die "building $tag failed: see $LOGS/build-$name.log"
  fi
  log "built $tag ($((SECONDS - t0)) s)"
}

build_all() {
  mkdir -p "$LOGS"
  have podman || die "podman is missing: run deploy/containers/engine.sh install"
  base
  # The package lists are refreshed once a week: a stale list asks the mirror for files it no longer has.
  build apt "$APT" "$HERE/base" -f "$HERE/base/apt.Containerfile" --build-arg BASE_IMAGE="$BASE" \
    --build-arg APT_WEEK="$(date +%G-%V)"
  build go "$GO_IMAGE" "$GOROOT_HOST" -f "$HERE/base/go.Containerfile" --build-arg APT_IMAGE="$APT"
  build runtime "$RUNTIME" "$HERE/base" -f "$HERE/base/runtime.Containerfile" \
    --build-arg APT_IMAGE="$APT" --build-arg BASE_IMAGE="$BASE"

  local ctx="$DIR/kafka-context" libs
  libs=$(kafka_libs)
  rm -rf "$ctx" && mkdir -p "$ctx/libs"
  cp -l "$libs"/*.jar "$ctx/libs/" 2>/dev/null || cp "$libs"/*.jar "$ctx/libs/"
  cp "$HERE/kafka/Containerfile" "$HERE/kafka/run.sh" "$ROOT/deploy/local/kafka/log4j.properties" "$ctx/"

  # The services' images mostly wait on the mirror, convsync's on the CPU: side by side.
  local pids=() failed=0 pid
  build postgres "$POSTGRES" "$HERE/postgres" --build-arg APT_IMAGE="$APT" & pids+=($!)
  build redis "$REDIS" "$HERE/redis" --build-arg APT_IMAGE="$APT" & pids+=($!)
  build kafka "$KAFKA" "$ctx" --build-arg APT_IMAGE="$APT" & pids+=($!)
  build prometheus "$PROMETHEUS" "$HERE/prometheus" --build-arg APT_IMAGE="$APT" & pids+=($!)
  # The host's module and build caches, mounted for the build only: go mod download
  # finds what the host already has and fetches the rest through GOPROXY.
  local modcache gocache
  modcache=$(go env GOMODCACHE) gocache=$(go env GOCACHE)
  mkdir -p "$modcache" "$gocache"
  build convsync "$CONVSYNC" "$ROOT" -f "$ROOT/Dockerfile" \
    --build-arg GO_IMAGE="$GO_IMAGE" --build-arg RUNTIME_IMAGE="$RUNTIME" \
    --build-arg GOPROXY="$(go env GOPROXY)" \
    -v "$modcache:/go/pkg/mod" -v "$gocache:/root/.cache/go-build" || failed=1
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  [ "$failed" = 0 ] || die "some images did not build"
}

env_() {
  cat <<ENV
export CONVSYNC_IMAGE='$CONVSYNC'
export CONVSYNC_GO_IMAGE='$GO_IMAGE'
export CONVSYNC_RUNTIME_IMAGE='$RUNTIME'
export CONVSYNC_POSTGRES_IMAGE='$POSTGRES'
export CONVSYNC_REDIS_IMAGE='$REDIS'
export CONVSYNC_KAFKA_IMAGE='$KAFKA'
export CONVSYNC_PROMETHEUS_IMAGE='$PROMETHEUS'
ENV
}

clean() {
  local img
  for img in "$CONVSYNC" "$PROMETHEUS" "$KAFKA" "$REDIS" "$POSTGRES" "$RUNTIME" "$GO_IMAGE" "$APT" "$BASE"; do
    podman rmi -f "$img" >/dev/null 2>&1 || true
  done
  rm -rf "$DIR/kafka-context" "$DIR/rootfs"
}

case "${1:-}" in
build) build_all ;;
env) env_ ;;
clean) clean ;;
*) echo "usage: $0 build|env|clean" >&2; exit 2 ;;
esac
