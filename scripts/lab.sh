#!/usr/bin/env bash
# The reference deployment of DESIGN 1 on one machine, in Linux network namespaces: four "VMs"
# and an admin host on one bridge, each VM with its own nftables firewall generated from
# deploy/firewall.tsv and its own key-only sshd, running the real servers.
#
#   namespace    DESIGN  address      runs
#   tmlab-vm1    vm1     10.0.1.10    ZooKeeper 127.0.0.1:2181, Kafka 10.0.1.10:9092 (advertised there)
#   tmlab-vm2    vm2     10.0.1.11    FerretDB (MongoDB wire protocol) 10.0.1.11:27017, auth on
#   tmlab-vm3    vm3     10.0.1.12    tokenmeter process, HTTP 10.0.1.12:8080
#   tmlab-vm4    vm4     10.0.1.13    two tokenmeter producers (trace slices)
#   tmlab-admin  admin   10.0.1.100   the admin host (SSH key, HTTP checks)
#   tmlab-sw     -       -            the bridge br0 (one veth per host)
# The root namespace has no link, address or route into the lab: every lab command runs
# through `ip netns exec` in a namespace this script checked exists.
#
# Usage: scripts/lab.sh COMMAND
#   up       build the lab from scratch (a previous lab is taken down first) and start
#            everything; the producers replay their slices in the background
#   verify   one row per check, "PASS|FAIL  what was tried"; exit 1 on any FAIL
#   down     stop every lab process, delete the namespaces; safe to repeat
#   status   namespaces, addresses, processes, firewalls
# Needs root, `make` (bin/tokenmeter) and scripts/deps.sh (jars, FerretDB, venv, packages).
# Env: TM_LAB_STATE (default <repo>/.lab: servers' data, logs, keys, secrets),
#      TM_BIN (tokenmeter binary, default <repo>/bin/tokenmeter), TM_SHARED (<repo>/../shared),
#      TM_LAB_CONV_ROWS (3000) / TM_LAB_CODE_ROWS (2000): trace slices of the producers,
#      TM_LAB_DENY_TIMEOUT (3 s): how long a denied connection may take to fail.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LAB="${TM_LAB_STATE:-$TM_REPO/.lab}"
BIN="${TM_BIN:-$TM_REPO/bin/tokenmeter}"
SHARED="${TM_SHARED:-$TM_REPO/../shared}"
PY="$TM_VENV/bin/python"
FWGEN="$TM_SCRIPTS/firewall-gen.sh"
STACK="$TM_SCRIPTS/stack.sh"
SSHD=/usr/sbin/sshd
LOCK=/run/tokenmeter-lab.lock
# sshd (StrictModes) refuses an authorized_keys file below any group- or world-writable
# folder, /tmp included, where a checkout may live: keep it in a root-only place.
AUTH_KEYS=/run/tokenmeter-lab/authorized_keys
NS_PREFIX=tmlab-
SW_NS="${NS_PREFIX}sw"
VMS=(vm1 vm2 vm3 vm4)
NODES=(vm1 vm2 vm3 vm4 admin)
DENY_T="${TM_LAB_DENY_TIMEOUT:-3}"
CONV_ROWS="${TM_LAB_CONV_ROWS:-3000}"
CODE_ROWS="${TM_LAB_CODE_ROWS:-2000}"
CONV_TRACE="$SHARED/data/traces/AzureLLMInferenceTrace_conv.csv"
CODE_TRACE="$SHARED/data/traces/AzureLLMInferenceTrace_code.csv"
MONGO_USER=tokenmeter
MONGO_DB=tokenmeter
KAFKA_PORT=9092
MONGO_PORT=27017
HTTP_PORT=8080

# The lab sets every tokenmeter setting it relies on; none leaks in from the caller's
# environment (a test's KAFKA_TOPIC, MONGODB_URI, KAFKA_PROP_*...).
unset KAFKA_BOOTSTRAP KAFKA_TOPIC KAFKA_DLQ_TOPIC KAFKA_GROUP MONGODB_URI PRICE_PER_HOUR_USD \
	GPU_METRICS_SOURCE GPU_SEED HTTP_LISTEN WINDOW_SECONDS ALLOWED_LATENESS_SECONDS \
	IDLE_CLOSE_SECONDS GPU_SAMPLE_SECONDS HOST_NAME TOPIC_PARTITIONS TOKENMETER_STATE \
	TM_KAFKA_HOST TM_KAFKA_ADVERTISED TM_MONGO_HOST TM_MONGO_USER TM_MONGO_PASSWORD_FILE TM_MONGO_DB \
	TM_ZK_PORT TM_KAFKA_CONTROLLER_PORT
while read -r v; do
	if [[ "$v" == KAFKA_PROP_* ]]; then unset "$v"; fi
done < <(compgen -e)

for v in "$DENY_T" "$CONV_ROWS" "$CODE_ROWS"; do
	[[ "$v" =~ ^[1-9][0-9]*$ ]] || tm_die "not a positive number: '$v' (check TM_LAB_*)"
