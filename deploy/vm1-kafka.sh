#!/usr/bin/env bash
# deploy/vm1-kafka.sh - provisions vm1 "kafka-zk" (DESIGN 1) on Ubuntu 22.04. Run as root.
#
#   1. sshd key-only (drop-in), UFW from deploy/firewall.tsv (scripts/firewall-gen.sh ufw vm1)
#   2. OpenJDK 17 and Maven from apt
#   3. Kafka and ZooKeeper jars from Maven Central, resolved by scripts/maven/pom.xml (the
#      same resolver scripts/deps.sh uses for the local stack) into /opt/kafka-<v>/libs and
#      /opt/zookeeper-<v>/libs; Maven's cache in /var/cache/tokenmeter/m2
#   4. system users kafka and zookeeper; data in /var/lib/kafka, /var/lib/zookeeper
#   5. zookeeper.service (127.0.0.1:2181 only, AdminServer off) and kafka.service
#      (PLAINTEXT://$KAFKA_ADDR:9092, advertised the same, ZooKeeper mode), logs in the journal
#   6. topics $KAFKA_TOPIC and $KAFKA_TOPIC.dlq with $TOPIC_PARTITIONS partitions
#   7. tools: /usr/local/bin/kafka-topics, kafka-consumer-groups, kafka-run-class
#
# Idempotent: a second run prints only "unchanged" lines. Services restart only when their
# configuration, unit or jars changed.
#
# Env (defaults): KAFKA_ADDR (10.0.1.10), KAFKA_VERSION (3.7.0), ZK_VERSION (3.9.2),
#   KAFKA_HEAP (1g), ZK_HEAP (512m), KAFKA_TOPIC (tokens), TOPIC_PARTITIONS (12),
#   KAFKA_LOG_RETENTION_HOURS (168), and those of deploy/common.sh (addresses, DEPLOY_ROOT,
#   TM_SKIP_UFW, TM_SKIP_SSHD, TM_FORCE).
set -euo pipefail

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

KAFKA_VERSION="${KAFKA_VERSION:-3.7.0}"
ZK_VERSION="${ZK_VERSION:-3.9.2}"
KAFKA_HEAP="${KAFKA_HEAP:-1g}"
ZK_HEAP="${ZK_HEAP:-512m}"
KAFKA_TOPIC="${KAFKA_TOPIC:-tokens}"
TOPIC_PARTITIONS="${TOPIC_PARTITIONS:-12}"
KAFKA_LOG_RETENTION_HOURS="${KAFKA_LOG_RETENTION_HOURS:-168}"

