#!/usr/bin/env bash
# Local tokenmeter stack on loopback: ZooKeeper 3.9.2 + Kafka 3.7 broker (or Kafka in KRaft
# mode) + FerretDB (or a mongod found on PATH). Run scripts/deps.sh first.
#
# Usage: scripts/stack.sh COMMAND
#   up [--kraft]          start what is not running, wait until healthy (idempotent)
#   down                  stop everything this script started (SIGTERM, 20 s, then SIGKILL)
#   status                one line per service
#   wipe                  down, then delete the state directory
#   kafka-stop|kafka-start  stop/start only the broker, keeping its data (outage tests)
#   mongo-stop|mongo-start  stop/start only the MongoDB server, keeping its data
#   topics                list topics with partition counts
#   kafka-topics ARGS...  run the Kafka topic tool with --bootstrap-server filled in
#   kafka-class CLASS ARGS...  run any Kafka class on the broker's classpath, e.g.
#                         kafka.tools.ConsoleProducer, kafka.tools.ConsoleConsumer,
#                         kafka.admin.ConsumerGroupCommand (pass --bootstrap-server yourself)
#   env                   print export lines for KAFKA_BOOTSTRAP and MONGODB_URI
#   processor-start       start `bin/tokenmeter process` in the background (settings from the
#                         environment; HTTP on 127.0.0.1:8080 unless HTTP_LISTEN says otherwise;
#                         GPU_SEED defaults to a copy of the example seed), log in logs/processor.log
#   processor-stop        SIGTERM the processor (it flushes closed windows and commits)
#
# Env: TOKENMETER_STATE (default <repo>/.stack: data, logs, pid files), TOKENMETER_CACHE,
#      TM_KAFKA_PORT (9092), TM_KAFKA_CONTROLLER_PORT (9093, KRaft), TM_ZK_PORT (2181),
#      TM_MONGO_PORT (27017), TM_HEALTH_TIMEOUT (60 s), TM_STOP_TIMEOUT (20 s),
#      TM_MONGO=auto|mongod|ferretdb (auto: mongod when on PATH, else FerretDB).
#      Addresses (default 127.0.0.1; ZooKeeper and the KRaft controller always stay there):
#      TM_KAFKA_HOST (broker listener), TM_KAFKA_ADVERTISED (host:port, default the
#      listener), TM_MONGO_HOST (MongoDB server bind address).
#      Authentication (FerretDB only): TM_MONGO_USER with TM_MONGO_PASSWORD_FILE creates
#      that user in database TM_MONGO_DB (default tokenmeter) at first start and makes every
#      command require it (FerretDB --test-enable-new-auth, SCRAM).
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HOST=127.0.0.1
KAFKA_HOST="${TM_KAFKA_HOST:-$HOST}"
MONGO_HOST="${TM_MONGO_HOST:-$HOST}"
KAFKA_PORT="${TM_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${TM_KAFKA_CONTROLLER_PORT:-9093}"
ZK_PORT="${TM_ZK_PORT:-2181}"
MONGO_PORT="${TM_MONGO_PORT:-27017}"
HEALTH_TIMEOUT="${TM_HEALTH_TIMEOUT:-60}"
STOP_TIMEOUT="${TM_STOP_TIMEOUT:-20}"
STATE="${TOKENMETER_STATE:-$TM_REPO/.stack}"
RUN="$STATE/run"
LOGS="$STATE/logs"
MODE_FILE="$STATE/kafka/mode"
KAFKA_ADVERTISED="${TM_KAFKA_ADVERTISED:-$KAFKA_HOST:$KAFKA_PORT}"
MONGO_USER="${TM_MONGO_USER:-}"
MONGO_DB="${TM_MONGO_DB:-tokenmeter}"

for p in "$KAFKA_PORT" "$CONTROLLER_PORT" "$ZK_PORT" "$MONGO_PORT" "$HEALTH_TIMEOUT" "$STOP_TIMEOUT"; do
	[[ "$p" =~ ^[0-9]+$ ]] || tm_die "not a number: '$p' (check TM_*_PORT / TM_*_TIMEOUT)"
