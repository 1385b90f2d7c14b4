#!/usr/bin/env bash
# deploy/vm3-processor.sh - provisions vm3 "processor" (DESIGN 1) on Ubuntu 22.04. Run as root
# from a checkout of the repository on the VM (it builds that checkout).
#
#   1. sshd key-only (drop-in), UFW from deploy/firewall.tsv (scripts/firewall-gen.sh ufw vm3)
#   2. RUNTIME=systemd (default): tokenmeter built from this checkout with Ubuntu's -dev
#      packages and `make install` (into a staging directory, then /usr/local/bin/tokenmeter
#      when it differs); unit tokenmeter-processor.service, user tokenmeter, sandboxed
#      RUNTIME=container: docker.io + docker-compose-v2 from Ubuntu, the image of
#      deploy/docker/Dockerfile.processor, service "processor" of deploy/docker/compose.yaml
#      (host network, so that UFW applies), the systemd unit stopped and disabled
#   3. /etc/tokenmeter/processor.env (0600: it holds the MongoDB password), rewritten from the
#      settings below; /etc/tokenmeter/processor.local.env, yours, for anything else
#      (KAFKA_PROP_*, WINDOW_SECONDS, ...); /etc/tokenmeter/gpu_seed.json, yours after the first run
#   4. checks: GET http://$PROCESSOR_ADDR:8080/health answers 200 (Kafka and MongoDB reachable)
#
# The MongoDB password of user tokenmeter: TOKENMETER_DB_PASSWORD, else the file
# /etc/tokenmeter/mongodb-tokenmeter.secret copied from vm2 (docs/deploy.md, step vm3).
#
# Env (defaults): RUNTIME (systemd), PROCESSOR_ADDR (10.0.1.12), KAFKA_ADDR (10.0.1.10),
#   MONGODB_ADDR (10.0.1.11), KAFKA_TOPIC (tokens), KAFKA_GROUP (tokenmeter),
#   TOKENMETER_DB (tokenmeter), TOKENMETER_DB_USER (tokenmeter), TOKENMETER_DB_PASSWORD,
#   GPU_METRICS_SOURCE (auto), PRICE_PER_HOUR_USD (6.88), HOST_NAME (gpu-node-1: the --host
#   of the producers whose GPUs this host samples), LOG_LEVEL (info), HEALTH_TIMEOUT (60 s),
#   and those of deploy/common.sh.
set -euo pipefail

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

RUNTIME="${RUNTIME:-systemd}"
KAFKA_TOPIC="${KAFKA_TOPIC:-tokens}"
KAFKA_GROUP="${KAFKA_GROUP:-tokenmeter}"
TOKENMETER_DB="${TOKENMETER_DB:-tokenmeter}"
TOKENMETER_DB_USER="${TOKENMETER_DB_USER:-tokenmeter}"
TOKENMETER_DB_PASSWORD="${TOKENMETER_DB_PASSWORD:-}"
GPU_METRICS_SOURCE="${GPU_METRICS_SOURCE:-auto}"
PRICE_PER_HOUR_USD="${PRICE_PER_HOUR_USD:-6.88}"
HOST_NAME="${HOST_NAME:-gpu-node-1}"
LOG_LEVEL="${LOG_LEVEL:-info}"
HEALTH_TIMEOUT="${HEALTH_TIMEOUT:-60}"

APP_SECRET=/etc/tokenmeter/mongodb-tokenmeter.secret
ENV_FILE=/etc/tokenmeter/processor.env
LOCAL_ENV_FILE=/etc/tokenmeter/processor.local.env
SEED=/etc/tokenmeter/gpu_seed.json
UNIT=tokenmeter-processor.service
IMAGE=tokenmeter-processor:local
HEALTH_URL="http://$PROCESSOR_ADDR:$HTTP_PORT/health"

case "$RUNTIME" in systemd | container) ;; *) tm_die "RUNTIME must be systemd or container" ;; esac
case "$GPU_METRICS_SOURCE" in auto | nvml | nvidia-smi | seed) ;;
*) tm_die "GPU_METRICS_SOURCE must be auto, nvml, nvidia-smi or seed" ;;
esac
[[ "$HEALTH_TIMEOUT" =~ ^[0-9]+$ ]] || tm_die "HEALTH_TIMEOUT: seconds"

