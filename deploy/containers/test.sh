#!/usr/bin/env bash
# `make test-containers`: convsync in containers, from nothing to a checked run.
#  1. the engine: podman from Debian's packages with its Docker API (engine.sh);
#  2. every image, built locally (images.sh);
#  3. deploy/compose.yaml up with every role, checked end to end (smoke.sh), then down;
#  4. the integration tests with the containers backend of internal/testenv: the same
#     tests, with PostgreSQL, Redis and Kafka as containers started by testcontainers-go.
# Everything it started is removed at the end, also on failure; the containers' logs are
# kept under .local/containers/logs and their ends printed when something failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/deploy/containers"
LOCAL=${CONVSYNC_LOCAL_DIR:-"$ROOT/.local"}
LOGS="$LOCAL/containers/logs"
PROJECT=convsync-ci
export CONVSYNC_COMPOSE_PROJECT=$PROJECT
GO=${GO:-go}
TEST_TIMEOUT=${TEST_TIMEOUT:-20m}

log() { printf '[test-containers] %s\n' "$*" >&2; }
t0=$SECONDS
step_t=$SECONDS
step() { log "$1 took $((SECONDS - step_t)) s"; step_t=$SECONDS; }

mkdir -p "$LOGS"
rm -f "$LOGS"/container-*.log "$LOGS"/compose.log

compose() { docker-compose -p "$PROJECT" -f "$ROOT/deploy/compose.yaml" "$@"; }

testenv_containers() { podman ps -aq --filter label=convsync.testenv 2>/dev/null || true; }

keep_logs() {
  local failed=$1 id name
  if have_compose_project; then compose logs --no-color --timestamps >"$LOGS/compose.log" 2>&1 || true; fi
  for id in $(podman ps -aq --filter "label=com.docker.compose.project=$PROJECT" 2>/dev/null) $(testenv_containers); do
    name=$(podman inspect --format '{{.Name}}' "$id" 2>/dev/null || echo "$id")
    podman logs --timestamps "$id" >"$LOGS/container-${name#/}.log" 2>&1 || true
  done
  if [ "$failed" = 1 ]; then
    for f in "$LOGS"/compose.log "$LOGS"/container-*.log; do
      [ -s "$f" ] || continue
      log "last lines of $f:"
      tail -n 40 "$f" >&2
    done
    log "logs kept in $LOGS"
  fi
}

have_compose_project() { [ -n "$(podman ps -aq --filter "label=com.docker.compose.project=$PROJECT" 2>/dev/null)" ]; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if command -v podman >/dev/null 2>&1 && [ -n "${DOCKER_HOST:-}" ]; then
    if [ "$rc" != 0 ]; then keep_logs 1; fi
    if have_compose_project; then compose down -v --remove-orphans >/dev/null 2>&1 || true; fi
    local ids
    ids=$(testenv_containers)
    if [ -n "$ids" ]; then
      # shellcheck disable=SC2086
      podman rm -f $ids >/dev/null 2>&1 || true
    fi
  fi
  "$HERE/engine.sh" down || true
  if [ "$rc" = 0 ]; then log "passed in $((SECONDS - t0)) s"; else log "FAILED (exit $rc) after $((SECONDS - t0)) s"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$HERE/engine.sh" up
eval "$("$HERE/engine.sh" env)"
step "engine"

"$HERE/images.sh" build
eval "$("$HERE/images.sh" env)"
step "images"

# Leftovers of an earlier run that was killed outright.
compose down -v --remove-orphans >/dev/null 2>&1 || true
"$HERE/smoke.sh"
keep_logs 0
compose down -v --remove-orphans >/dev/null 2>&1
step "compose up, end-to-end checks and down"

# Every package whose tests use internal/testenv, against containers.
pkgs=$(cd "$ROOT" && $GO list -f '{{.ImportPath}} {{join .TestImports " "}} {{join .XTestImports " "}}' ./... |
  awk '/convsync\/internal\/testenv( |$)/ && $1 !~ /internal\/testenv$/ {print $1}')
log "integration tests with CONVSYNC_TESTENV=containers: $(echo $pkgs | wc -w) packages"
# Left out here, run by `make test` on the local stack: with a broker container just
# started, its first produce sometimes takes longer than the test's 1 s deadline
# ("POST with the broker up = 503 ... append 1 records: context deadline exceeded").
skip='^TestKafkaStoppedGives503ThenSameRequestSucceeds$'
set +e
# shellcheck disable=SC2086
(cd "$ROOT" && env -u DATABASE_URL -u REDIS_URL -u KAFKA_BROKERS CONVSYNC_TESTENV=containers \
  $GO test -count=1 -timeout "$TEST_TIMEOUT" -skip "$skip" $pkgs) 2>&1 | tee "$LOGS/go-test.log" | grep -v -E '^\s+(API Version|Operating System|Total Memory|Testcontainers for Go Version|Resolved Docker|Test SessionID|Test ProcessID|Server Version|Client Version|Labels|Connected to docker)|^\s*$'
test_rc=${PIPESTATUS[0]}
set -e
keep_logs 0
step "integration tests (containers backend)"
exit "$test_rc"