done
case "$LAB" in
/*) ;;
*) LAB="$PWD/$LAB" ;;
esac
[[ "$LAB" != "$TM_REPO/.stack" && "$LAB" != / ]] || tm_die "TM_LAB_STATE may not be '$LAB'"

usage() {
	sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'
}

# ---------------------------------------------------------------- namespaces

declare -A ADDR=()
load_addrs() {
	local name addr
	while read -r name addr; do ADDR[$name]="$addr"; done < <("$FWGEN" addrs)
	for name in "${NODES[@]}"; do
		[[ "${ADDR[$name]:-}" =~ ^10\.0\.1\.[0-9]+$ ]] ||
			tm_die "the lab needs $name on 10.0.1.0/24, firewall-gen.sh says '${ADDR[$name]:-}' (unset TM_ADDR_*)"
	done
}

ns_of() { printf '%s%s\n' "$NS_PREFIX" "$1"; }

ns_exists() {
	local list
	list="$(ip netns list 2>/dev/null)" || return 1
	grep -qE "^$1( |\$)" <<<"$list"
}

lab_namespaces() {
	local list
	list="$(ip netns list 2>/dev/null)" || return 0
	awk -v p="$NS_PREFIX" 'index($1, p) == 1 { print $1 }' <<<"$list"
}

# in_ns NODE CMD...: runs CMD inside NODE's namespace, which must exist (never in the root one).
in_ns() {
	local node="$1" ns
	shift
	if [[ "$node" == sw ]]; then ns="$SW_NS"; else ns="$(ns_of "$node")"; fi
	ns_exists "$ns" || tm_die "namespace $ns ($node) does not exist: nothing started there"
	ip netns exec "$ns" "$@"
}

# spawn_in NODE NAME LOG CMD...: starts CMD detached inside NODE's namespace; the pid file
# $LAB/run/NODE-NAME.pid holds CMD's own pid (setsid and ip netns exec both exec).
spawn_in() {
	local node="$1" name="$2" log="$3" ns
	shift 3
	ns="$(ns_of "$node")"
	ns_exists "$ns" || tm_die "namespace $ns ($node) does not exist: $name not started"
	mkdir -p "$LAB/run" "${log%/*}"
	printf '=== %s: scripts/lab.sh starts %s in %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$name" "$ns" >>"$log"
	setsid ip netns exec "$ns" "$@" </dev/null >>"$log" 2>&1 8>&- &
	printf '%s\n' "$!" >"$LAB/run/$node-$name.pid"
}

# tcp_try NODE ADDR PORT: one TCP connection attempt from NODE, within DENY_T seconds.
# Prints "connected", "refused", "no answer within Ns (dropped)" or the error.
tcp_try() {
	local out rc=0
	# shellcheck disable=SC2016  # expanded by the inner bash
	out="$(in_ns "$1" timeout "$DENY_T" bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$2" "$3" 2>&1)" || rc=$?
	if [[ $rc -eq 0 ]]; then
		echo connected
	elif [[ $rc -eq 124 ]]; then
		echo "no answer within ${DENY_T}s (dropped)"
	elif [[ "$out" == *refused* ]]; then
		echo "connection refused"
	else
		echo "failed: ${out##*: }"
	fi
	[[ $rc -eq 0 ]]
}

# ---------------------------------------------------------------- checks before anything

need_root() {
	[[ $(id -u) -eq 0 ]] || tm_die "the lab needs root (network namespaces, nftables, sshd)"
}

preflight() {
	local c missing=()
	for c in ip nft ssh ssh-keygen sshpass curl jq ss setsid flock timeout java python3; do
		command -v "$c" >/dev/null 2>&1 || missing+=("$c")
	done
	[[ -x "$SSHD" ]] || missing+=("$SSHD")
	[[ ${#missing[@]} -eq 0 ]] || tm_die "missing: ${missing[*]} (run scripts/deps.sh)"
	[[ -x "$BIN" ]] || tm_die "$BIN is missing: run 'make' first"
	tm_kafka_home >/dev/null || tm_die "Kafka jars not in $TM_CACHE (run scripts/deps.sh)"
	[[ -f "$TM_ZK_HOME/$TM_MARKER" ]] || tm_die "ZooKeeper jars not in $TM_CACHE (run scripts/deps.sh)"
	[[ -x "$TM_FERRETDB_BIN" ]] ||
		tm_die "FerretDB not in $TM_CACHE/bin (run TM_FORCE_FERRETDB=1 scripts/deps.sh): the lab's MongoDB user is set up through FerretDB"
	[[ -x "$PY" ]] || tm_die "no $PY (run scripts/deps.sh)"
	[[ -r "$CONV_TRACE" && -r "$CODE_TRACE" ]] || tm_die "traces not found in $SHARED/data/traces (set TM_SHARED)"
}

lock() {
	exec 8>"$LOCK"
	flock -w 600 8 || tm_die "another scripts/lab.sh holds $LOCK"
}

# ---------------------------------------------------------------- up

net_up() {
	local node ns err all=("$SW_NS")
	for node in "${NODES[@]}"; do all+=("$(ns_of "$node")"); done
	for ns in "${all[@]}"; do
		err="$(ip netns add "$ns" 2>&1)" || tm_die "cannot create network namespace $ns: $err"
	done
	in_ns sw ip link set lo up
	in_ns sw sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 ||
		tm_warn "could not disable IPv6 in $SW_NS (continuing)"
	in_ns sw ip link add br0 type bridge
	in_ns sw ip link set br0 up
	for node in "${NODES[@]}"; do
		ns="$(ns_of "$node")"
		in_ns "$node" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 ||
			tm_warn "could not disable IPv6 in $ns (continuing)"
		in_ns "$node" ip link set lo up
		# the veth pair is created inside the switch namespace, its peer directly in $ns
		in_ns sw ip link add "$node" type veth peer name eth0 netns "$ns"
		in_ns sw ip link set "$node" master br0
		in_ns sw ip link set "$node" up
		in_ns "$node" ip addr add "${ADDR[$node]}/24" dev eth0
		in_ns "$node" ip link set eth0 up
		printf '%-6s namespace %-12s eth0 %s/24\n' "$node" "$ns" "${ADDR[$node]}"
	done
}

fw_up() {
	local vm
	mkdir -p "$LAB/firewall"
	for vm in "${VMS[@]}"; do
		"$FWGEN" nft "$vm" >"$LAB/firewall/$vm.nft"
		in_ns "$vm" nft -f - <"$LAB/firewall/$vm.nft"
		printf '%-6s nftables: input policy drop + %s rule(s) from deploy/firewall.tsv\n' \
			"$vm" "$(grep -c ' saddr ' "$LAB/firewall/$vm.nft")"
	done
}

write_sshd_config() {
	local vm="$1" dir
	dir="$LAB/ssh/$vm"
	cat >"$dir/sshd_config" <<-EOF
		# generated by scripts/lab.sh for $vm (${ADDR[$vm]}): key-only, as on the real VMs
		Port 22
		ListenAddress ${ADDR[$vm]}
		HostKey $dir/ssh_host_ed25519_key
		PidFile $LAB/run/$vm-sshd.pid
		AuthorizedKeysFile $AUTH_KEYS
		PubkeyAuthentication yes
		PasswordAuthentication no
		KbdInteractiveAuthentication no
		PermitEmptyPasswords no
		PermitRootLogin prohibit-password
		AuthenticationMethods publickey
		UsePAM no
		StrictModes yes
		X11Forwarding no
		AllowTcpForwarding no
		AllowAgentForwarding no
		PrintMotd no
		LogLevel VERBOSE
	EOF
}

ssh_up() {
	local vm dir i
	rm -rf "$LAB/ssh"
	mkdir -p "$LAB/ssh"
	chmod 700 "$LAB/ssh"
	ssh-keygen -q -t ed25519 -N '' -C "tokenmeter-lab-admin" -f "$LAB/ssh/admin_ed25519"
	install -d -m 755 "${AUTH_KEYS%/*}"
	install -m 600 "$LAB/ssh/admin_ed25519.pub" "$AUTH_KEYS"
	: >"$LAB/ssh/known_hosts"
	# sshd's privilege-separation directory (normally created by its systemd unit)
	[[ -d /run/sshd ]] || install -d -m 755 /run/sshd
	for vm in "${VMS[@]}"; do
		dir="$LAB/ssh/$vm"
		mkdir -p "$dir"
		chmod 700 "$dir"
		ssh-keygen -q -t ed25519 -N '' -C "tokenmeter-lab-$vm" -f "$dir/ssh_host_ed25519_key"
		printf '%s %s\n' "${ADDR[$vm]}" "$(cut -d' ' -f1,2 "$dir/ssh_host_ed25519_key.pub")" >>"$LAB/ssh/known_hosts"
		write_sshd_config "$vm"
		"$SSHD" -t -f "$dir/sshd_config" || tm_die "sshd rejects $dir/sshd_config"
		spawn_in "$vm" sshd "$LAB/logs/$vm-sshd.log" "$SSHD" -D -f "$dir/sshd_config" -E "$LAB/logs/$vm-sshd.log"
	done
	for vm in "${VMS[@]}"; do
		for ((i = 0; i < 40; i++)); do
			# shellcheck disable=SC2016  # expanded by the inner bash
			in_ns "$vm" timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/22"' "${ADDR[$vm]}" 2>/dev/null && break
			sleep 0.25
		done
		((i < 40)) || tm_die "sshd on $vm did not open ${ADDR[$vm]}:22 (see $LAB/logs/$vm-sshd.log)"
		printf '%-6s sshd %s:22 (key only, pid %s)\n' "$vm" "${ADDR[$vm]}" "$(<"$LAB/run/$vm-sshd.pid")"
	done
}

secrets_up() {
	mkdir -p "$LAB/secrets"
	chmod 700 "$LAB/secrets"
	# 32 hex digits: no character that would need escaping in a MongoDB URI
	od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$LAB/secrets/mongodb-$MONGO_USER.password"
	chmod 600 "$LAB/secrets/mongodb-$MONGO_USER.password"
	(
		umask 077
		printf 'mongodb://%s:%s@%s:%s/%s\n' "$MONGO_USER" "$(<"$LAB/secrets/mongodb-$MONGO_USER.password")" \
			"${ADDR[vm2]}" "$MONGO_PORT" "$MONGO_DB" >"$LAB/secrets/mongodb-uri"
	)
}

mongo_uri() { cat "$LAB/secrets/mongodb-uri"; }

servers_up() {
	local pk pm rc=0
	# vm1: ZooKeeper (stack.sh keeps it on 127.0.0.1) + Kafka on the private address
	in_ns vm1 env TOKENMETER_STATE="$LAB/vm1" TM_KAFKA_HOST="${ADDR[vm1]}" \
		TM_KAFKA_ADVERTISED="${ADDR[vm1]}:$KAFKA_PORT" TM_KAFKA_PORT="$KAFKA_PORT" TM_HEALTH_TIMEOUT=120 \
		"$STACK" kafka-start >"$LAB/logs/vm1-stack.log" 2>&1 8>&- &
	pk=$!
	# vm2: FerretDB on the private address, user tokenmeter, every command needs authentication
	in_ns vm2 env TOKENMETER_STATE="$LAB/vm2" TM_MONGO=ferretdb TM_MONGO_HOST="${ADDR[vm2]}" \
		TM_MONGO_PORT="$MONGO_PORT" TM_MONGO_USER="$MONGO_USER" TM_MONGO_DB="$MONGO_DB" \
		TM_MONGO_PASSWORD_FILE="$LAB/secrets/mongodb-$MONGO_USER.password" TM_HEALTH_TIMEOUT=60 \
		"$STACK" mongo-start >"$LAB/logs/vm2-stack.log" 2>&1 8>&- &
	pm=$!
	wait "$pk" || rc=1
	sed 's/^/vm1    /' "$LAB/logs/vm1-stack.log"
	wait "$pm" || rc=1
	sed 's/^/vm2    /' "$LAB/logs/vm2-stack.log"
	[[ $rc -eq 0 ]] || tm_die "a server did not start (logs: $LAB/logs/, $LAB/vm1/logs/, $LAB/vm2/logs/)"
}

processor_up() {
	local log="$LAB/vm3/processor.log" i pid
	mkdir -p "$LAB/vm3"
	cp "$TM_REPO/config/gpu_seed.json" "$LAB/vm3/gpu_seed.json"
	# settings in the environment (the password stays off command lines)
	MONGODB_URI="$(mongo_uri)" KAFKA_BOOTSTRAP="${ADDR[vm1]}:$KAFKA_PORT" \
		HTTP_LISTEN="${ADDR[vm3]}:$HTTP_PORT" GPU_METRICS_SOURCE=seed HOST_NAME=vm4 \
		WINDOW_SECONDS=10 IDLE_CLOSE_SECONDS=2 \
		spawn_in vm3 processor "$log" "$BIN" process --gpu-seed "$LAB/vm3/gpu_seed.json"
	pid="$(<"$LAB/run/vm3-processor.pid")"
	for ((i = 0; i < 80; i++)); do
		kill -0 "$pid" 2>/dev/null || {
			tail -n 20 "$log" >&2
			tm_die "the processor exited at start (see $log)"
		}
		grep -q 'consuming ' "$log" && break
		sleep 0.25
	done
	((i < 80)) || tm_die "the processor did not start consuming within 20 s (see $log)"
	printf '%-6s tokenmeter process (pid %s): Kafka %s:%s, MongoDB %s:%s as %s, HTTP %s:%s\n' \
		vm3 "$pid" "${ADDR[vm1]}" "$KAFKA_PORT" "${ADDR[vm2]}" "$MONGO_PORT" "$MONGO_USER" "${ADDR[vm3]}" "$HTTP_PORT"
}

# producer NAME HOST GPUS MODEL ROWS TRACE: one `tokenmeter produce` on vm4; its exit status
# goes to $LAB/vm4/NAME.rc.
producer_up() {
	local name="$1" host="$2" gpus="$3" model="$4" rows="$5" trace="$6"
	mkdir -p "$LAB/vm4"
	rm -f "$LAB/vm4/$name.rc"
	# shellcheck disable=SC2016  # expanded by the inner bash
	KAFKA_BOOTSTRAP="${ADDR[vm1]}:$KAFKA_PORT" spawn_in vm4 "$name" "$LAB/vm4/$name.log" \
		bash -c '"$@"; echo $? >"$0"' "$LAB/vm4/$name.rc" \
		"$BIN" produce --host "$host" --gpus "$gpus" --model "$model" --limit "$rows" --no-progress "$trace"
	printf '%-6s tokenmeter produce --host %s --gpus %s: first %s rows of %s (pid %s)\n' \
		vm4 "$host" "$gpus" "$rows" "${trace##*/}" "$(<"$LAB/run/vm4-$name.pid")"
}