# ---------------------------------------------------------------- files

RESTART=0

write_env() {
	local pw uri
	pw="${TOKENMETER_DB_PASSWORD:-}"
	if [[ -z "$pw" ]]; then
		pw="$(tm_read_secret "$APP_SECRET")" ||
			tm_die "no MongoDB password: set TOKENMETER_DB_PASSWORD or copy $APP_SECRET from vm2 (docs/deploy.md)"
	else
		tm_secret "$APP_SECRET" "$pw"
	fi
	uri="mongodb://$(tm_urlencode "$TOKENMETER_DB_USER"):$(tm_urlencode "$pw")@$MONGODB_ADDR:$MONGODB_PORT/$TOKENMETER_DB?authSource=$TOKENMETER_DB"
	local name
	for name in KAFKA_TOPIC KAFKA_GROUP TOKENMETER_DB PRICE_PER_HOUR_USD HOST_NAME LOG_LEVEL; do
		tm_check_env_value "$name" "${!name}"
	done
	tm_check_env_value MONGODB_URI "$uri"
	tm_put_file "$ENV_FILE" 0600 root:root <<-EOF
		# Managed by tokenmeter deploy/vm3-processor.sh: rewritten on every run (put your own
		# settings in $LOCAL_ENV_FILE). Values are unquoted on purpose: this file is read by
		# systemd (EnvironmentFile), docker compose (env_file) and the shell (set -a; . file).
		KAFKA_BOOTSTRAP=$KAFKA_ADDR:$KAFKA_PORT
		KAFKA_TOPIC=$KAFKA_TOPIC
		KAFKA_GROUP=$KAFKA_GROUP
		MONGODB_URI=$uri
		HTTP_LISTEN=$PROCESSOR_ADDR:$HTTP_PORT
		GPU_METRICS_SOURCE=$GPU_METRICS_SOURCE
		GPU_SEED=$SEED
		PRICE_PER_HOUR_USD=$PRICE_PER_HOUR_USD
		HOST_NAME=$HOST_NAME
		LOG_LEVEL=$LOG_LEVEL
	EOF
	((TM_CHANGED)) && RESTART=1
	tm_put_file_once "$LOCAL_ENV_FILE" 0600 root:root <<-'EOF'
		# Your settings for the tokenmeter processor (deploy/vm3-processor.sh creates this file
		# once and never rewrites it). KEY=value lines, unquoted, read after processor.env, so a
		# key here wins. Restart after a change: systemctl restart tokenmeter-processor
		# (containers: docker compose -f deploy/docker/compose.yaml up -d processor). Examples:
		#WINDOW_SECONDS=60
		#KAFKA_PROP_SESSION_TIMEOUT_MS=10000
	EOF
	return 0
}

write_seed() {
	local src="$DEPLOY_ROOT$TM_SEED_EXAMPLE"
	[[ "$RUNTIME" == systemd && -f "$src" ]] || src="$TM_REPO/config/gpu_seed.json"
	tm_put_file_once "$SEED" 0644 root:root <"$src"
}

