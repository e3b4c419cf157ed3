#!/usr/bin/env bash
# A container engine for convsync's container checks and the testcontainers-go backend of
# internal/testenv: podman (Debian's packages) with its Docker-compatible API on a socket
# of the checkout's own, and Debian's docker-compose. Idempotent. Everything lives under
# .local/containers/: containers.conf, the socket, the service's pid and log.
#
#   deploy/containers/engine.sh install|up|down|env
#
# `env` prints the variables that point Docker clients (docker-compose, testcontainers-go)
# at the socket; source its output. When DOCKER_HOST is already set and answers, `up`
# leaves it alone, so a Docker user's own engine is used as is.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOCAL=${CONVSYNC_LOCAL_DIR:-"$ROOT/.local"}
DIR="$LOCAL/containers"
SOCK="$DIR/podman.sock"

log() { printf '[engine] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

install() {
  local pkgs=() p
  for p in podman runc netavark aardvark-dns iptables slirp4netns fuse-overlayfs uidmap debootstrap docker-compose; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || pkgs+=("$p")
  done
  have curl || pkgs+=(curl)
  [ ${#pkgs[@]} -eq 0 ] && return
  have apt-get || die "missing ${pkgs[*]}, and apt-get is not available to install them"
  log "installing ${pkgs[*]}"
  apt-get update -qq >/dev/null
  # Without --no-install-recommends docker-compose pulls in docker.io, a second engine.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
}

# conf writes the settings without which no container starts on this machine kind: the
# shell's nofile limit is 20000 and podman lowers its own nproc limit to 32768, so the
# defaults' setrlimit is refused; crun refuses the hybrid cgroups, runc runs.
conf() {
  mkdir -p "$DIR"
  cat >"$DIR/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
CONF
}

answers() { curl -fsS --max-time 5 --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1; }

up() {
  install
  conf
  export CONTAINERS_CONF="$DIR/containers.conf"
  if answers; then log "podman API already answers on $SOCK"; return; fi
  rm -f "$SOCK"
  log "starting podman system service on $SOCK"
  nohup podman system service --time=0 "unix://$SOCK" >"$DIR/service.log" 2>&1 </dev/null &
  echo $! >"$DIR/service.pid"
  local i
  for i in $(seq 1 100); do
    answers && return
    kill -0 "$(cat "$DIR/service.pid")" 2>/dev/null || die "podman system service exited: see $DIR/service.log"
    sleep 0.1
  done
  die "podman API did not answer on $SOCK in 10 s: see $DIR/service.log"
}

down() {
  if [ -f "$DIR/service.pid" ] && kill -0 "$(cat "$DIR/service.pid")" 2>/dev/null; then
    log "stopping podman system service"
    kill "$(cat "$DIR/service.pid")" || true
  fi
  rm -f "$DIR/service.pid" "$SOCK"
}

env_() {
  cat <<ENV
export CONTAINERS_CONF='$DIR/containers.conf'
export DOCKER_HOST='unix://$SOCK'
export TESTCONTAINERS_RYUK_DISABLED=true
export TESTCONTAINERS_HOST_OVERRIDE=localhost
ENV
}

case "${1:-}" in
install) install; conf ;;
up) up ;;
down) down ;;
env) env_ ;;
*) echo "usage: $0 install|up|down|env" >&2; exit 2 ;;
esac