cmd_up() {
	need_root
	preflight
	lock
	load_addrs
	local t0=$SECONDS
	if [[ -n "$(lab_namespaces)$(lab_pids)" ]]; then
		echo "lab: a previous lab is (partly) up: taking it down first"
		do_down
	fi
	# a fresh lab: no data of a previous one (Kafka topics, MongoDB, keys)
	rm -rf "$LAB/vm1" "$LAB/vm2" "$LAB/vm3" "$LAB/vm4" "$LAB/run" "$LAB/logs" "$LAB/ssh" \
		"$LAB/secrets" "$LAB/firewall"
	mkdir -p "$LAB/run" "$LAB/logs"
	net_up
	fw_up
	ssh_up
	secrets_up
	servers_up
	processor_up
	producer_up producer-conv vm4 1 lab-conv "$CONV_ROWS" "$CONV_TRACE"
	producer_up producer-code vm4-b 2 lab-code "$CODE_ROWS" "$CODE_TRACE"
	printf 'lab up in %ds (state %s); next: scripts/lab.sh verify\n' $((SECONDS - t0)) "$LAB"
}

# ---------------------------------------------------------------- down

# pids of lab processes: everything inside a lab namespace, plus pid files of this lab whose
# process still names the lab's state directory (a process that left its namespace).
lab_pids() {
	local ns f pid
	{
		for ns in $(lab_namespaces); do ip netns pids "$ns" 2>/dev/null || true; done
		for f in "$LAB"/run/*.pid "$LAB"/vm[1-4]/run/*.pid; do
			[[ -f "$f" ]] || continue
			pid="$(<"$f")"
			[[ "$pid" =~ ^[0-9]+$ && -r "/proc/$pid/cmdline" ]] || continue
			if tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qF -- "$LAB/"; then echo "$pid"; fi
		done
	} | sort -un
}

# stop_pids SECONDS PID...: SIGTERM, wait, then SIGKILL what is left.
stop_pids() {
	local t="$1" pid i alive
	shift
	[[ $# -gt 0 ]] || return 0
	kill -TERM "$@" 2>/dev/null || true
	for ((i = 0; i < t * 4; i++)); do
		alive=0
		for pid in "$@"; do
			if kill -0 "$pid" 2>/dev/null; then alive=1; fi
		done
		[[ $alive -eq 1 ]] || return 0
		sleep 0.25
	done
	kill -KILL "$@" 2>/dev/null || true
	sleep 0.5
}

do_down() {
	local pids=() first=() zk=() pid ns n
	mapfile -t pids < <(lab_pids)
	for pid in "${pids[@]}"; do
		if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q QuorumPeerMain; then
			zk+=("$pid")
		else
			first+=("$pid")
		fi
	done
	# clients and Kafka first (Kafka shuts down cleanly while ZooKeeper is still there)
	stop_pids 10 "${first[@]}"
	stop_pids 5 "${zk[@]}"
	mapfile -t pids < <(lab_pids)
	[[ ${#pids[@]} -eq 0 ]] || stop_pids 2 "${pids[@]}"
	n=0
	for ns in $(lab_namespaces); do
		ip netns del "$ns" || tm_warn "could not delete namespace $ns"
		n=$((n + 1))
	done
	rm -f "$LAB"/run/*.pid "$LAB"/vm[1-4]/run/*.pid 2>/dev/null || true
	rm -rf "$LAB/ssh" "$LAB/secrets" "${AUTH_KEYS%/*}"
	printf 'lab down: %d process(es) stopped, %d namespace(s) deleted\n' $((${#first[@]} + ${#zk[@]})) "$n"
	[[ -z "$(lab_namespaces)" ]] || tm_die "namespaces left: $(lab_namespaces | paste -sd' ')"
	mapfile -t pids < <(lab_pids)
	[[ ${#pids[@]} -eq 0 ]] || tm_die "processes left: ${pids[*]}"
}

cmd_down() {
	need_root
	lock
	do_down
}

# ---------------------------------------------------------------- status

cmd_status() {
	need_root
	load_addrs
	local node ns pid
	for node in "${NODES[@]}"; do
		ns="$(ns_of "$node")"
		if ! ns_exists "$ns"; then
			printf '%-6s %-12s absent\n' "$node" "$ns"
			continue
		fi
		printf '%-6s %-12s %s  firewall: %s\n' "$node" "$ns" \
			"$(in_ns "$node" ip -4 -br addr show dev eth0 2>/dev/null | awk '{print $3}')" \
			"$(in_ns "$node" nft list chain inet tokenmeter input 2>/dev/null | grep -o 'policy [a-z]*' || echo none)"
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			printf '         pid %-8s %s\n' "$pid" "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-110)"
		done
	done
	if ns_exists "$SW_NS"; then
		printf '%-6s %-12s bridge br0: %s\n' sw "$SW_NS" \
			"$(in_ns sw ip -br link show master br0 | awk '{print $1}' | sed 's/@.*//' | paste -sd' ')"
	else
		printf '%-6s %-12s absent\n' sw "$SW_NS"
	fi
}

# ---------------------------------------------------------------- verify

row() { printf '%-4s  %s\n' "$1" "$2"; }

check_allowed() {
	local src="$1" dst="$2" port="$3" what="$4" res
	if res="$(tcp_try "$src" "${ADDR[$dst]}" "$port")"; then
		row PASS "allowed: $src -> $dst ${ADDR[$dst]}:$port ($what): $res"
	else
		row FAIL "allowed: $src -> $dst ${ADDR[$dst]}:$port ($what): $res"
	fi
}

check_denied() {
	local src="$1" dst="$2" port="$3" what="$4" res
	if res="$(tcp_try "$src" "${ADDR[$dst]}" "$port")"; then
		row FAIL "denied:  $src -> $dst ${ADDR[$dst]}:$port ($what): connected"
	else
		row PASS "denied:  $src -> $dst ${ADDR[$dst]}:$port ($what): $res"
	fi
}

SSH_BASE=()
ssh_base() {
	SSH_BASE=(ssh -F /dev/null -o UserKnownHostsFile="$LAB/ssh/known_hosts" -o GlobalKnownHostsFile=/dev/null
		-o StrictHostKeyChecking=yes -o ConnectTimeout=5 -o ServerAliveInterval=2 -o ServerAliveCountMax=2)
}

check_ssh_key() {
	local vm="$1" out
	if out="$(in_ns admin "${SSH_BASE[@]}" -i "$LAB/ssh/admin_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes \
		-o LogLevel=ERROR "root@${ADDR[$vm]}" 'ip -4 -br addr show dev eth0' 2>&1)" &&
		[[ " $out " == *" ${ADDR[$vm]}/24 "* ]]; then
		row PASS "allowed: admin -> $vm ${ADDR[$vm]}:22 ssh root with the lab key (host key known): remote eth0 ${ADDR[$vm]}/24"
	else
		row FAIL "allowed: admin -> $vm ${ADDR[$vm]}:22 ssh root with the lab key: ${out//$'\n'/ }"
	fi
}