write_unit() {
	tm_put_unit "/etc/systemd/system/$UNIT" <<-EOF
		# Managed by tokenmeter deploy/vm3-processor.sh
		[Unit]
		Description=tokenmeter processor (Kafka $KAFKA_TOPIC -> MongoDB, HTTP $PROCESSOR_ADDR:$HTTP_PORT)
		Documentation=file://$TM_REPO/docs/deploy.md
		After=network-online.target
		Wants=network-online.target

		[Service]
		Type=exec
		User=tokenmeter
		Group=tokenmeter
		EnvironmentFile=$ENV_FILE
		EnvironmentFile=-$LOCAL_ENV_FILE
		ExecStart=$TM_BINARY process
		# SIGTERM: stop fetching, write closed windows, commit, exit 0 (DESIGN 3.5)
		KillSignal=SIGTERM
		TimeoutStopSec=30
		Restart=on-failure
		RestartSec=5
		# 2 is a configuration error: restarting cannot fix it
		RestartPreventExitStatus=2
		LimitNOFILE=65536

		# Sandbox. The GPU is read through /dev/nvidia* (NVML) or nvidia-smi, so devices stay
		# visible (no PrivateDevices, DevicePolicy or ProtectClock, which restrict them) and
		# /proc stays whole (NVML reads /proc/driver/nvidia); W^X is not enforced for the
		# same driver library.
		NoNewPrivileges=yes
		ProtectSystem=strict
		ProtectHome=yes
		PrivateTmp=yes
		ProtectKernelTunables=yes
		ProtectKernelModules=yes
		ProtectKernelLogs=yes
		ProtectControlGroups=yes
		ProtectHostname=yes
		RestrictSUIDSGID=yes
		RestrictRealtime=yes
		RestrictNamespaces=yes
		LockPersonality=yes
		RemoveIPC=yes
		RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
		CapabilityBoundingSet=
		AmbientCapabilities=
		SystemCallArchitectures=native
		SystemCallFilter=@system-service
		SystemCallErrorNumber=EPERM
		UMask=0077

		[Install]
		WantedBy=multi-user.target
	EOF
	((TM_CHANGED)) && RESTART=1
	return 0
}

# ---------------------------------------------------------------- checks

health_ok() {
	curl -fsS --max-time 3 "$HEALTH_URL" >/dev/null 2>&1
}

check_health() {
	local body
	tm_live || return 0
	if ! tm_wait_until "$HEALTH_TIMEOUT" health health_ok; then
		body="$(curl -sS --max-time 3 "$HEALTH_URL" 2>&1 || true)"
		if [[ "$RUNTIME" == systemd ]]; then
			journalctl -u "$UNIT" -n 30 --no-pager >&2 || true
		else
			docker compose -f "$TM_COMPOSE_FILE" logs --tail 30 processor >&2 || true
		fi
		tm_die "$HEALTH_URL is not 200 after ${HEALTH_TIMEOUT}s: ${body:-no answer} (are vm1 and vm2 up, and the firewall rows in place?)"
	fi
	tm_report "health $HEALTH_URL" unchanged "200"
}

# ---------------------------------------------------------------- containers

compose() {
	docker compose -f "$TM_COMPOSE_FILE" "$@"
}

ensure_container() {
	local before after
	if ! tm_live; then
		tm_report "container processor (compose)" skipped "DEPLOY_ROOT"
		return 0
	fi
	before="$(compose ps -q processor 2>/dev/null || true)"
	compose up -d --no-build processor >/dev/null 2>&1 || {
		compose up -d --no-build processor
		tm_die "docker compose up processor failed"
	}
	after="$(compose ps -q processor)"
	if [[ -n "$before" && "$before" == "$after" ]]; then
		tm_report "container processor (compose)" unchanged "running"
	else
		tm_report "container processor (compose)" changed "${after:0:12}"
	fi
}

# ---------------------------------------------------------------- main

tm_preflight
tm_require_addr "$PROCESSOR_ADDR" PROCESSOR_ADDR
tm_sshd_harden
tm_ufw_apply vm3
tm_ensure_packages curl ca-certificates
tm_ensure_dir /etc/tokenmeter 0755 root:root
write_env
if [[ "$RUNTIME" == systemd ]]; then
	tm_install_tokenmeter
	((TM_BINARY_CHANGED)) && RESTART=1
	tm_ensure_user tokenmeter /var/lib/tokenmeter
	write_seed
	write_unit
	tm_verify_units "/etc/systemd/system/$UNIT"
	tm_systemd_reload
	tm_ensure_service "$UNIT" "$RESTART"
else
	tm_ensure_packages "${TM_DOCKER_PACKAGES[@]}"
	write_seed
	if tm_live && [[ -f "/etc/systemd/system/$UNIT" ]]; then tm_disable_service "$UNIT"; fi
	tm_docker_image Dockerfile.processor "$IMAGE"
	ensure_container
fi
check_health
tm_summary
