#!/usr/bin/env bash
# Kill the processor with SIGKILL in the middle of a replay, restart it: the totals
# are still exact (CASE-09, CASE-13). Then CASE-09 (a) and (c) with their own events.
source "$(dirname "$0")/helpers.sh"

TRACE="$SHARED/data/traces/AzureLLMInferenceTrace_conv.csv"
N=$(awk 'FNR > 1 { n++ } END { print n }' "$TRACE")
start_processor WINDOW_SECONDS=10 IDLE_CLOSE_SECONDS=2
# ~58 min of trace at 500x: about 7 s of replay
"$BIN" produce --host inf-conv --gpus 4 --model conv-model --speed 500 --no-progress "$TRACE" &
prod=$!
wait_for "[[ \$(metric tokenmeter_windows_written_total) -gt 20 ]]" 60
kill9_processor
info "killed the processor after $(grep -c . "$WORK/processor0.log") log lines"
sleep 1
start_processor WINDOW_SECONDS=10 IDLE_CLOSE_SECONDS=2
wait "$prod" || fail "producer failed"
wait_for "settled 1 && [[ \$(mq sums | cut -d' ' -f1) -ge $N ]]" 120
want=$("$PY" -c "
import csv,sys
r=p=c=0
for row in csv.DictReader(open('$TRACE', newline='')):
    r+=1; p+=int(row['ContextTokens']); c+=int(row['GeneratedTokens'])
print(r,p,c)")
got=$(mq sums)
info "trace: $want   token_usage: $got   replayed duplicates: $(metric tokenmeter_events_duplicate_total)"
[[ "$got" == "$want" ]] || fail "after SIGKILL: $got != $want"
mq check-formulas >/dev/null || fail "a document breaks DESIGN 3.3"
stop_processor

# CASE-09 (a) and (c) on a fresh topic: ten 40+20 events 08:00:05..08:00:50 on one
# GPU, then 70+30 @08:01:02, 40+20 @08:00:58 (late but within lateness), 70+30 @08:01:10.
mq dropdb
export KAFKA_TOPIC="$KAFKA_TOPIC-c09" KAFKA_GROUP="$KAFKA_GROUP-c09" MONGODB_URI="${MONGODB_URI}_c09"
ev() { printf '{"ts":"2025-03-09T%s","host":"node-1","gpu_index":0,"model":"model-a","prompt_tokens":%s,"completion_tokens":%s,"event_id":"%s"}\n' "$@"; }
start_processor WINDOW_SECONDS=60 PRICE_PER_HOUR_USD=3.60 ALLOWED_LATENESS_SECONDS=5 IDLE_CLOSE_SECONDS=3600
for i in 1 2 3 4 5 6 7 8 9 10; do ev "08:00:$(printf %02d $((i * 5)))Z" 40 20 "e-$(printf %04d "$i")"; done |
	produce_events || fail "producer failed"
wait_for "[[ \$(metric tokenmeter_events_counted_total) -eq 10 ]]" 30
sleep 1.5
kill9_processor # (a): W is still open, nothing written
[[ $(mq count token_usage) -eq 0 ]] || fail "CASE-09a: a window was written before it closed"
{ ev 08:01:02Z 70 30 e-0011; ev 08:00:58Z 40 20 e-0012; ev 08:01:10Z 70 30 e-0013; } |
	produce_events || fail "producer failed"
start_processor WINDOW_SECONDS=60 PRICE_PER_HOUR_USD=3.60 ALLOWED_LATENESS_SECONDS=5 IDLE_CLOSE_SECONDS=3600
wait_for "[[ \$(mq count token_usage) -eq 1 ]]" 30 # W closed by the watermark of 08:01:10
sleep 1.5
kill9_processor # (c): W acknowledged, W+1 open
start_processor WINDOW_SECONDS=60 PRICE_PER_HOUR_USD=3.60 ALLOWED_LATENESS_SECONDS=5 IDLE_CLOSE_SECONDS=2
wait_for "[[ \$(mq count token_usage) -eq 2 ]]" 30
info "CASE-09c $(mq expect-window node-1 0 2025-03-09T08:00:00Z 11 660 11 9.090909090909091e-05)" ||
	fail "CASE-09c: W"
info "CASE-09c $(mq expect-window node-1 0 2025-03-09T08:01:00Z 2 200 3.3333333333333335 0.0003)" ||
	fail "CASE-09c: W+1"
[[ $(metric tokenmeter_dead_letters_all_total) -eq 0 ]] || fail "CASE-09c: a replayed event was dead-lettered"
stop_processor
