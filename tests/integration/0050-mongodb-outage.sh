#!/usr/bin/env bash
# CASE-09 (b) and DESIGN 3.5: MongoDB is unreachable when W is due; the processor
# keeps reading, reports /health 503 naming MongoDB, commits nothing it has not
# written; it is killed with SIGKILL; MongoDB comes back; after a restart both
# windows are exact and /health is 200 again.
source "$(dirname "$0")/helpers.sh"

SETTINGS=(WINDOW_SECONDS=60 PRICE_PER_HOUR_USD=3.60 ALLOWED_LATENESS_SECONDS=5)
ev() { printf '{"ts":"2025-03-09T%s","host":"node-1","gpu_index":0,"model":"model-a","prompt_tokens":%s,"completion_tokens":%s,"event_id":"%s"}\n' "$@"; }
restore_mongo() { "$REPO/scripts/stack.sh" mongo-start >/dev/null 2>&1 || true; }
trap 'restore_mongo; cleanup' EXIT

# no idle close: W must become due by the watermark while MongoDB is down
start_processor "${SETTINGS[@]}" IDLE_CLOSE_SECONDS=3600
for i in 1 2 3 4 5 6 7 8 9 10; do ev "08:00:$(printf %02d $((i * 5)))Z" 40 20 "e-$(printf %04d "$i")"; done |
	produce_events || fail "producer failed"
wait_for "[[ \$(metric tokenmeter_events_counted_total) -eq 10 ]]" 30
"$REPO/scripts/stack.sh" mongo-stop >/dev/null
info "MongoDB stopped"
for i in 1 2 3 4 5; do ev "08:01:${i}0Z" 70 30 "e-$(printf %04d $((10 + i)))"; done |
	produce_events || fail "producer failed"
wait_for "[[ \$(metric tokenmeter_events_counted_total) -eq 15 ]]" 30
wait_for "! curl -fsS http://$HTTP_LISTEN/health >/dev/null" 30
body=$(curl -sS "http://$HTTP_LISTEN/health")
code=$(curl -sS -o /dev/null -w '%{http_code}' "http://$HTTP_LISTEN/health")
info "/health during the outage: $code $body"
[[ "$code" == 503 && "$body" == *mongodb* ]] || fail "/health should be 503 naming MongoDB"
[[ $(metric tokenmeter_windows_written_total) -eq 0 ]] || fail "a window was counted as written"
kill9_processor
restore_mongo
info "MongoDB back"
sleep 2 # FerretDB accepts connections a moment after its port opens
[[ $(mq count token_usage) -eq 0 ]] || fail "documents written during the outage?"

start_processor "${SETTINGS[@]}" IDLE_CLOSE_SECONDS=2
wait_for "[[ \$(mq count token_usage) -eq 2 ]]" 60
info "$(mq expect-window node-1 0 2025-03-09T08:00:00Z 10 600 10 0.0001)" || fail "W"
info "$(mq expect-window node-1 0 2025-03-09T08:01:00Z 5 500 8.333333333333333 0.00012)" || fail "W+1"
curl -fsS "http://$HTTP_LISTEN/health" | jq -e '.status == "ok"' >/dev/null || fail "/health not ok after the outage"
stop_processor
