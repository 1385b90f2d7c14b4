#!/usr/bin/env bash
# The main job (README, `make demo`): start the local stack from clean data, run one
# processor and two producers replaying the Azure LLM inference traces (code and
# conversation, in full, each on its own host and GPUs), wait until every window is
# written, print the report and check its totals against the traces' own.
# The stack stays up afterwards; `make down` stops it.
#
# Env: TM_SHARED (default <repo>/../shared), PRICE_PER_HOUR_USD (default: one H100
#      GPU-hour, see README), WINDOW_SECONDS, TM_DEMO_TIMEOUT (s, default 300).
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BIN="$TM_REPO/bin/tokenmeter"
SHARED="${TM_SHARED:-$TM_REPO/../shared}"
TRACES="$SHARED/data/traces"
TIMEOUT="${TM_DEMO_TIMEOUT:-300}"
HTTP="127.0.0.1:8080"
export KAFKA_BOOTSTRAP=127.0.0.1:9092
export MONGODB_URI=mongodb://127.0.0.1:27017/tokenmeter
export HTTP_LISTEN="$HTTP"

[[ -x "$BIN" ]] || tm_die "$BIN is missing: run 'make' first"
for f in AzureLLMInferenceTrace_code.csv AzureLLMInferenceTrace_conv.csv; do
	[[ -r "$TRACES/$f" ]] || tm_die "trace $TRACES/$f not found (set TM_SHARED)"
done

echo "== starting the local stack from clean data"
"$TM_SCRIPTS/stack.sh" wipe >/dev/null
"$TM_SCRIPTS/stack.sh" up
"$TM_SCRIPTS/stack.sh" processor-start

echo "== replaying the traces (two producers, in parallel)"
"$BIN" produce --host inf-code --gpus 4 --model azure-code-llm --speed max \
	"$TRACES/AzureLLMInferenceTrace_code.csv" &
code_pid=$!
"$BIN" produce --host inf-conv --gpus 4 --model azure-conv-llm --speed max \
	"$TRACES/AzureLLMInferenceTrace_conv.csv" &
conv_pid=$!
rc=0
wait "$code_pid" || rc=1
wait "$conv_pid" || rc=1
[[ $rc -eq 0 ]] || tm_die "a producer failed (see above)"

# Sum of every counter line NAME{...} VALUE in the processor's /metrics.
metric() {
	curl -fsS "http://$HTTP/metrics" | awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $2 } END { print s + 0 }'
}

echo "== waiting until every window is written"
# records = lines after the header (awk also counts a last line without a newline)
want=$(awk 'FNR > 1 { n++ } END { print n }' "$TRACES"/AzureLLMInferenceTrace_{code,conv}.csv)
deadline=$((SECONDS + TIMEOUT))
while :; do
	seen=$(($(metric tokenmeter_events_counted_total) + $(metric tokenmeter_events_duplicate_total) + $(metric tokenmeter_dead_letters_all_total)))
	pending=$(metric tokenmeter_windows_pending)
	written=$(metric tokenmeter_windows_written_total)
	printf '\r  events %s/%s, windows written %s, pending %s   ' "$seen" "$want" "$written" "$pending"
	if [[ "$seen" -ge "$want" && "$pending" -eq 0 && "$written" -gt 0 ]]; then
		break
	fi
	((SECONDS < deadline)) || { echo; tm_die "timed out after ${TIMEOUT}s (see .stack/logs/processor.log)"; }
	sleep 1
done
echo

echo "== report (token_usage in MongoDB, database tokenmeter)"
"$BIN" report
"$BIN" report --json >"$TM_REPO/.stack/report.json"

echo "== checking the totals against the traces"
python3 - "$TRACES" "$TM_REPO/.stack/report.json" <<'PY'
import csv, json, sys
traces, report = sys.argv[1], sys.argv[2]
req = p = c = 0
for name in ("AzureLLMInferenceTrace_code.csv", "AzureLLMInferenceTrace_conv.csv"):
    with open(f"{traces}/{name}", newline="") as f:
        for row in csv.DictReader(f):
            req += 1
            p += int(row["ContextTokens"])
            c += int(row["GeneratedTokens"])
tot = json.load(open(report))["total"]
got = (tot["requests"], tot["prompt_tokens"], tot["completion_tokens"])
print(f"  traces:      {req:,} requests, {p:,} prompt tokens, {c:,} completion tokens")
print(f"  token_usage: {got[0]:,} requests, {got[1]:,} prompt tokens, {got[2]:,} completion tokens")
if got != (req, p, c):
    sys.exit("  MISMATCH")
print("  totals match")
PY
cat <<EOM

The stack is still up: try
  bin/tokenmeter report            curl http://$HTTP/health
  curl http://$HTTP/gpu/info       curl http://$HTTP/metrics
and 'make down' to stop it.
EOM
