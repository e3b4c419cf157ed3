#!/usr/bin/env bash
# Brings deploy/compose.yaml up with every role (and Prometheus) on the images named by
# the CONVSYNC_*_IMAGE variables, checks it end to end from the host, and leaves it up:
# the caller (test.sh) brings it down. Signed webhooks go to ingest, their messages are
# read back through the read API, every role's /metrics is scraped directly and through
# Prometheus, and an unsigned webhook must get 401.
#
#   DOCKER_HOST=... deploy/containers/smoke.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PROJECT=${CONVSYNC_COMPOSE_PROJECT:-convsync-ci}
export CONVSYNC_INGEST_PORT=${CONVSYNC_INGEST_PORT:-18080}
export CONVSYNC_API_PORT=${CONVSYNC_API_PORT:-18081}
export CONVSYNC_PROMETHEUS_PORT=${CONVSYNC_PROMETHEUS_PORT:-19090}
export META_APP_SECRET=${META_APP_SECRET:-smoke-app-secret}
export API_TOKENS=${API_TOKENS:-smoke-api-token-0123456789}
INGEST="http://127.0.0.1:$CONVSYNC_INGEST_PORT"
API="http://127.0.0.1:$CONVSYNC_API_PORT"
PROM="http://127.0.0.1:$CONVSYNC_PROMETHEUS_PORT"
MESSAGES=${SMOKE_MESSAGES:-20}

log() { printf '[smoke] %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
compose() { docker-compose -p "$PROJECT" -f "$ROOT/deploy/compose.yaml" "$@"; }

# until SECONDS CMD...: runs CMD until it succeeds, for at most SECONDS.
until_ok() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

# podman runs healthchecks from systemd timers; where there is no systemd (this machine
# kind) nothing runs them and `depends_on: service_healthy` would wait forever, so run
# them here until the stack is up.
hc_pid=
if command -v podman >/dev/null 2>&1 && ! pidof systemd >/dev/null 2>&1; then
  while :; do
    for id in $(podman ps -q --filter "label=com.docker.compose.project=$PROJECT" 2>/dev/null); do
      podman healthcheck run "$id" >/dev/null 2>&1 || true
    done
    sleep 1
  done &
  hc_pid=$!
fi
trap '[ -z "$hc_pid" ] || kill "$hc_pid" 2>/dev/null || true' EXIT

log "compose up: kafka postgres redis migrate processor projector prometheus, then ingest, then api"
# The services that publish a port start one after another: netavark 1.4 can lose the
# masquerade rule of a port published while another container publishes one, and that
# port then times out from 127.0.0.1.
compose up -d --no-build kafka postgres redis migrate processor projector prometheus >&2
compose up -d --no-build --no-deps ingest >&2
compose up -d --no-build --no-deps api >&2

for url in "$INGEST/readyz" "$API/readyz"; do
  until_ok 180 curl -fsS "$url" || die "$url did not answer 200 within 180 s"
done
log "ingest and api are ready"

page=1044$(date +%s%N | tail -c 12)
psid=2077$(date +%s%N | tail -c 12)
sign() { printf 'sha256=%s' "$(printf '%s' "$1" | openssl dgst -sha256 -hmac "$META_APP_SECRET" -r | cut -d' ' -f1)"; }
post() { # post BODY SIGNATURE: prints the status code
  curl -sS -o /dev/null -w '%{http_code}' -X POST "$INGEST/api/webhook" \
    -H 'Content-Type: application/json' -H "X-Hub-Signature-256: $2" --data-binary "$1"
}
now=$(date +%s%3N)
for i in $(seq 1 "$MESSAGES"); do
  body=$(printf '{"object":"page","entry":[{"id":"%s","time":%s,"messaging":[{"sender":{"id":"%s"},"recipient":{"id":"%s"},"timestamp":%s,"message":{"mid":"m_smoke_%s_%s","text":"smoke message %s"}}]}]}' \
    "$page" "$((now + i))" "$psid" "$page" "$((now + i))" "$page" "$i" "$i")
  code=$(post "$body" "$(sign "$body")")
  [ "$code" = 200 ] || die "signed webhook $i answered $code, want 200"
done
code=$(post "$body" "sha256=$(printf '0%.0s' $(seq 1 64))")
[ "$code" = 401 ] || die "webhook with a wrong signature answered $code, want 401"
log "$MESSAGES signed webhooks answered 200, a wrong signature 401"

read_back() {
  local out
  out=$(curl -fsS -H "Authorization: Bearer $API_TOKENS" "$API/v1/pages/$page/conversations/$psid?limit=100") || return 1
  [ "$(printf '%s' "$out" | grep -o 'smoke message [0-9]*' | sort -u | wc -l)" -eq "$MESSAGES" ]
}
until_ok 60 read_back || die "the read API did not return all $MESSAGES messages within 60 s: $(curl -sS -H "Authorization: Bearer $API_TOKENS" "$API/v1/pages/$page/conversations/$psid?limit=100" | head -c 600)"
code=$(curl -sS -o /dev/null -w '%{http_code}' "$API/v1/pages/$page/conversations/$psid")
[ "$code" = 401 ] || die "read API without a token answered $code, want 401"
log "all $MESSAGES messages read back through the read API; no token gives 401"

metrics=$(curl -fsS "$INGEST/metrics") || die "ingest /metrics did not answer"
ok=$(awk '/^convsync_webhook_request_duration_seconds_count\{.*outcome="ok"/ {s += $2} END {print s + 0}' <<<"$metrics")
[ "$ok" -ge "$MESSAGES" ] || die "ingest counted $ok webhooks with outcome ok, want at least $MESSAGES"
api_metrics=$(curl -fsS "$API/metrics") || die "api /metrics did not answer"
# grep reads a here-string, not a pipe: `grep -q` leaving early would fail the pipe's writer.
grep -q '^convsync_api_request_duration_seconds_count' <<<"$api_metrics" ||
  die "api /metrics has no convsync_api_request_duration_seconds_count"
log "ingest /metrics counts $ok webhooks with outcome ok; api /metrics counts requests"

targets_up() {
  [ "$(curl -fsS "$PROM/api/v1/query?query=sum(up%7Bjob%3D%22convsync%22%7D)" | grep -o '"value":\[[^]]*\]' | grep -o '"[0-9.]*"\]' | tr -d '"]')" = 4 ]
}
until_ok 60 targets_up || die "Prometheus does not see the 4 roles up within 60 s: $(curl -sS "$PROM/api/v1/targets" | head -c 800)"
log "Prometheus scrapes all 4 roles (up == 1)"