done

usage() {
	sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'
}

# ---------------------------------------------------------------- process helpers

pidfile() { printf '%s/%s.pid\n' "$RUN" "$1"; }

# True when PID is alive and was started by this script for this state directory
# (its command line names a file under $STATE). Never trust a bare pid file.
is_ours() {
	local pid="$1"
	[[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
	[[ -r "/proc/$pid/cmdline" ]] || return 1
	tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qF -- "$STATE/"
}

# Prints the pid of service NAME when it runs; removes a stale pid file.
running_pid() {
	local f pid
	f="$(pidfile "$1")"
	[[ -f "$f" ]] || return 1
	pid="$(<"$f")"
	if is_ours "$pid"; then
		printf '%s\n' "$pid"
		return 0
	fi
	rm -f "$f"
	return 1
}

# port_open PORT [HOST]
port_open() {
	# shellcheck disable=SC2016  # expanded by the inner bash
	timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "${2:-$HOST}" "$1" 2>/dev/null
}

# Sends a ZooKeeper four-letter word and prints the answer.
zk_4lw() {
	# shellcheck disable=SC2016  # expanded by the inner bash
	timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/$1" && printf "%s" "$2" >&3 && cat <&3' \
		"$HOST" "$ZK_PORT" "$1" 2>/dev/null
}

# spawn NAME LOGFILE CMD...: starts CMD detached (own session, no stdin, no lock fd).
spawn() {
	local name="$1" out="$2"
	shift 2
	mkdir -p "$RUN" "$LOGS"
	printf '=== %s: scripts/stack.sh starts %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$name" >>"$out"
	setsid "$@" </dev/null >>"$out" 2>&1 9>&- &
	local pid=$! i
	printf '%s\n' "$pid" >"$(pidfile "$name")"
	# Until the child has exec'd, its command line is this script's and is_ours() would call
	# it gone (seen under load): wait for the exec (or its death) before anyone checks.
	for ((i = 0; i < 100; i++)); do
		is_ours "$pid" && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
}

show_log() {
	local f
	for f in "$@"; do
		if [[ -s "$f" ]]; then
			printf -- '--- last 30 lines of %s\n' "$f" >&2
			tail -n 30 "$f" >&2
		fi
	done
}

# stop NAME LABEL: SIGTERM, wait STOP_TIMEOUT s, then SIGKILL. Only our own processes.
stop_service() {
	local name="$1" label="$2" pid i
	if ! pid="$(running_pid "$name")"; then
		rm -f "$(pidfile "$name")"
		printf '%-10s stopped (was not running)\n' "$label"
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < STOP_TIMEOUT * 4; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.25
	done
	if kill -0 "$pid" 2>/dev/null; then
		tm_warn "$label (pid $pid) still up after ${STOP_TIMEOUT}s, sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		for ((i = 0; i < 40; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.25
		done
	fi
	rm -f "$(pidfile "$name")"
	printf '%-10s stopped (pid %s)\n' "$label" "$pid"
}

# wait_port NAME LABEL HOST:PORT LOG...: until HOST:PORT accepts connections or the process dies.
wait_port() {
	local name="$1" label="$2" host="${3%:*}" port="${3##*:}"
	shift 3
	local deadline=$((SECONDS + HEALTH_TIMEOUT))
	while ! port_open "$port" "$host"; do
		if ! running_pid "$name" >/dev/null; then
			show_log "$@"
			tm_die "$label exited during start-up"
		fi
		if ((SECONDS >= deadline)); then
			show_log "$@"
			tm_die "$label did not open $host:$port within ${HEALTH_TIMEOUT}s"
		fi
		sleep 0.5
	done
}

# refuse to start on a port some other process holds: check_port_free LABEL PORT [HOST]
check_port_free() {
	local label="$1" port="$2" host="${3:-$HOST}"
	if port_open "$port" "$host"; then
		tm_die "$host:$port is in use by a process this script did not start (wanted for $label)"
	fi
}

# ---------------------------------------------------------------- java / kafka helpers

JAVA_BIN=""
KAFKA_HOME=""
need_java() {
	[[ -n "$JAVA_BIN" ]] || JAVA_BIN="$(tm_java)" || tm_die "java not found (install OpenJDK 17)"
}
need_kafka() {
	need_java
	[[ -n "$KAFKA_HOME" ]] || KAFKA_HOME="$(tm_kafka_home)" ||
		tm_die "Kafka jars not in $TM_CACHE (run scripts/deps.sh)"
}
need_zk() {
	need_java
	[[ -f "$TM_ZK_HOME/$TM_MARKER" ]] ||
		tm_die "ZooKeeper $TM_ZK_VERSION jars not in $TM_CACHE (run scripts/deps.sh)"
}

# Kafka command-line class (tools log WARN and above to stderr).
kafka_class() {
	need_kafka
	mkdir -p "$STATE/kafka"
	local cfg="$STATE/kafka/tools-log4j.properties"
	[[ -f "$cfg" ]] || cat >"$cfg" <<-'EOF'
		log4j.rootLogger=WARN, stderr
		log4j.appender.stderr=org.apache.log4j.ConsoleAppender
		log4j.appender.stderr.Target=System.err
		log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
		log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
	EOF
	"$JAVA_BIN" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto \
		-Djava.awt.headless=true -Djava.net.preferIPv4Stack=true \
		-Dlog4j.configuration="file:$cfg" \
		-cp "$KAFKA_HOME/libs/*" "$@"
}

topic_tool() {
	kafka_class org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_HOST:$KAFKA_PORT" "$@"
}

kafka_mode() {
	if [[ -f "$MODE_FILE" ]]; then cat "$MODE_FILE"; else echo zk; fi
}

# ---------------------------------------------------------------- ZooKeeper

zk_healthy() { [[ "$(zk_4lw ruok)" == imok ]]; }

start_zk() {
	local pid
	if pid="$(running_pid zookeeper)"; then
		if zk_healthy; then
			printf '%-10s already running (pid %s, %s:%s)\n' zookeeper "$pid" "$HOST" "$ZK_PORT"
			return 0
		fi
		wait_zk "$pid"
		return 0
	fi
	need_zk
	check_port_free zookeeper "$ZK_PORT"
	local dir="$STATE/zookeeper"
	mkdir -p "$dir/data" "$LOGS"
	cat >"$dir/zoo.cfg" <<-EOF
		# generated by scripts/stack.sh
		tickTime=2000
		initLimit=10
		syncLimit=5
		dataDir=$dir/data
		clientPort=$ZK_PORT
		clientPortAddress=$HOST
		maxClientCnxns=100
		admin.enableServer=false
		4lw.commands.whitelist=ruok,srvr
		autopurge.snapRetainCount=3
		autopurge.purgeInterval=1
	EOF
	cat >"$dir/logback.xml" <<-EOF
		<configuration>
		  <appender name="FILE" class="ch.qos.logback.core.rolling.RollingFileAppender">
		    <file>$LOGS/zookeeper.log</file>
		    <rollingPolicy class="ch.qos.logback.core.rolling.FixedWindowRollingPolicy">
		      <fileNamePattern>$LOGS/zookeeper.log.%i</fileNamePattern>
		      <minIndex>1</minIndex><maxIndex>3</maxIndex>
		    </rollingPolicy>
		    <triggeringPolicy class="ch.qos.logback.core.rolling.SizeBasedTriggeringPolicy">
		      <maxFileSize>10MB</maxFileSize>
		    </triggeringPolicy>
		    <encoder><pattern>%d{ISO8601} [myid:%X{myid}] - %-5p [%t:%C{1}@%L] - %m%n</pattern></encoder>
		  </appender>
		  <root level="INFO"><appender-ref ref="FILE"/></root>
		</configuration>
	EOF
	spawn zookeeper "$LOGS/zookeeper.out" \
		"$JAVA_BIN" -Xms64m -Xmx256m -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError \
		-Djava.awt.headless=true -Djava.net.preferIPv4Stack=true \
		-Dzookeeper.log.dir="$LOGS" \
		-Dlogback.configurationFile="$dir/logback.xml" \
		-Dzookeeper.admin.enableServer=false \
		-Dzookeeper.4lw.commands.whitelist=ruok,srvr \
		-cp "$TM_ZK_HOME/libs/*" \
		org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg"
	wait_zk "$(running_pid zookeeper)"
}

wait_zk() {
	local pid="$1" deadline=$((SECONDS + HEALTH_TIMEOUT))
	wait_port zookeeper zookeeper "$HOST:$ZK_PORT" "$LOGS/zookeeper.log" "$LOGS/zookeeper.out"
	until zk_healthy; do
		if ((SECONDS >= deadline)) || ! running_pid zookeeper >/dev/null; then
			show_log "$LOGS/zookeeper.log" "$LOGS/zookeeper.out"
			tm_die "zookeeper does not answer 'ruok' with 'imok' on $HOST:$ZK_PORT"
		fi
		sleep 0.5
	done
	printf '%-10s running (pid %s, %s:%s, ruok=imok)\n' zookeeper "$pid" "$HOST" "$ZK_PORT"
}

# ---------------------------------------------------------------- Kafka

write_kafka_config() {
	local mode="$1" dir="$STATE/kafka"
	mkdir -p "$dir" "$LOGS"
	{
		echo "# generated by scripts/stack.sh ($mode mode)"
		if [[ "$mode" == kraft ]]; then
			cat <<-EOF
				process.roles=broker,controller
				node.id=0
				controller.quorum.voters=0@$HOST:$CONTROLLER_PORT
				listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
				controller.listener.names=CONTROLLER
				inter.broker.listener.name=PLAINTEXT
				listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
				log.dirs=$dir/kraft-data
			EOF
		else
			cat <<-EOF
				broker.id=0
				listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT
				listener.security.protocol.map=PLAINTEXT:PLAINTEXT
				zookeeper.connect=$HOST:$ZK_PORT
				zookeeper.connection.timeout.ms=18000
				log.dirs=$dir/zk-data
			EOF
		fi
		cat <<-EOF
			advertised.listeners=PLAINTEXT://$KAFKA_ADVERTISED
			num.partitions=12
			default.replication.factor=1
			offsets.topic.replication.factor=1
			transaction.state.log.replication.factor=1
			transaction.state.log.min.isr=1
			group.initial.rebalance.delay.ms=0
			auto.create.topics.enable=false
			num.network.threads=3
			num.io.threads=4
			num.recovery.threads.per.data.dir=1
			log.retention.hours=168
			log.segment.bytes=1073741824
			log.retention.check.interval.ms=300000
		EOF
	} >"$dir/server.properties"
	cat >"$dir/log4j.properties" <<-EOF
		# generated by scripts/stack.sh: everything to $LOGS/kafka.log
		log4j.rootLogger=INFO, file
		log4j.appender.file=org.apache.log4j.RollingFileAppender
		log4j.appender.file.File=$LOGS/kafka.log
		log4j.appender.file.MaxFileSize=10MB
		log4j.appender.file.MaxBackupIndex=3
		log4j.appender.file.layout=org.apache.log4j.PatternLayout
		log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
		log4j.logger.kafka=INFO
		log4j.logger.org.apache.kafka=INFO
		log4j.logger.org.apache.zookeeper=WARN
		log4j.logger.kafka.request.logger=WARN
		log4j.logger.kafka.controller=INFO
		log4j.logger.kafka.log.LogCleaner=INFO
		log4j.logger.state.change.logger=WARN
		log4j.logger.kafka.authorizer.logger=WARN
	EOF
}

# KRaft: format the storage once, with a random cluster id.
format_kraft() {
	local data="$STATE/kafka/kraft-data" id
	[[ -f "$data/meta.properties" ]] && return 0
	id="$(kafka_class kafka.tools.StorageTool random-uuid)" || tm_die "StorageTool random-uuid failed"
	printf '%s\n' "$id" >"$STATE/kafka/cluster-id"
	kafka_class kafka.tools.StorageTool format -t "$id" -c "$STATE/kafka/server.properties" \
		>>"$LOGS/kafka-format.log" 2>&1 || {
		show_log "$LOGS/kafka-format.log"
		tm_die "kafka.tools.StorageTool format failed"
	}
	printf '%-10s storage formatted (KRaft cluster id %s)\n' kafka "$id"
}

start_kafka() {
	local mode="$1" pid
	if pid="$(running_pid kafka)"; then
		local cur
		cur="$(kafka_mode)"
		[[ "$cur" == "$mode" ]] ||
			tm_die "kafka is running in $cur mode; run 'scripts/stack.sh down' first"
		wait_kafka "$pid" "$mode" "already running"
		return 0
	fi
	need_kafka
	check_port_free kafka "$KAFKA_PORT" "$KAFKA_HOST"
	[[ "$mode" == zk ]] || check_port_free "kafka controller" "$CONTROLLER_PORT"
	write_kafka_config "$mode"
	[[ "$mode" == zk ]] || format_kraft
	printf '%s\n' "$mode" >"$MODE_FILE"
	spawn kafka "$LOGS/kafka.out" \
		"$JAVA_BIN" -Xms128m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
		-XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
		-XX:+ExitOnOutOfMemoryError \
		-Djava.awt.headless=true -Djava.net.preferIPv4Stack=true \
		-Dkafka.logs.dir="$LOGS" \
		-Dlog4j.configuration="file:$STATE/kafka/log4j.properties" \
		-cp "$KAFKA_HOME/libs/*" \
		kafka.Kafka "$STATE/kafka/server.properties"
	wait_kafka "$(running_pid kafka)" "$mode" "running"
}

wait_kafka() {
	local pid="$1" mode="$2" what="$3" deadline=$((SECONDS + HEALTH_TIMEOUT))
	wait_port kafka kafka "$KAFKA_HOST:$KAFKA_PORT" "$LOGS/kafka.log" "$LOGS/kafka.out"
	until topic_tool --list >/dev/null 2>"$STATE/kafka/health.err"; do
		if ((SECONDS >= deadline)) || ! running_pid kafka >/dev/null; then
			show_log "$LOGS/kafka.log" "$LOGS/kafka.out" "$STATE/kafka/health.err"
			tm_die "kafka does not answer on $KAFKA_HOST:$KAFKA_PORT (TopicCommand --list failed)"
		fi
		sleep 1
	done
	printf '%-10s %s (pid %s, %s:%s, %s mode, answers TopicCommand --list)\n' \
		kafka "$what" "$pid" "$KAFKA_HOST" "$KAFKA_PORT" "$mode"
}

# ---------------------------------------------------------------- MongoDB (mongod or FerretDB)

mongo_impl() {
	case "${TM_MONGO:-auto}" in
	mongod) echo mongod ;;
	ferretdb) echo ferretdb ;;
	auto) if command -v mongod >/dev/null 2>&1; then echo mongod; else echo ferretdb; fi ;;
	*) tm_die "TM_MONGO must be auto, mongod or ferretdb" ;;
	esac
}

