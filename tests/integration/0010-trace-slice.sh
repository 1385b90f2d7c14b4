#!/usr/bin/env bash
# Replay a slice of a real trace; the sums in token_usage equal the sums computed
# independently (Python csv) from the same rows; every document obeys the formulas;
# `tokens` and `tokens.dlq` are created with 12 partitions; `report --json` agrees.
source "$(dirname "$0")/helpers.sh"

N=3000
TRACE="$SHARED/data/traces/AzureLLMInferenceTrace_conv.csv"
start_processor WINDOW_SECONDS=10 IDLE_CLOSE_SECONDS=2
"$BIN" produce --host inf-conv --gpus 3 --model conv-model --limit "$N" --no-progress "$TRACE" ||
	fail "producer failed"
wait_for "settled $N" 90

want=$("$PY" - "$TRACE" "$N" <<'PY'
import csv, sys
r = p = c = 0
with open(sys.argv[1], newline="") as f:
    for i, row in enumerate(csv.DictReader(f)):
        if i == int(sys.argv[2]):
            break
        r += 1; p += int(row["ContextTokens"]); c += int(row["GeneratedTokens"])
print(r, p, c)
PY
)
got=$(mq sums)
info "trace slice: $want   token_usage: $got"
[[ "$got" == "$want" ]] || fail "token_usage sums $got != trace sums $want"
mq check-formulas || fail "a document breaks DESIGN 3.3"

for t in "$KAFKA_TOPIC" "$KAFKA_TOPIC.dlq"; do
	parts=$("$REPO/scripts/stack.sh" kafka-topics --describe --topic "$t" |
		sed -n 's/.*PartitionCount: *\([0-9]*\).*/\1/p')
	[[ "$parts" == 12 ]] || fail "topic $t has '$parts' partitions, want 12"
done

read -r r p c <<<"$want"
"$BIN" report --json >"$WORK/report.json" || fail "report failed"
jq -e --argjson r "$r" --argjson p "$p" --argjson c "$c" \
	'.total.requests == $r and .total.prompt_tokens == $p and .total.completion_tokens == $c' \
	"$WORK/report.json" >/dev/null || fail "report totals differ: $(jq -c .total "$WORK/report.json")"
[[ $(metric tokenmeter_dead_letters_all_total) -eq 0 ]] || fail "dead letters in a clean replay"
curl -fsS "http://$HTTP_LISTEN/health" | jq -e '.status == "ok"' >/dev/null || fail "/health not ok"
[[ $(mq count gpu_metrics) -gt 0 ]] || fail "no gpu_metrics documents"
stop_processor
info "ok"