# A password login must fail because the server offers publickey only (not for a wrong password).
check_ssh_password() {
	local vm="$1" user="$2" out rc=0
	out="$(in_ns admin sshpass -p "tokenmeter-lab-not-the-password" "${SSH_BASE[@]}" \
		-o PubkeyAuthentication=no -o PreferredAuthentications=password,keyboard-interactive \
		-o NumberOfPasswordPrompts=1 -o LogLevel=INFO "$user@${ADDR[$vm]}" true 2>&1)" || rc=$?
	out="$(grep -m1 -i 'denied\|refused\|timed out\|closed' <<<"$out" || echo "${out//$'\n'/ }")"
	if [[ $rc -ne 0 && "$out" == *"Permission denied (publickey)"* ]]; then
		row PASS "denied:  admin -> $vm ssh $user with a password: '$out' (no password method offered)"
	else
		row FAIL "denied:  admin -> $vm ssh $user with a password: exit $rc, '$out'"
	fi
}

check_sshd_config() {
	local vm="$1" t want
	t="$(in_ns "$vm" "$SSHD" -T -f "$LAB/ssh/$vm/sshd_config" 2>&1)" || true
	for want in "passwordauthentication no" "kbdinteractiveauthentication no" \
		"permitrootlogin without-password" "pubkeyauthentication yes" "authenticationmethods publickey"; do
		grep -qx "$want" <<<"$t" || {
			row FAIL "$vm sshd -T: '$want' missing"
			return 0
		}
	done
	row PASS "$vm sshd -T: passwordauthentication no, kbdinteractiveauthentication no, permitrootlogin without-password (prohibit-password), authenticationmethods publickey"
}

# listeners NODE PORT: the local addresses listening on TCP PORT in NODE, space-separated
listeners() {
	in_ns "$1" ss -Hltn 2>/dev/null | awk -v p=":$2" 'substr($4, length($4) - length(p) + 1) == p { print $4 }' |
		sort -u | paste -sd' '
}

check_listener() {
	local node="$1" port="$2" want="$3" what="$4" got
	got="$(listeners "$node" "$port")"
	if [[ "$got" == "$want" ]]; then
		row PASS "$node: $what listens on $got only"
	else
		row FAIL "$node: $what listens on '${got:-nothing}', want $want only"
	fi
}

# The Mongo probes, with the venv's pymongo, run on vm3 (the only host allowed to reach vm2).
mongo_probe() {
	MONGODB_URI="$1" in_ns vm3 "$PY" - "$2" <<-'PY'
		import os, sys
		from pymongo import MongoClient
		from pymongo.errors import OperationFailure, PyMongoError
		uri, mode = os.environ["MONGODB_URI"], sys.argv[1]
		c = MongoClient(uri, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000)
		db = c.get_default_database()
		try:
		    if mode == "auth":
		        who = db.command("connectionStatus")["authInfo"]["authenticatedUsers"]
		        db.lab_probe.insert_one({"probe": 1})
		        n = db.lab_probe.count_documents({})
		        db.drop_collection("lab_probe")
		        tu = db.token_usage.count_documents({})
		        print(f"authenticated as {who[0]['user']}@{who[0]['db']}; insert, count ({n}), drop ok; token_usage has {tu} documents")
		        sys.exit(0 if who and n == 1 else 1)
		    c.admin.command("ping")  # the server is reachable and answers
		    d = db.token_usage.find_one()
		    print(f"UNEXPECTED: find on token_usage succeeded ({d is not None and 'a document' or 'no document'})")
		    sys.exit(1)
		except OperationFailure as e:
		    print(f"{e.details.get('codeName', '')} (code {e.code}): {e.details.get('errmsg', str(e))}")
		    sys.exit(0 if mode != "auth" and e.code in (13, 18) else 1)
		except PyMongoError as e:
		    print(f"{type(e).__name__}: {str(e)[:160]}")
		    sys.exit(1)
	PY
}

# expected sums of the first N rows of an Azure trace, computed here from the file alone
trace_sums() {
	python3 - "$1" "$2" <<-'PY'
		import csv, sys
		r = p = c = 0
		with open(sys.argv[1], newline="") as f:
		    for i, row in enumerate(csv.DictReader(f)):
		        if i == int(sys.argv[2]):
		            break
		        r += 1; p += int(row["ContextTokens"]); c += int(row["GeneratedTokens"])
		print(r, p, c)
	PY
}

# token_usage sums per host, read on vm3 with the credentials, until they equal the
# expectation or 90 s pass; prints "host r p c" lines.
wait_sums() {
	MONGODB_URI="$(mongo_uri)" in_ns vm3 "$PY" - "$@" <<-'PY'
		import os, sys, time
		from pymongo import MongoClient
		want = {}
		for spec in sys.argv[1:]:
		    h, r, p, c = spec.split(":")
		    want[h] = (int(r), int(p), int(c))
		db = MongoClient(os.environ["MONGODB_URI"], serverSelectionTimeoutMS=5000).get_default_database()
		deadline = time.time() + 90
		while True:
		    got = {}
		    for d in db.token_usage.find({}, {"host": 1, "requests": 1, "prompt_tokens": 1, "completion_tokens": 1}):
		        r, p, c = got.get(d["host"], (0, 0, 0))
		        got[d["host"]] = (r + d["requests"], p + d["prompt_tokens"], c + d["completion_tokens"])
		    if got == want or time.time() > deadline:
		        break
		    time.sleep(1)
		for h in sorted(set(want) | set(got)):
		    print(h, *got.get(h, ("-", "-", "-")))
		sys.exit(0 if got == want else 1)
	PY
}

# verify_rows TMPDIR
verify_rows() {
	local tmp="$1" node ns vm t out res rc i n pid dl base name rq1 rq2 r1 p1 c1 r2 p2 c2 all=("$SW_NS")

	# -- the lab exists, and only inside namespaces
	local absent=0
	for node in "${NODES[@]}"; do all+=("$(ns_of "$node")"); done
	for ns in "${all[@]}"; do
		ns_exists "$ns" || {
			row FAIL "namespace $ns exists: missing (scripts/lab.sh up first; it fails with the reason when namespaces cannot be created)"
			absent=1
		}
	done
	[[ $absent -eq 0 ]] || return 0
	out="$( (ip -4 addr show; ip -4 route show table all; ip -br link show) 2>&1 | grep -E '10\.0\.1\.|tmlab|br0' || true)"
	if [[ -z "$out" ]]; then
		row PASS "root namespace: no 10.0.1.x address or route and no lab link (the bridge lives in $SW_NS)"
	else
		row FAIL "root namespace has lab addresses/routes/links: ${out//$'\n'/; }"
	fi
	for node in "${NODES[@]}"; do
		ns="$(ns_of "$node")"
		res="$(in_ns "$node" ip -4 -br addr show dev eth0 2>/dev/null | awk '{print $3}')"
		if [[ "$node" == admin ]]; then
			[[ "$res" == "${ADDR[$node]}/24" ]] && t=PASS || t=FAIL
			row "$t" "$node: namespace $ns, eth0 $res on br0, lo up, no firewall (the admin host)"
			continue
		fi
		out="$(in_ns "$node" nft list chain inet tokenmeter input 2>/dev/null || true)"
		n="$(grep -c ' saddr .* accept' <<<"$out" || true)"
		i="$(grep -c ' saddr ' "$LAB/firewall/$node.nft" || true)"
		if [[ "$res" == "${ADDR[$node]}/24" && "$out" == *"policy drop"* && "$n" == "$i" ]]; then
			row PASS "$node: namespace $ns, eth0 $res, nftables input policy drop + $n accept rule(s) = deploy/firewall.tsv"
		else
			row FAIL "$node: namespace $ns, eth0 '$res', nftables: ${out:+loaded} policy drop? $([[ "$out" == *"policy drop"* ]] && echo yes || echo no), $n rules, want $i"
		fi
	done

	# -- servers bound where DESIGN 1 says
	check_listener vm1 2181 "127.0.0.1:2181" "ZooKeeper"
	res="$(in_ns vm1 timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/2181 && printf ruok >&3 && cat <&3' 2>/dev/null || true)"
	[[ "$res" == imok ]] && t=PASS || t=FAIL
	row "$t" "vm1 -> its own 127.0.0.1:2181 (ZooKeeper ruok, loopback): '${res:-no answer}'"
	check_listener vm1 "$KAFKA_PORT" "${ADDR[vm1]}:$KAFKA_PORT" "Kafka"
	res="$(grep -h '^advertised.listeners=' "$LAB/vm1/kafka/server.properties" 2>/dev/null || true)"
	[[ "$res" == "advertised.listeners=PLAINTEXT://${ADDR[vm1]}:$KAFKA_PORT" ]] && t=PASS || t=FAIL
	row "$t" "vm1: Kafka ${res:-advertised.listeners missing}"
	check_listener vm2 "$MONGO_PORT" "${ADDR[vm2]}:$MONGO_PORT" "MongoDB (FerretDB)"
	check_listener vm3 "$HTTP_PORT" "${ADDR[vm3]}:$HTTP_PORT" "tokenmeter HTTP"
	for vm in "${VMS[@]}"; do check_listener "$vm" 22 "${ADDR[$vm]}:22" "sshd"; done

	# -- allowed paths
	check_allowed vm4 vm1 "$KAFKA_PORT" "Kafka"
	check_allowed vm3 vm1 "$KAFKA_PORT" "Kafka"
	if res="$(mongo_probe "$(mongo_uri)" auth 2>&1)"; then
		row PASS "allowed: vm3 -> vm2 ${ADDR[vm2]}:$MONGO_PORT MongoDB with credentials (pymongo, SCRAM): $res"
	else
		row FAIL "allowed: vm3 -> vm2 ${ADDR[vm2]}:$MONGO_PORT MongoDB with credentials: ${res//$'\n'/ }"
	fi
	out=""
	for ((i = 0; i < 20; i++)); do
		out="$(in_ns admin curl -sS -m 5 -w ' HTTP %{http_code}' "http://${ADDR[vm3]}:$HTTP_PORT/health" 2>&1)" || true
		[[ "$out" == *'"status":"ok"'*' HTTP 200' ]] && break
		sleep 0.5
	done
	[[ "$out" == *'"status":"ok"'*' HTTP 200' ]] && t=PASS || t=FAIL
	row "$t" "allowed: admin -> vm3 ${ADDR[vm3]}:$HTTP_PORT GET /health: $out"
	ssh_base
	for vm in "${VMS[@]}"; do check_ssh_key "$vm"; done

	# -- denied paths (in parallel: a dropped SYN costs DENY_T seconds)
	local -a denied=(
		"vm4 vm2 $MONGO_PORT MongoDB"
		"vm2 vm1 $KAFKA_PORT Kafka"
		"admin vm1 $KAFKA_PORT Kafka"
		"admin vm2 $MONGO_PORT MongoDB"
		"vm4 vm3 $HTTP_PORT tokenmeter HTTP"
		"vm1 vm3 $HTTP_PORT tokenmeter HTTP"
		"vm3 vm1 2181 ZooKeeper"
		"vm2 vm1 2181 ZooKeeper"
		"vm4 vm1 2181 ZooKeeper"
		"admin vm1 2181 ZooKeeper"
		"vm4 vm1 22 SSH, not from admin"
		"vm3 vm2 22 SSH, not from admin"
		"vm1 vm4 22 SSH, not from admin"
	)
	for i in "${!denied[@]}"; do
		# shellcheck disable=SC2086  # word splitting of the spec is intended
		(
			set -- ${denied[$i]}
			check_denied "$1" "$2" "$3" "${*:4}"
		) >"$tmp/deny.$i" 2>&1 &
	done
	wait
	for i in "${!denied[@]}"; do cat "$tmp/deny.$i"; done

	# -- MongoDB: authentication is required
	base="mongodb://${ADDR[vm2]}:$MONGO_PORT/$MONGO_DB"
	if res="$(mongo_probe "$base" noauth 2>&1)"; then
		row PASS "denied:  vm3 -> vm2 MongoDB without credentials (find on token_usage): $res"
	else
		row FAIL "denied:  vm3 -> vm2 MongoDB without credentials: ${res//$'\n'/ }"
	fi
	if res="$(mongo_probe "mongodb://$MONGO_USER:wrong-password@${ADDR[vm2]}:$MONGO_PORT/$MONGO_DB" noauth 2>&1)"; then
		row PASS "denied:  vm3 -> vm2 MongoDB as $MONGO_USER with a wrong password: $res"
	else
		row FAIL "denied:  vm3 -> vm2 MongoDB as $MONGO_USER with a wrong password: ${res//$'\n'/ }"
	fi

	# -- SSH: key only
	for vm in "${VMS[@]}"; do check_sshd_config "$vm"; done
	for vm in "${VMS[@]}"; do
		check_ssh_password "$vm" root
		check_ssh_password "$vm" nobody
	done

	# -- end to end: vm4 -> Kafka on vm1 -> processor on vm3 -> MongoDB on vm2
	local want_conv want_code
	want_conv="$(trace_sums "$CONV_TRACE" "$CONV_ROWS")"
	want_code="$(trace_sums "$CODE_TRACE" "$CODE_ROWS")"
	local prc=ok
	for name in producer-conv producer-code; do
		pid="$(cat "$LAB/run/vm4-$name.pid" 2>/dev/null || echo none)"
		for ((i = 0; i < 240; i++)); do
			[[ -s "$LAB/vm4/$name.rc" ]] && break
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.5
		done
		rc="$(cat "$LAB/vm4/$name.rc" 2>/dev/null || echo "unknown: not running (pid $pid), no exit status after $((i / 2)) s")"
		[[ "$rc" == 0 ]] || prc="$name exit $rc (log $LAB/vm4/$name.log)"
	done
	read -r rq1 _ <<<"$want_conv"
	read -r rq2 _ <<<"$want_code"
	if [[ "$prc" == ok ]]; then
		row PASS "e2e: vm4 producers -> ${ADDR[vm1]}:$KAFKA_PORT delivered $rq1 events (vm4, ${CONV_TRACE##*/}) and $rq2 (vm4-b, ${CODE_TRACE##*/}), exit 0"
	else
		row FAIL "e2e: vm4 producers: $prc"
	fi
	if res="$(wait_sums "vm4:${want_conv// /:}" "vm4-b:${want_code// /:}" 2>&1)"; then
		row PASS "e2e: token_usage on vm2 (read on vm3 as $MONGO_USER) per host requests/prompt/completion = trace sums: ${res//$'\n'/; }"
	else
		row FAIL "e2e: token_usage on vm2 per host: got ${res//$'\n'/; }; want vm4 $want_conv; vm4-b $want_code"
	fi
	read -r r1 p1 c1 <<<"$want_conv"
	read -r r2 p2 c2 <<<"$want_code"
	out="$(MONGODB_URI="$(mongo_uri)" in_ns vm3 "$BIN" report --json 2>&1)" || true
	if jq -e --argjson r $((r1 + r2)) --argjson p $((p1 + p2)) --argjson c $((c1 + c2)) \
		'.total.requests == $r and .total.prompt_tokens == $p and .total.completion_tokens == $c' \
		<<<"$out" >/dev/null 2>&1; then
		row PASS "e2e: tokenmeter report --json on vm3 (libmongoc, authenticated): total $((r1 + r2)) requests, $((p1 + p2)) prompt, $((c1 + c2)) completion tokens = trace sums"
	else
		row FAIL "e2e: tokenmeter report on vm3: $(jq -c .total <<<"$out" 2>/dev/null || echo "${out:0:200}")"
	fi
	out="$(in_ns admin curl -fsS -m 5 "http://${ADDR[vm3]}:$HTTP_PORT/gpu/info" 2>&1)" || true
	if res="$(jq -er '"source \(.source), \(.gpus | length) GPU(s): \([.gpus[].name] | join(", "))"' <<<"$out" 2>/dev/null)" &&
		jq -e '(.gpus | length) > 0' <<<"$out" >/dev/null 2>&1; then
		row PASS "e2e: admin -> vm3 GET /gpu/info: $res"
	else
		row FAIL "e2e: admin -> vm3 GET /gpu/info: ${out:0:200}"
	fi
	out="$(in_ns admin curl -fsS -m 5 "http://${ADDR[vm3]}:$HTTP_PORT/metrics" 2>&1)" || true
	n="$(awk '$1 == "tokenmeter_events_counted_total" { print $2 }' <<<"$out")"
	dl="$(awk '$1 == "tokenmeter_dead_letters_all_total" { print $2 }' <<<"$out")"
	[[ "$n" == $((r1 + r2)) && "$dl" == 0 ]] && t=PASS || t=FAIL
	row "$t" "e2e: admin -> vm3 GET /metrics: tokenmeter_events_counted_total ${n:-?} (want $((r1 + r2))), dead letters ${dl:-?}"
}

cmd_verify() {
	need_root
	load_addrs
	lock
	local tmp rc t0=$SECONDS fails
	tmp="$(mktemp -d)"
	if ! verify_rows "$tmp" | tee "$tmp/rows"; then
		row FAIL "verify stopped before its last check (see the error above)" | tee -a "$tmp/rows"
	fi
	fails="$(grep -c '^FAIL' "$tmp/rows" || true)"
	rc=0
	[[ "$fails" -eq 0 && -s "$tmp/rows" ]] || rc=1
	printf 'verify: %d PASS, %d FAIL (%ds)\n' "$(grep -c '^PASS' "$tmp/rows" || true)" "$fails" $((SECONDS - t0))
	rm -rf "$tmp"
	return "$rc"
}

main() {
	local cmd="${1:-}"
	case "$cmd" in
	up) cmd_up ;;
	verify) cmd_verify ;;
	down) cmd_down ;;
	status) cmd_status ;;
	"" | -h | --help | help) usage ;;
	*)
		usage >&2
		tm_die "unknown command '$cmd'"
		;;
	esac
}

main "$@"
