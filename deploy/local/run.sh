#!/usr/bin/env bash
# `make run`: the first-run demo. With the services up and the binary built, it applies
# the migrations, starts the Graph API simulator with a small data set and `convsync all`,
# imports the simulator's pages, backfills them, and sends a gentle stream of signed
# webhooks with the load generator, so conversations arrive while you watch. Ctrl-C stops
# all of it. Everything listens on loopback.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN="$ROOT/bin/convsync"
set -a
# shellcheck disable=SC1091
. "$ROOT/.local/env"
set +a

export META_APP_SECRET=${META_APP_SECRET:-dev-app-secret}
export WEBHOOK_VERIFY_TOKEN=${WEBHOOK_VERIFY_TOKEN:-dev-verify-token}
export API_TOKENS=${API_TOKENS:-dev-api-token-change-me}
export HTTP_ADDR=${HTTP_ADDR:-127.0.0.1:8080}
GRAPHSIM_ADDR=${GRAPHSIM_ADDR:-127.0.0.1:8090}
export GRAPH_API_URL=${GRAPH_API_URL:-http://$GRAPHSIM_ADDR}
DEMO_RATE=${DEMO_RATE:-5}
export LOG_LEVEL=${LOG_LEVEL:-warn} # one line per webhook would flood the terminal

pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "stopping..."
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

wait_http() { # wait_http URL SECONDS
  local i
  for i in $(seq 1 $(( $2 * 10 ))); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "no answer from $1" >&2
  return 1
}

"$BIN" migrate >/dev/null

if [ "$GRAPH_API_URL" = "http://$GRAPHSIM_ADDR" ]; then
  "$BIN" graphsim --addr "$GRAPHSIM_ADDR" --pages 3 --conversations 20 --messages 10 &
  pids+=($!)
  wait_http "$GRAPH_API_URL/v21.0/me/accounts?access_token=demo-user" 20
fi

"$BIN" all &
pids+=($!)
wait_http "http://$HTTP_ADDR/healthz" 60

"$BIN" pages import --user-token demo-user
"$BIN" backfill --all || echo "backfill reported failures (see above)"

"$BIN" loadgen --url "http://$HTTP_ADDR/api/webhook" --secret "$META_APP_SECRET" --pages 3 \
  --rate "$DEMO_RATE" --duration 1h --concurrency 4 >/dev/null &
pids+=($!)

PAGE=104400000000000
cat <<EOF

convsync is running (Ctrl-C stops everything):
  read API   http://$HTTP_ADDR/v1/pages/$PAGE/conversations   (Authorization: Bearer $API_TOKENS)
  OpenAPI    http://$HTTP_ADDR/v1/openapi.json
  webhooks   http://$HTTP_ADDR/api/webhook   (the load generator sends $DEMO_RATE signed webhooks a second)
  metrics    http://$HTTP_ADDR/metrics
  health     http://$HTTP_ADDR/readyz
  Graph API  $GRAPH_API_URL   (simulator; backfilled above)

Try:
  curl -s -H 'Authorization: Bearer $API_TOKENS' 'http://$HTTP_ADDR/v1/pages/$PAGE/conversations?limit=3'

EOF
wait "${pids[1]}"