[[ "$KAFKA_VERSION" =~ ^3\.7\.[0-9]+$ ]] || tm_die "KAFKA_VERSION must be a 3.7.x release (DESIGN 6), not '$KAFKA_VERSION'"
[[ "$ZK_VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || tm_die "bad ZK_VERSION '$ZK_VERSION'"
[[ "$TOPIC_PARTITIONS" =~ ^[1-9][0-9]*$ ]] || tm_die "bad TOPIC_PARTITIONS '$TOPIC_PARTITIONS'"
[[ "$KAFKA_HEAP$ZK_HEAP" =~ ^[0-9]+[kmg][0-9]+[kmg]$ ]] || tm_die "KAFKA_HEAP/ZK_HEAP: a size such as 1g or 512m"

POM="$TM_REPO/scripts/maven/pom.xml"
M2=/var/cache/tokenmeter/m2
KAFKA_HOME="/opt/kafka-$KAFKA_VERSION"
ZK_HOME="/opt/zookeeper-$ZK_VERSION"
JAVA_BIN="/usr/lib/jvm/java-17-openjdk-$(dpkg --print-architecture 2>/dev/null || echo amd64)/bin/java"
BOOTSTRAP="$KAFKA_ADDR:$KAFKA_PORT"
DOCS="file://$TM_REPO/docs/deploy.md"

# ---------------------------------------------------------------- jars from Maven Central

# fetch_libs NAME PROFILE VERSION-PROPERTY VERSION HOME: HOME/libs holds the artifact and its
# runtime dependencies; HOME/.complete names the pom that resolved them (a changed pom refetches).
RESTART_ZK=0
RESTART_KAFKA=0
fetch_libs() {
	local name="$1" profile="$2" prop="$3" version="$4" home="$5" sha log
	if ! tm_live; then
		tm_report "jars $name $version ($home/libs)" skipped "DEPLOY_ROOT"
		return 0
	fi
	sha="$(sha256sum "$POM" | cut -d' ' -f1)"
	if [[ -f "$home/.complete" ]] && grep -qxF "pom=$sha" "$home/.complete" &&
		grep -qxF "version=$version" "$home/.complete"; then
		TM_CHANGED=0
		tm_report "jars $name $version ($home/libs)" unchanged
		return 0
	fi
	log="$(mktemp)"
	rm -rf "$home/libs.partial"
	mkdir -p "$home" "$M2"
	if ! mvn -B -q --no-transfer-progress --strict-checksums -Dmaven.repo.local="$M2" \
		-f "$POM" -P "$profile" "-D$prop=$version" \
		dependency:copy-dependencies -DincludeScope=runtime \
		-DoutputDirectory="$home/libs.partial" >"$log" 2>&1; then
		tail -n 30 "$log" >&2
		tm_die "mvn could not resolve $name $version from Maven Central"
	fi
	rm -f "$log"
	rm -rf "$home/libs"
	mv "$home/libs.partial" "$home/libs"
	chmod -R a+rX "$home"
	{
		printf 'pom=%s\nname=%s\nversion=%s\n' "$sha" "$name" "$version"
		(cd "$home/libs" && ls -1)
	} >"$home/.complete"
	TM_CHANGED=1
	tm_report "jars $name $version ($home/libs)" changed "$(find "$home/libs" -name '*.jar' | wc -l) jars"
}

# ---------------------------------------------------------------- configuration

write_zookeeper_config() {
	tm_put_file /etc/zookeeper/zoo.cfg 0644 root:root <<-EOF
		# Managed by tokenmeter deploy/vm1-kafka.sh. ZooKeeper $ZK_VERSION, standalone, for the
		# Kafka broker on this host only: clients on 127.0.0.1:2181, no AdminServer (it would
		# listen on 0.0.0.0:8080), four-letter words ruok and srvr only.
		tickTime=2000
		initLimit=10
		syncLimit=5
		dataDir=/var/lib/zookeeper
		clientPort=2181
		clientPortAddress=127.0.0.1
		maxClientCnxns=60
		admin.enableServer=false
		4lw.commands.whitelist=ruok,srvr
		autopurge.snapRetainCount=3
		autopurge.purgeInterval=24
	EOF
	((TM_CHANGED)) && RESTART_ZK=1
	tm_put_file /etc/zookeeper/logback.xml 0644 root:root <<-'EOF'
		<!-- Managed by tokenmeter deploy/vm1-kafka.sh: ZooKeeper logs to the journal
		     (journalctl -u zookeeper). -->
		<configuration>
		  <appender name="CONSOLE" class="ch.qos.logback.core.ConsoleAppender">
		    <encoder><pattern>%-5p [%t:%C{1}@%L] - %m%n</pattern></encoder>
		  </appender>
		  <root level="INFO"><appender-ref ref="CONSOLE"/></root>
		</configuration>
	EOF
	((TM_CHANGED)) && RESTART_ZK=1
	return 0
}

write_kafka_config() {
	tm_put_file /etc/kafka/server.properties 0644 root:root <<-EOF
		# Managed by tokenmeter deploy/vm1-kafka.sh. Kafka $KAFKA_VERSION, one broker, ZooKeeper
		# mode. Clients (vm3 processor, vm4 producers) connect to the private address below; the
		# host firewall allows 9092 from them only.
		broker.id=0
		listeners=PLAINTEXT://$KAFKA_ADDR:$KAFKA_PORT
		advertised.listeners=PLAINTEXT://$KAFKA_ADDR:$KAFKA_PORT
		listener.security.protocol.map=PLAINTEXT:PLAINTEXT
		inter.broker.listener.name=PLAINTEXT
		zookeeper.connect=127.0.0.1:2181
		zookeeper.connection.timeout.ms=18000
		log.dirs=/var/lib/kafka/data
		num.partitions=$TOPIC_PARTITIONS
		default.replication.factor=1
		offsets.topic.replication.factor=1
		transaction.state.log.replication.factor=1
		transaction.state.log.min.isr=1
		auto.create.topics.enable=false
		num.network.threads=3
		num.io.threads=8
		num.recovery.threads.per.data.dir=1
		log.retention.hours=$KAFKA_LOG_RETENTION_HOURS
		log.segment.bytes=1073741824
		log.retention.check.interval.ms=300000
		group.initial.rebalance.delay.ms=3000
	EOF
	((TM_CHANGED)) && RESTART_KAFKA=1
	tm_put_file /etc/kafka/log4j.properties 0644 root:root <<-'EOF'
		# Managed by tokenmeter deploy/vm1-kafka.sh: the broker logs to the journal
		# (journalctl -u kafka), which adds the time stamps.
		log4j.rootLogger=INFO, stdout
		log4j.appender.stdout=org.apache.log4j.ConsoleAppender
		log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
		log4j.appender.stdout.layout.ConversionPattern=%p %m (%c)%n
		log4j.logger.kafka=INFO
		log4j.logger.org.apache.kafka=INFO
		log4j.logger.org.apache.zookeeper=WARN
		log4j.logger.kafka.request.logger=WARN
		log4j.logger.kafka.controller=INFO
		log4j.logger.kafka.log.LogCleaner=INFO
		log4j.logger.state.change.logger=WARN
		log4j.logger.kafka.authorizer.logger=WARN
	EOF
	((TM_CHANGED)) && RESTART_KAFKA=1
	tm_put_file /etc/kafka/tools-log4j.properties 0644 root:root <<-'EOF'
		# Managed by tokenmeter deploy/vm1-kafka.sh: command-line tools log warnings to stderr.
		log4j.rootLogger=WARN, stderr
		log4j.appender.stderr=org.apache.log4j.ConsoleAppender
		log4j.appender.stderr.Target=System.err
		log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
		log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
	EOF
	return 0
}

# The Apache distribution's bin/*.sh, reduced to what an operator needs, on the same jars.
write_tools() {
	tm_put_file /usr/local/bin/kafka-run-class 0755 root:root <<-EOF
		#!/bin/sh
		# Managed by tokenmeter deploy/vm1-kafka.sh: runs a class of the Kafka $KAFKA_VERSION jars
		# (Maven Central, $KAFKA_HOME/libs), like kafka-run-class.sh of the Apache distribution.
		exec $JAVA_BIN -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \\
		    -Djava.awt.headless=true -Djava.net.preferIPv4Stack=true \\
		    -Dlog4j.configuration=file:/etc/kafka/tools-log4j.properties \\
		    -cp '$KAFKA_HOME/libs/*' "\$@"
	EOF
	tm_put_file /usr/local/bin/kafka-topics 0755 root:root <<-'EOF'
		#!/bin/sh
		# Managed by tokenmeter deploy/vm1-kafka.sh: kafka-topics.sh of the Apache distribution.
		# Example: kafka-topics --bootstrap-server 10.0.1.10:9092 --describe --topic tokens
		exec /usr/local/bin/kafka-run-class org.apache.kafka.tools.TopicCommand "$@"
	EOF
	tm_put_file /usr/local/bin/kafka-consumer-groups 0755 root:root <<-'EOF'
		#!/bin/sh
		# Managed by tokenmeter deploy/vm1-kafka.sh: kafka-consumer-groups.sh of the Apache
		# distribution. Example (lag of the processors):
		#   kafka-consumer-groups --bootstrap-server 10.0.1.10:9092 --describe --group tokenmeter
		exec /usr/local/bin/kafka-run-class kafka.admin.ConsumerGroupCommand "$@"
	EOF
}

# Shared sandbox of both JVM services (writable: their data directory only).
hardening() {
	printf 'ReadWritePaths=%s\n' "$1"
	tm_unit_sandbox
	printf 'UMask=0027\n'
}

write_units() {
	tm_put_unit /etc/systemd/system/zookeeper.service <<-EOF
		# Managed by tokenmeter deploy/vm1-kafka.sh
		[Unit]
		Description=Apache ZooKeeper $ZK_VERSION (tokenmeter vm1, 127.0.0.1:2181)
		Documentation=$DOCS
		After=network.target

		[Service]
		Type=simple
		User=zookeeper
		Group=zookeeper
		ExecStart=$JAVA_BIN -Xms64m -Xmx$ZK_HEAP -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true -Djava.net.preferIPv4Stack=true -Dlogback.configurationFile=/etc/zookeeper/logback.xml -Dzookeeper.admin.enableServer=false -cp $ZK_HOME/libs/* org.apache.zookeeper.server.quorum.QuorumPeerMain /etc/zookeeper/zoo.cfg
		SuccessExitStatus=143
		Restart=on-failure
		RestartSec=5
		TimeoutStopSec=60
		LimitNOFILE=65536
		$(hardening /var/lib/zookeeper)

		[Install]
		WantedBy=multi-user.target
	EOF
	((TM_CHANGED)) && RESTART_ZK=1
	tm_put_unit /etc/systemd/system/kafka.service <<-EOF
		# Managed by tokenmeter deploy/vm1-kafka.sh
		[Unit]
		Description=Apache Kafka $KAFKA_VERSION broker (tokenmeter vm1, $KAFKA_ADDR:$KAFKA_PORT)
		Documentation=$DOCS
		Requires=zookeeper.service
		After=zookeeper.service network-online.target
		Wants=network-online.target

		[Service]
		Type=simple
		User=kafka
		Group=kafka
		ExecStart=$JAVA_BIN -Xms$KAFKA_HEAP -Xmx$KAFKA_HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true -Djava.net.preferIPv4Stack=true -Dlog4j.configuration=file:/etc/kafka/log4j.properties -cp $KAFKA_HOME/libs/* kafka.Kafka /etc/kafka/server.properties
		SuccessExitStatus=143
		Restart=on-failure
		RestartSec=5
		TimeoutStopSec=180
		LimitNOFILE=100000
		$(hardening /var/lib/kafka)

		[Install]
		WantedBy=multi-user.target
	EOF
	((TM_CHANGED)) && RESTART_KAFKA=1
	return 0
}

# ---------------------------------------------------------------- checks and topics

zk_ruok() {
	# shellcheck disable=SC2016  # expanded by the inner bash
	[[ "$(timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/2181 && printf ruok >&3 && cat <&3' 2>/dev/null)" == imok ]]
}

kafka_answers() {
	/usr/local/bin/kafka-topics --bootstrap-server "$BOOTSTRAP" --list
}

# ensure_topic NAME: exists with TOPIC_PARTITIONS partitions. A topic with another count is
# an error, not altered: more partitions would move GPU keys to other partitions mid-stream.
ensure_topic() {
	local topic="$1" out count
	if ! tm_live; then
		tm_report "topic $topic ($TOPIC_PARTITIONS partitions)" skipped "DEPLOY_ROOT"
		return 0
	fi
	if out="$(/usr/local/bin/kafka-topics --bootstrap-server "$BOOTSTRAP" --describe --topic "$topic" 2>/dev/null)" &&
		count="$(sed -n 's/.*PartitionCount:[[:space:]]*\([0-9]*\).*/\1/p' <<<"$out" | head -n 1)" &&
		[[ -n "$count" ]]; then
		[[ "$count" == "$TOPIC_PARTITIONS" ]] ||
			tm_die "topic $topic has $count partitions, not $TOPIC_PARTITIONS: fix it by hand (docs/deploy.md, 'Topics')"
		tm_report "topic $topic ($TOPIC_PARTITIONS partitions)" unchanged
		return 0
	fi
	/usr/local/bin/kafka-topics --bootstrap-server "$BOOTSTRAP" --create --if-not-exists \
		--topic "$topic" --partitions "$TOPIC_PARTITIONS" --replication-factor 1 >/dev/null
	tm_report "topic $topic ($TOPIC_PARTITIONS partitions)" changed "created"
}

# Listening sockets as DESIGN 1 wants them: 9092 on the private address, 2181 on loopback
# only, and no ZooKeeper AdminServer on 8080.
check_sockets() {
	local l
	tm_live || return 0
	l="$(ss -Hltn)"
	grep -qE "[[:space:]]${KAFKA_ADDR}:${KAFKA_PORT}[[:space:]]" <<<"$l" ||
		tm_die "nothing listens on $KAFKA_ADDR:$KAFKA_PORT (ss -ltn)"
	if awk '{print $4}' <<<"$l" | grep -E ':2181$' | grep -qvE '^127\.0\.0\.1:2181$'; then
		tm_die "port 2181 is open on an address other than 127.0.0.1 (ss -ltn)"
	fi
	tm_report "listeners ($KAFKA_ADDR:$KAFKA_PORT, 127.0.0.1:2181 only)" unchanged "checked"
}

# ---------------------------------------------------------------- main

tm_preflight
tm_require_addr "$KAFKA_ADDR" KAFKA_ADDR
tm_sshd_harden
tm_ufw_apply vm1
tm_ensure_packages openjdk-17-jre-headless
tm_ensure_packages maven
if tm_live; then
	[[ -x "$JAVA_BIN" ]] || tm_die "$JAVA_BIN is missing after installing openjdk-17-jre-headless"
fi
tm_ensure_user zookeeper /var/lib/zookeeper
tm_ensure_user kafka /var/lib/kafka
tm_ensure_dir /var/lib/zookeeper 0750 zookeeper:zookeeper
tm_ensure_dir /var/lib/kafka 0750 kafka:kafka
tm_ensure_dir /var/lib/kafka/data 0750 kafka:kafka
tm_ensure_dir /etc/zookeeper 0755 root:root
tm_ensure_dir /etc/kafka 0755 root:root

fetch_libs zookeeper zookeeper zookeeper.version "$ZK_VERSION" "$ZK_HOME"
((TM_CHANGED)) && RESTART_ZK=1
fetch_libs kafka kafka kafka.version "$KAFKA_VERSION" "$KAFKA_HOME"
((TM_CHANGED)) && RESTART_KAFKA=1

write_zookeeper_config
write_kafka_config
write_tools
write_units
tm_verify_units /etc/systemd/system/zookeeper.service /etc/systemd/system/kafka.service
tm_systemd_reload

tm_ensure_service zookeeper.service "$RESTART_ZK"
if tm_live; then
	tm_wait_until 60 "zookeeper ruok" zk_ruok ||
		tm_die "ZooKeeper does not answer ruok on 127.0.0.1:2181 (journalctl -u zookeeper)"
fi
tm_ensure_service kafka.service "$RESTART_KAFKA"
if tm_live; then
	tm_wait_until 120 "kafka" kafka_answers ||
		tm_die "Kafka does not answer on $BOOTSTRAP within 120 s (journalctl -u kafka)"
fi
ensure_topic "$KAFKA_TOPIC"
ensure_topic "$KAFKA_TOPIC.dlq"
check_sockets
tm_summary