start_mongo() {
	local pid impl dir="$STATE/mongo"
	if pid="$(running_pid mongo)"; then
		wait_port mongo mongo "$MONGO_HOST:$MONGO_PORT" "$LOGS/mongo.log"
		printf '%-10s already running (pid %s, %s:%s)\n' mongo "$pid" "$MONGO_HOST" "$MONGO_PORT"
		return 0
	fi
	check_port_free mongo "$MONGO_PORT" "$MONGO_HOST"
	impl="$(mongo_impl)"
	local -a auth=()
	local password=""
	if [[ -n "$MONGO_USER" ]]; then
		[[ "$impl" == ferretdb ]] ||
			tm_die "TM_MONGO_USER: user set-up is only implemented for FerretDB (set TM_MONGO=ferretdb)"
		[[ -r "${TM_MONGO_PASSWORD_FILE:-}" ]] || tm_die "TM_MONGO_USER needs a readable TM_MONGO_PASSWORD_FILE"
		password="$(<"$TM_MONGO_PASSWORD_FILE")"
		[[ -n "$password" ]] || tm_die "TM_MONGO_PASSWORD_FILE is empty"
		auth=(--test-enable-new-auth --setup-database="$MONGO_DB" --setup-username="$MONGO_USER")
		impl="ferretdb (auth: user $MONGO_USER in $MONGO_DB)"
	fi
	if [[ "$impl" == mongod ]]; then
		mkdir -p "$dir/mongod-data" "$LOGS"
		spawn mongo "$LOGS/mongo.log" \
			"$(command -v mongod)" --bind_ip "$MONGO_HOST" --port "$MONGO_PORT" \
			--dbpath "$dir/mongod-data"
	else
		[[ -x "$TM_FERRETDB_BIN" ]] || tm_die "FerretDB not in $TM_CACHE/bin (run scripts/deps.sh)"
		mkdir -p "$dir/ferretdb-data" "$dir/ferretdb-state" "$LOGS"
		# the password travels in the environment (FERRETDB_SETUP_PASSWORD), not on the command line
		FERRETDB_SETUP_PASSWORD="$password" spawn mongo "$LOGS/mongo.log" \
			env DO_NOT_TRACK=1 "$TM_FERRETDB_BIN" --handler=sqlite --sqlite-url="file:$dir/ferretdb-data/" \
			--state-dir="$dir/ferretdb-state" --listen-addr="$MONGO_HOST:$MONGO_PORT" \
			--debug-addr=- --telemetry=disable --test-telemetry-url="http://$HOST:9/" \
			--log-level=INFO --no-log-uuid "${auth[@]}"
	fi
	printf '%s\n' "$impl" >"$dir/impl"
	wait_port mongo mongo "$MONGO_HOST:$MONGO_PORT" "$LOGS/mongo.log"
	printf '%-10s running (pid %s, %s:%s, %s)\n' mongo "$(running_pid mongo)" "$MONGO_HOST" "$MONGO_PORT" "$impl"
}

