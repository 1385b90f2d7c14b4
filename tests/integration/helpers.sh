# shellcheck shell=bash
# Shared by the integration tests (sourced). Each test gets its own topic, consumer
# group, database and HTTP port, so tests never see each other's data. They run
# against the REAL servers of scripts/stack.sh; a server that cannot be reached is a
# failure, never a skip.
set -euo pipefail

IT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$IT_DIR/../.." && pwd)"
# shellcheck source=../../scripts/lib.sh
source "$REPO/scripts/lib.sh"
BIN="${TM_BIN:-$REPO/bin/tokenmeter}"
SHARED="${TM_SHARED:-$REPO/../shared}"
PY="$TM_VENV/bin/python"
NAME="$(basename "$0" .sh)"
ID="${NAME//[^a-z0-9]/}-$$"
WORK="$(mktemp -d "/tmp/tm-it-$ID.XXXX")"
PORT=$((20000 + ($$ % 20000)))

export KAFKA_BOOTSTRAP=127.0.0.1:9092
export KAFKA_TOPIC="it-$ID"
export KAFKA_GROUP="g-$ID"
export MONGODB_URI="mongodb://127.0.0.1:27017/it_${ID//-/_}"
export HTTP_LISTEN="127.0.0.1:$PORT"
export GPU_SEED="$SHARED/data/gpu_seed.example.json"
export HOST_NAME=node-1
export LOG_LEVEL="${LOG_LEVEL:-info}"
# A processor killed with SIGKILL leaves the group only when its session times out:
# 6 s (the broker's minimum) instead of librdkafka's 45 s keeps the tests short.
export KAFKA_PROP_SESSION_TIMEOUT_MS=6000 KAFKA_PROP_HEARTBEAT_INTERVAL_MS=1000

PROC_PIDS=()

info() { printf '  [%s] %s\n' "$NAME" "$*"; }
fail() {
	printf '  [%s] FAIL: %s\n' "$NAME" "$*" >&2
	for f in "$WORK"/processor*.log; do
		[[ -f "$f" ]] && { echo "--- last lines of $f" >&2; tail -n 25 "$f" >&2; }
	done
	exit 1
}

cleanup() {
	local pid
	for pid in "${PROC_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
	"$PY" "$IT_DIR/mq.py" dropdb >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT

# Fails (never skips) when a server is not there.
require_stack() {
	timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/9092' 2>/dev/null ||
		fail "Kafka is not reachable on 127.0.0.1:9092 (scripts/stack.sh up)"
	timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/27017' 2>/dev/null ||
		fail "MongoDB server is not reachable on 127.0.0.1:27017 (scripts/stack.sh up)"
	[[ -x "$PY" ]] || fail "no $PY: run scripts/deps.sh"
}

# start_processor [ENV=VALUE...]: starts `tokenmeter process`, sets PROC_PID.
start_processor() {
	local log
	log="$WORK/processor${#PROC_PIDS[@]}.log"
	env "$@" "$BIN" process >"$log" 2>&1 &
	PROC_PID=$!
	PROC_PIDS+=("$PROC_PID")
	local i
	for ((i = 0; i < 100; i++)); do
		kill -0 "$PROC_PID" 2>/dev/null || fail "processor exited at start"
		grep -q 'consuming ' "$log" && return 0
		sleep 0.1
	done
	fail "processor did not start within 10 s"
}

stop_processor() {
	kill -TERM "$PROC_PID"
	local rc=0
	wait "$PROC_PID" || rc=$?
	[[ $rc -eq 0 ]] || fail "processor exited with status $rc after SIGTERM"
}

kill9_processor() {
	kill -KILL "$PROC_PID"
	wait "$PROC_PID" 2>/dev/null || true
}

# metric NAME: sum of the counter's samples in /metrics.
metric() {
	curl -fsS "http://$HTTP_LISTEN/metrics" |
		awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $2 } END { print s + 0 }'
}

# wait_for CONDITION-COMMAND [TIMEOUT_S]: polls every 0.5 s.
wait_for() {
	local cond="$1" t="${2:-60}" i
	for ((i = 0; i < t * 2; i++)); do
		if eval "$cond"; then return 0; fi
		sleep 0.5
	done
	fail "timed out after ${t}s waiting for: $cond"
}

# settled N: the processor has handled N messages and written every window.
settled() {
	local n="$1" seen
	seen=$(($(metric tokenmeter_events_counted_total) + $(metric tokenmeter_events_duplicate_total) + $(metric tokenmeter_dead_letters_all_total)))
	[[ $seen -ge $n && $(metric tokenmeter_windows_pending) -eq 0 ]]
}

mq() { "$PY" "$IT_DIR/mq.py" "$@"; }

# produce_events < JSONL: publishes DESIGN 2.1 events read from stdin.
produce_events() { "$BIN" produce --format events --no-progress -; }

# produce_raw < LINES: each line "KEY|VALUE" published verbatim (VALUE "NULL" = tombstone),
# through Kafka's own console producer, so malformed bytes reach the topic as they are.
produce_raw() {
	"$REPO/scripts/stack.sh" kafka-class kafka.tools.ConsoleProducer \
		--bootstrap-server "$KAFKA_BOOTSTRAP" --topic "$KAFKA_TOPIC" \
		--property parse.key=true --property key.separator='|' --property null.marker=NULL \
		--producer-property acks=all >/dev/null
}

# committed_offset PARTITION: the group's committed offset (or "-").
committed_offset() {
	"$REPO/scripts/stack.sh" kafka-class kafka.admin.ConsumerGroupCommand \
		--bootstrap-server "$KAFKA_BOOTSTRAP" --describe --group "$KAFKA_GROUP" 2>/dev/null |
		awk -v t="$KAFKA_TOPIC" -v p="$1" '$2 == t && $3 == p { print $4 }'
}

# dlq_dump: one line per dead letter: "reason<TAB>value".
dlq_dump() {
	"$REPO/scripts/stack.sh" kafka-class kafka.tools.ConsoleConsumer \
		--bootstrap-server "$KAFKA_BOOTSTRAP" --topic "$KAFKA_TOPIC.dlq" --from-beginning \
		--timeout-ms 8000 --property print.headers=true --property headers.separator=, \
		--property print.value=true 2>/dev/null |
		sed -n 's/^.*reason:\([a-z_]*\),.*\t\(.*\)$/\1\t\2/p; s/^.*reason:\([a-z_]*\),[^\t]*$/\1\t/p'
}

require_stack
