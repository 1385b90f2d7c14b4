#!/usr/bin/env bash
# DESIGN 2.1: the message key is "<host>/<gpu_index>", so one partition owns a GPU's
# windows. Events of one GPU under another key, or none, could sit on several
# partitions whose writers would overwrite each other's window: they go to
# tokens.dlq with reason bad_key (never silently lost); the well-keyed ones count.
source "$(dirname "$0")/helpers.sh"

start_processor WINDOW_SECONDS=60 PRICE_PER_HOUR_USD=3.60 IDLE_CLOSE_SECONDS=2
ev() { printf '{"ts":"2025-03-09T08:00:%s","host":"node-1","gpu_index":0,"model":"model-a","prompt_tokens":70,"completion_tokens":30,"event_id":"%s"}' "$1" "$2"; }
{
	printf 'node-1/0|%s\n' "$(ev 10Z e-0001)"
	for i in 2 3 4 5 6; do printf 'wrong-%s|%s\n' "$i" "$(ev "${i}0Z" "e-000$i")"; done
	printf 'NULL|%s\n' "$(ev 15Z e-0007)"
	printf 'node-1/0|%s\n' "$(ev 50Z e-0008)"
} | produce_raw || fail "console producer failed"
wait_for "settled 8" 60
info "W $(mq expect-window node-1 0 2025-03-09T08:00:00Z 2 200 3.3333333333333335 0.0003)" ||
	fail "W: only the two well-keyed events may count"
[[ $(mq count token_usage) -eq 1 ]] || fail "a window was written from a badly keyed event"
dlq_dump >"$WORK/dlq.txt"
info "dead letters: $(cut -f1 "$WORK/dlq.txt" | sort | uniq -c | xargs)"
[[ $(grep -c '^bad_key	' "$WORK/dlq.txt") -eq 6 ]] || fail "want 6 bad_key dead letters"
[[ $(metric tokenmeter_dead_letters_all_total) -eq 6 ]] || fail "/metrics must count 6 dead letters"
stop_processor
