#!/usr/bin/env bash
# deploy/vm4-producers.sh - provisions vm4 "producers" (DESIGN 1) on Ubuntu 22.04. Run as root
# from a checkout of the repository on the VM (it builds that checkout).
#
#   1. sshd key-only (drop-in), UFW from deploy/firewall.tsv (scripts/firewall-gen.sh ufw vm4:
#      SSH from the admin address only; producers listen on nothing)
#   2. RUNTIME=systemd (default): tokenmeter built from this checkout (`make install`, as on
#      vm3) and the template unit tokenmeter-producer@.service, one instance per inference
#      host it stands for: tokenmeter-producer@gpu-node-1 replays the trace named in
#      /etc/tokenmeter/producer-gpu-node-1.env
#      RUNTIME=container: docker.io + docker-compose-v2 and the image of
#      deploy/docker/Dockerfile.producer (services producer-gpu-node-1/-2 of compose.yaml)
#   3. /etc/tokenmeter/producer.env (Kafka address, rewritten every run); one
#      /etc/tokenmeter/producer-<instance>.env per instance, written once, yours to edit
#      (TRACE_FILE, PRODUCER_ARGS); /var/lib/tokenmeter/traces/ for the trace files
#   4. check: Kafka at $KAFKA_ADDR:9092 accepts a connection from here
#
# Instances are not enabled or started: a replay publishes its trace once, and starting it
# again publishes it again. Start one with `systemctl start tokenmeter-producer@gpu-node-1`.
#
# Env (defaults): RUNTIME (systemd), PRODUCER_INSTANCES ("gpu-node-1 gpu-node-2"),
#   KAFKA_ADDR (10.0.1.10), KAFKA_TOPIC (tokens), TOPIC_PARTITIONS (12), LOG_LEVEL (info),
#   and those of deploy/common.sh.
set -euo pipefail

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

RUNTIME="${RUNTIME:-systemd}"
PRODUCER_INSTANCES="${PRODUCER_INSTANCES:-gpu-node-1 gpu-node-2}"
KAFKA_TOPIC="${KAFKA_TOPIC:-tokens}"
TOPIC_PARTITIONS="${TOPIC_PARTITIONS:-12}"
LOG_LEVEL="${LOG_LEVEL:-info}"

TRACES=/var/lib/tokenmeter/traces
UNIT=tokenmeter-producer@.service
IMAGE=tokenmeter-producer:local

case "$RUNTIME" in systemd | container) ;; *) tm_die "RUNTIME must be systemd or container" ;; esac
for i in $PRODUCER_INSTANCES; do
	[[ "$i" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || tm_die "bad instance name '$i' (letters, digits, . _ -)"
done
for name in KAFKA_TOPIC TOPIC_PARTITIONS LOG_LEVEL; do
	tm_check_env_value "$name" "${!name}"
done

write_env() {
	local i trace
	tm_put_file /etc/tokenmeter/producer.env 0644 root:root <<-EOF
		# Managed by tokenmeter deploy/vm4-producers.sh: settings of every producer instance,
		# rewritten on every run. Per instance: /etc/tokenmeter/producer-<instance>.env.
		KAFKA_BOOTSTRAP=$KAFKA_ADDR:$KAFKA_PORT
		KAFKA_TOPIC=$KAFKA_TOPIC
		TOPIC_PARTITIONS=$TOPIC_PARTITIONS
		LOG_LEVEL=$LOG_LEVEL
	EOF
	for i in $PRODUCER_INSTANCES; do
		case "$i" in
		gpu-node-2) trace=AzureLLMInferenceTrace_code.csv ;;
		*) trace=AzureLLMInferenceTrace_conv.csv ;;
		esac
		tm_put_file_once "/etc/tokenmeter/producer-$i.env" 0644 root:root <<-EOF
			# tokenmeter producer instance "$i" (tokenmeter-producer@$i): written once by
			# deploy/vm4-producers.sh, yours to edit. Unquoted KEY=value lines.
			# TRACE_FILE: an Azure LLM trace (*.csv), a Mooncake trace (*.jsonl) or JSON-lines events
			# PRODUCER_ARGS: options of tokenmeter produce (see tokenmeter produce --help); --host
			#   is the inference host the events are metered for (HOST_NAME of the processor
			#   that samples its GPUs), --speed 10 replays ten times faster than recorded
			TRACE_FILE=$TRACES/$trace
			PRODUCER_ARGS=--host $i --gpus 8 --model llama-3-70b --speed 10
		EOF
	done
}

write_unit() {
	tm_put_unit "/etc/systemd/system/$UNIT" <<-EOF
		# Managed by tokenmeter deploy/vm4-producers.sh
		[Unit]
		Description=tokenmeter producer %i (replays the trace of /etc/tokenmeter/producer-%i.env into Kafka)
		Documentation=file://$TM_REPO/docs/deploy.md
		After=network-online.target
		Wants=network-online.target

		[Service]
		Type=exec
		User=tokenmeter
		Group=tokenmeter
		EnvironmentFile=/etc/tokenmeter/producer.env
		EnvironmentFile=/etc/tokenmeter/producer-%i.env
		ExecStart=$TM_BINARY produce --no-progress \$PRODUCER_ARGS \${TRACE_FILE}
		# A replay runs once. It is restarted only when Kafka could not be reached at its start
		# (exit 3: nothing was sent); any other end would publish events a second time.
		Restart=on-failure
		RestartPreventExitStatus=1 2 SIGTERM SIGINT SIGKILL SIGABRT SIGSEGV
		RestartSec=10
		TimeoutStopSec=30

		$(tm_unit_sandbox)
		MemoryDenyWriteExecute=yes
		RemoveIPC=yes
		AmbientCapabilities=
		SystemCallFilter=@system-service
		SystemCallErrorNumber=EPERM
		UMask=0077
	EOF
	return 0
}

check_kafka() {
	tm_live || return 0
	tm_tcp_open "$KAFKA_ADDR" "$KAFKA_PORT" ||
		tm_die "Kafka at $KAFKA_ADDR:$KAFKA_PORT does not accept a connection from here (is vm1 provisioned, and does its firewall allow $PRODUCERS_ADDR?)"
	tm_report "kafka $KAFKA_ADDR:$KAFKA_PORT reachable" unchanged "checked"
}

tm_preflight
tm_require_addr "$PRODUCERS_ADDR" PRODUCERS_ADDR
tm_sshd_harden
tm_ufw_apply vm4
tm_ensure_dir /etc/tokenmeter 0755 root:root
tm_ensure_dir /var/lib/tokenmeter 0755 root:root
tm_ensure_dir "$TRACES" 0755 root:root
write_env
if [[ "$RUNTIME" == systemd ]]; then
	tm_install_tokenmeter
	tm_ensure_user tokenmeter /var/lib/tokenmeter
	write_unit
	if tm_live; then
		for i in $PRODUCER_INSTANCES; do
			tm_verify_units "/etc/systemd/system/tokenmeter-producer@$i.service"
		done
	fi
	tm_systemd_reload
else
	tm_ensure_packages "${TM_DOCKER_PACKAGES[@]}"
	tm_docker_image Dockerfile.producer "$IMAGE"
fi
check_kafka
tm_summary
