#!/usr/bin/env bash
# CASE-12: malformed, empty and tombstone payloads go to tokens.dlq with their reason;
# the valid events around them are counted; the committed offset moves past them.
source "$(dirname "$0")/helpers.sh"

start_processor WINDOW_SECONDS=60 PRICE_PER_HOUR_USD=3.60 IDLE_CLOSE_SECONDS=2
ev() { printf '{"ts":"2025-03-09T08:00:%s","host":"node-1","gpu_index":0,"model":"model-a","prompt_tokens":70,"completion_tokens":30,"latency_ms":850,"event_id":"%s"}' "$1" "$2"; }
{
	printf 'node-1/0|%s\n' "$(ev 10Z e-0001)"
	printf 'node-1/0|%s\n' '{"ts":"2025-03-09T08:00:20Z","host":"node-1","gpu_index":0,"model":"model-a","prompt_tokens":70,'
	printf 'node-1/0|not json at all\n'
	printf 'node-1/0|\n'
	printf 'node-1/0|NULL\n'
	printf 'node-1/0|[1,2,3]\n'
	printf 'node-1/0|%s\n' "$(ev 50Z e-0007)"
} | produce_raw || fail "console producer failed"
wait_for "settled 7" 60

info "W $(mq expect-window node-1 0 2025-03-09T08:00:00Z 2 200 3.3333333333333335 0.0003)" ||
	fail "W: want requests 2, tokens 200, tps 3.333.., cost_per_token 0.0003"
[[ $(metric tokenmeter_dead_letters_all_total) -eq 5 ]] || fail "/metrics dead letters $(metric tokenmeter_dead_letters_all_total), want 5"

dlq_dump >"$WORK/dlq.txt"
info "dead letters: $(cut -f1 "$WORK/dlq.txt" | sort | uniq -c | xargs)"
[[ $(wc -l <"$WORK/dlq.txt") -eq 5 ]] || fail "tokens.dlq holds $(wc -l <"$WORK/dlq.txt") messages, want 5"
for r in invalid_json empty tombstone not_object; do
	grep -q "^$r	" "$WORK/dlq.txt" || fail "no dead letter with reason $r"
done
[[ $(grep -c '^invalid_json	' "$WORK/dlq.txt") -eq 2 ]] || fail "want 2 invalid_json dead letters"
grep -qF 'not json at all' "$WORK/dlq.txt" || fail "original bytes not kept in the dead letter"

sleep 1.5 # one commit interval
stop_processor
part=$(grep -o 'partition [0-9]* offset 2 ' "$WORK/processor0.log" | awk '{print $2}' | head -1)
off=$(committed_offset "$part")
[[ "$off" == 7 ]] || fail "committed offset of partition $part is '$off', want 7"
info "committed offset $off"