# ---------------------------------------------------------------- commands

cmd_up() {
	local mode=zk pid
	case "${1:-}" in
	"") ;;
	--kraft) mode=kraft ;;
	*) tm_die "up: unknown option '$1' (only --kraft)" ;;
	esac
	if running_pid kafka >/dev/null && [[ "$(kafka_mode)" != "$mode" ]]; then
		tm_die "kafka is running in $(kafka_mode) mode; run 'scripts/stack.sh down' first"
	fi
	if [[ "$mode" == zk ]]; then
		start_zk
	elif pid="$(running_pid zookeeper)"; then
		tm_warn "zookeeper (pid $pid) is running but not used in KRaft mode"
	fi
	start_kafka "$mode"
	start_mongo
	printf 'KAFKA_BOOTSTRAP=%s:%s MONGODB_URI=mongodb://%s:%s/tokenmeter\n' \
		"$KAFKA_HOST" "$KAFKA_PORT" "$MONGO_HOST" "$MONGO_PORT"
}

# The processor of the local stack. Its command line names $STATE/gpu_seed.json, which
# is what is_ours() recognises.
cmd_processor_start() {
	local pid bin="$TM_REPO/bin/tokenmeter" seed="$STATE/gpu_seed.json" i
	if pid="$(running_pid processor)"; then
		printf '%-10s running (pid %s, already)\n' processor "$pid"
		return 0
	fi
	[[ -x "$bin" ]] || tm_die "$bin is missing: run 'make' first"
	if [[ ! -f "$seed" ]]; then
		cp "${GPU_SEED:-$TM_REPO/config/gpu_seed.json}" "$seed"
	fi
	HTTP_LISTEN="${HTTP_LISTEN:-127.0.0.1:8080}" \
		KAFKA_BOOTSTRAP="${KAFKA_BOOTSTRAP:-$KAFKA_HOST:$KAFKA_PORT}" \
		MONGODB_URI="${MONGODB_URI:-mongodb://$MONGO_HOST:$MONGO_PORT/tokenmeter}" \
		nohup "$bin" process --gpu-seed "$seed" >>"$LOGS/processor.log" 2>&1 9>&- &
	pid=$!
	printf '%s\n' "$pid" >"$(pidfile processor)"
	for ((i = 0; i < 40; i++)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -n 20 "$LOGS/processor.log" >&2
			tm_die "processor exited at start (see $LOGS/processor.log)"
		fi
		grep -q 'consuming ' "$LOGS/processor.log" 2>/dev/null && break
		sleep 0.25
	done
	printf '%-10s running (pid %s, log %s)\n' processor "$pid" "$LOGS/processor.log"
}

cmd_down() {
	stop_service processor processor
	stop_service kafka kafka
	stop_service zookeeper zookeeper
	stop_service mongo mongo
}

status_line() {
	local name="$1" addr="$2" extra="${3:-}" pid
	if pid="$(running_pid "$name")"; then
		printf '%-10s running  pid %-8s %s%s\n' "$name" "$pid" "$addr" "$extra"
	else
		printf '%-10s stopped  %-12s %s%s\n' "$name" "" "$addr" "$extra"
	fi
}

cmd_status() {
	local impl=ferretdb
	[[ -f "$STATE/mongo/impl" ]] && impl="$(<"$STATE/mongo/impl")"
	status_line processor "${HTTP_LISTEN:-127.0.0.1:8080}"
	status_line zookeeper "$HOST:$ZK_PORT"
	status_line kafka "$KAFKA_HOST:$KAFKA_PORT" " ($(kafka_mode) mode)"
	status_line mongo "$MONGO_HOST:$MONGO_PORT" " ($impl)"
}

cmd_topics() {
	running_pid kafka >/dev/null || tm_die "kafka is not running"
	topic_tool --describe --exclude-internal | grep -E '^Topic:.*PartitionCount' |
		sed -E 's/[[:space:]]*TopicId:[[:space:]]*[^[:space:]]+//; s/[[:space:]]*Configs:.*$//' || true
}

main() {
	local cmd="${1:-}"
	[[ $# -eq 0 ]] || shift
	case "$cmd" in
	"" | -h | --help | help)
		usage
		return 0
		;;
	env)
		printf 'export KAFKA_BOOTSTRAP=%s:%s\n' "$KAFKA_HOST" "$KAFKA_PORT"
		printf 'export MONGODB_URI=mongodb://%s:%s/tokenmeter\n' "$MONGO_HOST" "$MONGO_PORT"
		return 0
		;;
	esac
	mkdir -p "$STATE" "$RUN" "$LOGS"
	# one stack.sh at a time per state directory (fd 9 is closed for the servers)
	exec 9>"$STATE/.lock"
	flock -w 300 9 || tm_die "another scripts/stack.sh holds $STATE/.lock"
	case "$cmd" in
	up) cmd_up "$@" ;;
	down) cmd_down ;;
	status) cmd_status ;;
	wipe)
		cmd_down
		rm -rf "$STATE"
		printf 'wiped %s\n' "$STATE"
		;;
	kafka-stop) stop_service kafka kafka ;;
	kafka-start)
		local mode
		mode="$(kafka_mode)"
		[[ "$mode" == kraft ]] || start_zk
		start_kafka "$mode"
		;;
	mongo-stop) stop_service mongo mongo ;;
	mongo-start) start_mongo ;;
	topics) cmd_topics ;;
	processor-start) cmd_processor_start ;;
	processor-stop) stop_service processor processor ;;
	kafka-topics) topic_tool "$@" ;;
	kafka-class)
		[[ $# -gt 0 ]] || tm_die "kafka-class: name a class, e.g. kafka.tools.ConsoleProducer"
		kafka_class "$@"
		;;
	*)
		usage >&2
		tm_die "unknown command '$cmd'"
		;;
	esac
}

main "$@"
