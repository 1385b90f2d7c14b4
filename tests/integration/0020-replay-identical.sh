#!/usr/bin/env bash
# Replaying the same events gives identical documents (CASE-13 a): a second consumer
# group re-reads the whole topic into the same database: no E11000, no retry loop,
# every event is recognised as already counted, and the documents do not change.
source "$(dirname "$0")/helpers.sh"

N=2000
TRACE="$SHARED/data/traces/AzureLLMInferenceTrace_code.csv"
start_processor WINDOW_SECONDS=10 IDLE_CLOSE_SECONDS=2
"$BIN" produce --host inf-code --gpus 2 --model code-model --limit "$N" --no-progress "$TRACE" ||
	fail "producer failed"
wait_for "settled $N" 90
stop_processor
mq dump >"$WORK/first.jsonl"
[[ -s "$WORK/first.jsonl" ]] || fail "no documents after the first run"

start_processor WINDOW_SECONDS=10 IDLE_CLOSE_SECONDS=2 KAFKA_GROUP="$KAFKA_GROUP-replay"
wait_for "settled $N" 90
dups=$(metric tokenmeter_events_duplicate_total)
[[ "$dups" -eq "$N" ]] || fail "replay: $dups events recognised as counted, want $N"
[[ $(metric tokenmeter_store_errors_total) -eq 0 ]] || fail "store errors during the replay"
stop_processor
mq dump >"$WORK/second.jsonl"
cmp -s "$WORK/first.jsonl" "$WORK/second.jsonl" || {
	diff "$WORK/first.jsonl" "$WORK/second.jsonl" | head -5 >&2
	fail "documents changed after a replay"
}
info "$(wc -l <"$WORK/first.jsonl") documents identical after replaying $N events"
