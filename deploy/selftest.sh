#!/usr/bin/env bash
# deploy/selftest.sh - tests the real-VM deployment files on any Linux machine (no Ubuntu VM,
# no Docker engine, no root needed except for nothing; nothing outside a temporary directory
# is changed, no port is opened but an ephemeral one on 127.0.0.1):
#   1. shellcheck -x and bash -n of deploy/*.sh and deploy/docker/*.sh
#   2. `make install DESTDIR=...`: the files, the binary runs, and every library it links
#      comes from a package of the Dockerfiles' RUNTIME_PACKAGES (or their dependencies)
#   3. deploy/vm1..vm4 rendered into DEPLOY_ROOT (files only: packages, users, services,
#      firewall and sshd reload are skipped there): the rendered configuration says what
#      DESIGN 1 says; a second run changes nothing; a changed setting changes one file
#   4. the rendered systemd units pass `systemd-analyze verify`, the rendered tools shellcheck
#   5. the helpers: URL encoding, CIDR matching, env-value checks
#   6. deploy/docker/healthcheck.sh against a small HTTP server (200, 503, nothing listening)
#   7. hadolint on the Dockerfiles and `docker compose config`, when those tools are on PATH
# Ends with "N passed, N failed"; exit 1 on any failure.
#
# Usage: deploy/selftest.sh [-v]     (-v prints the output of every rendering run)
# shellcheck disable=SC2016  # bash -c scripts take their values as positional parameters
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
VERBOSE=0
[[ "${1:-}" == -v ]] && VERBOSE=1

WORK="$(mktemp -d "${TMPDIR:-/tmp}/tm-deploy-selftest.XXXXXX")"
HTTP_PID=""
cleanup() {
	if [[ -n "${HTTP_PID:-}" ]]; then kill "$HTTP_PID" 2>/dev/null || true; fi
	rm -rf "$WORK"
}
trap cleanup EXIT

PASS=0
FAIL=0
ok() {
	PASS=$((PASS + 1))
	printf 'PASS  %s\n' "$*"
}
bad() {
	FAIL=$((FAIL + 1))
	printf 'FAIL  %s\n' "$*"
}
# check DESCRIPTION CMD...: PASS when CMD succeeds.
check() {
	local what="$1"
	shift
	if "$@" >"$WORK/check.out" 2>&1; then
		ok "$what"
	else
		bad "$what"
		sed 's/^/      /' "$WORK/check.out" | tail -n 15
	fi
}
has_line() { grep -qxF -- "$2" "$1"; }
has_re() { grep -qE -- "$2" "$1"; }
mode_is() { [[ "$(stat -c %a "$1")" == "$2" ]]; }

# ---------------------------------------------------------------- 1. shell

cd "$REPO"
check "shellcheck -x deploy/*.sh deploy/docker/*.sh" shellcheck -x deploy/*.sh deploy/docker/*.sh
for f in deploy/*.sh deploy/docker/*.sh; do
	check "bash -n $f" bash -n "$f"
done

# ---------------------------------------------------------------- 2. make install

STAGE="$WORK/stage"
check "make install PREFIX=/usr/local DESTDIR=<tmp>" make -s install PREFIX=/usr/local DESTDIR="$STAGE"
check "installed bin/tokenmeter (0755) runs" \
	bash -c '[[ "$(stat -c %a "$1/usr/local/bin/tokenmeter")" == 755 ]] && "$1/usr/local/bin/tokenmeter" version' _ "$STAGE"
check "installed share/tokenmeter/gpu_seed.json equals config/gpu_seed.json" \
	cmp "$STAGE/usr/local/share/tokenmeter/gpu_seed.json" config/gpu_seed.json

# Every NEEDED library of the binary belongs to a runtime package of the images (or to one of
# their dependencies, or libc6): the runtime stage installs nothing else.
runtime_libs_covered() {
	local pkgs deps lib path pkg missing=()
	pkgs="$(sed -n 's/^ARG RUNTIME_PACKAGES="\(.*\)"$/\1/p' deploy/docker/Dockerfile.processor)"
	[[ -n "$pkgs" ]] || { echo "no RUNTIME_PACKAGES in Dockerfile.processor"; return 1; }
	[[ "$pkgs" == "$(sed -n 's/^ARG RUNTIME_PACKAGES="\(.*\)"$/\1/p' deploy/docker/Dockerfile.producer)" ]] ||
		{ echo "the two Dockerfiles list different RUNTIME_PACKAGES"; return 1; }
	# shellcheck disable=SC2086  # a list of package names
	deps="$pkgs libc6 libgcc-s1 $(apt-cache depends $pkgs 2>/dev/null | sed -n 's/^ *Depends: \([^ <]*\).*/\1/p' | sort -u | tr '\n' ' ')"
	while read -r lib; do
		path="$(ldconfig -p | awk -v l="$lib" '$1 == l {print $NF; exit}')"
		[[ -n "$path" ]] || { missing+=("$lib(not found)"); continue; }
		pkg="$(dpkg -S "$(readlink -f "$path")" 2>/dev/null || dpkg -S "$path" 2>/dev/null || true)"
		pkg="${pkg%%:*}"
		[[ " $deps " == *" $pkg "* ]] || missing+=("$lib($pkg)")
	done < <(readelf -d "$STAGE/usr/local/bin/tokenmeter" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
	((${#missing[@]} == 0)) || { echo "not in RUNTIME_PACKAGES or their dependencies: ${missing[*]}"; return 1; }
	echo "runtime packages: $pkgs"
}
if command -v dpkg >/dev/null && command -v readelf >/dev/null; then
	check "binary's NEEDED libraries come from the images' RUNTIME_PACKAGES" runtime_libs_covered
fi

# ---------------------------------------------------------------- 3. rendering

ROOT="$WORK/root"
# render NAME SCRIPT [VAR=VALUE...]: runs a vm script into $ROOT, output in $WORK/NAME.out
render() {
	local name="$1" script="$2"
	shift 2
	if env -u SSH_CONNECTION "$@" DEPLOY_ROOT="$ROOT" "deploy/$script" >"$WORK/$name.out" 2>&1; then
		((VERBOSE == 0)) || cat "$WORK/$name.out"
		return 0
	fi
	cat "$WORK/$name.out"
	return 1
}
# step lines that say changed (not the summary line "vmN-....sh: nothing changed (...)")
changed_lines() { grep -E '[[:space:]]changed( \(|$)' "$1" | grep -vE '^[a-z0-9-]+\.sh: ' || true; }
no_changes() {
	local c
	c="$(changed_lines "$1")"
	[[ -z "$c" ]] || { printf 'changed on the second run:\n%s\n' "$c"; return 1; }
	grep -q 'nothing changed' "$1"
}

# The summary's counts are the step lines' counts (a step run in a subshell would be lost).
counts_match() {
	local c u s line steps
	steps="$(sed '$d' "$1")"
	c="$(grep -cE '[[:space:]]changed( \(|$)' <<<"$steps" || true)"
	u="$(grep -cE '[[:space:]]unchanged( \(|$)' <<<"$steps" || true)"
	s="$(grep -cE '[[:space:]]skipped( \(|$)' <<<"$steps" || true)"
	line="$(tail -n 1 "$1")"
	[[ "$line" == *"nothing changed ($u steps unchanged, $s skipped)" && "$c" == 0 ||
		"$line" == *": $c steps changed, $u unchanged, $s skipped" ]] ||
		{ echo "summary '$line' but $c changed, $u unchanged, $s skipped lines"; return 1; }
}
for vm in vm1-kafka vm2-mongodb vm3-processor vm4-producers; do
	check "$vm.sh renders into DEPLOY_ROOT" render "$vm.1" "$vm.sh"
	check "$vm.sh summary counts match its step lines" counts_match "$WORK/$vm.1.out"
	check "$vm.sh second run: every step unchanged" render "$vm.2" "$vm.sh"
	check "$vm.sh second run: summary counts match too" counts_match "$WORK/$vm.2.out"
	check "$vm.sh second run says 'nothing changed'" no_changes "$WORK/$vm.2.out"
done
check "vm3-processor.sh RUNTIME=container renders" \
	render vm3c.1 vm3-processor.sh RUNTIME=container
check "vm3-processor.sh RUNTIME=container second run unchanged" \
	bash -c 'env -u SSH_CONNECTION RUNTIME=container DEPLOY_ROOT="$1" deploy/vm3-processor.sh >"$2" 2>&1' _ "$ROOT" "$WORK/vm3c.2.out"
check "  ... says 'nothing changed'" no_changes "$WORK/vm3c.2.out"

# A changed setting rewrites exactly the file that holds it.
one_change() {
	local c
	c="$(changed_lines "$1")"
	[[ "$(wc -l <<<"$c")" == 1 && "$c" == *"$2"* ]] || { printf 'changed lines:\n%s\n' "$c"; return 1; }
}
check "vm3: PRICE_PER_HOUR_USD=7.5 changes processor.env only" \
	bash -c 'env -u SSH_CONNECTION PRICE_PER_HOUR_USD=7.5 DEPLOY_ROOT="$1" deploy/vm3-processor.sh >"$2" 2>&1' _ "$ROOT" "$WORK/vm3.3.out"
check "  ... one changed line, /etc/tokenmeter/processor.env" one_change "$WORK/vm3.3.out" /etc/tokenmeter/processor.env
chmod 0600 "$ROOT/etc/kafka/server.properties"
env -u SSH_CONNECTION DEPLOY_ROOT="$ROOT" deploy/vm1-kafka.sh >"$WORK/vm1.4.out" 2>&1 || true
check "vm1: a file with the wrong mode (0600) is reported changed and set back to 0644" \
	bash -c 'one=$(grep -E "[[:space:]]changed" "$1"); [[ "$one" == *server.properties* ]] && [[ "$(stat -c %a "$2")" == 644 ]]' _ \
	"$WORK/vm1.4.out" "$ROOT/etc/kafka/server.properties"
# Bad settings stop before anything is written.
check "vm1: KAFKA_VERSION=3.6.0 is refused" \
	bash -c '! env -u SSH_CONNECTION KAFKA_VERSION=3.6.0 DEPLOY_ROOT="$1" deploy/vm1-kafka.sh' _ "$WORK/other"
check "vm3: RUNTIME=podman is refused" \
	bash -c '! env -u SSH_CONNECTION RUNTIME=podman DEPLOY_ROOT="$1" deploy/vm3-processor.sh' _ "$WORK/other"
check "vm3: without a MongoDB password it stops and says where to get one" \
	bash -c 'out=$(env -u SSH_CONNECTION DEPLOY_ROOT="$1" deploy/vm3-processor.sh 2>&1); [[ $? -ne 0 && "$out" == *mongodb-tokenmeter.secret* ]]' _ "$WORK/empty"

# The rendered configuration (DESIGN 1).
R="$ROOT"
check "sshd drop-in: key-only, no root password" bash -c '
	f="$1/etc/ssh/sshd_config.d/10-tokenmeter.conf"
	for l in "PasswordAuthentication no" "KbdInteractiveAuthentication no" \
		"PermitRootLogin prohibit-password" "PubkeyAuthentication yes" "AuthenticationMethods publickey"; do
		grep -qxF "$l" "$f" || { echo "missing: $l"; exit 1; }
	done' _ "$R"
check "zoo.cfg: clientPortAddress=127.0.0.1, no AdminServer" bash -c '
	grep -qx "clientPortAddress=127.0.0.1" "$1" && grep -qx "admin.enableServer=false" "$1" &&
	grep -qx "clientPort=2181" "$1"' _ "$R/etc/zookeeper/zoo.cfg"
check "server.properties: listener and advertised 10.0.1.10:9092, ZooKeeper on loopback" bash -c '
	grep -qx "listeners=PLAINTEXT://10.0.1.10:9092" "$1" &&
	grep -qx "advertised.listeners=PLAINTEXT://10.0.1.10:9092" "$1" &&
	grep -qx "zookeeper.connect=127.0.0.1:2181" "$1" && grep -qx "num.partitions=12" "$1" &&
	grep -qx "auto.create.topics.enable=false" "$1"' _ "$R/etc/kafka/server.properties"
check "kafka.service: user kafka, Kafka 3.7.0 jars, Requires zookeeper" bash -c '
	grep -qx "User=kafka" "$1" && grep -qF -- "-cp /opt/kafka-3.7.0/libs/* kafka.Kafka /etc/kafka/server.properties" "$1" &&
	grep -qx "Requires=zookeeper.service" "$1" && grep -qx "NoNewPrivileges=yes" "$1"' _ "$R/etc/systemd/system/kafka.service"
check "zookeeper.service: user zookeeper, ZooKeeper 3.9.2 jars" bash -c '
	grep -qx "User=zookeeper" "$1" &&
	grep -qF -- "-cp /opt/zookeeper-3.9.2/libs/* org.apache.zookeeper.server.quorum.QuorumPeerMain" "$1"' _ "$R/etc/systemd/system/zookeeper.service"
check "mongod.conf: bindIp 127.0.0.1,10.0.1.11 and authorization enabled" bash -c '
	grep -qx "  bindIp: 127.0.0.1,10.0.1.11" "$1" && grep -qx "  authorization: enabled" "$1"' _ "$R/etc/mongod.conf"
check "MongoDB apt source: repo.mongodb.org jammy 7.0, signed-by" has_line \
	"$R/etc/apt/sources.list.d/mongodb-org-7.0.list" \
	"deb [ arch=amd64,arm64 signed-by=/usr/share/keyrings/mongodb-server-7.0.gpg ] https://repo.mongodb.org/apt/ubuntu jammy/mongodb-org/7.0 multiverse"
check "secrets: generated once, 0600, 48 hex digits" bash -c '
	for f in "$1"/etc/tokenmeter/mongodb-admin.secret "$1"/etc/tokenmeter/mongodb-tokenmeter.secret; do
		[[ "$(stat -c %a "$f")" == 600 ]] && grep -qxE "[0-9a-f]{48}" "$f" || { echo "$f"; exit 1; }
	done' _ "$R"
check "processor.env: 0600, addresses of DESIGN 1, the password from vm2's secret" bash -c '
	f="$1/etc/tokenmeter/processor.env"; pw="$(cat "$1/etc/tokenmeter/mongodb-tokenmeter.secret")"
	[[ "$(stat -c %a "$f")" == 600 ]] &&
	grep -qx "KAFKA_BOOTSTRAP=10.0.1.10:9092" "$f" && grep -qx "HTTP_LISTEN=10.0.1.12:8080" "$f" &&
	grep -qx "MONGODB_URI=mongodb://tokenmeter:$pw@10.0.1.11:27017/tokenmeter?authSource=tokenmeter" "$f" &&
	grep -qx "GPU_SEED=/etc/tokenmeter/gpu_seed.json" "$f"' _ "$R"
check "processor.env reads the same in a shell (set -a; . file)" bash -c '
	f="$1/etc/tokenmeter/processor.env"
	want="$(sed -n "s/^MONGODB_URI=//p" "$f")"
	got="$(env -i bash -c "set -a; . \"$f\"; printf %s \"\$MONGODB_URI\"")"
	[[ -n "$want" && "$got" == "$want" ]]' _ "$R"
check "processor env with an odd password: percent-encoded in MONGODB_URI" bash -c '
	r="$2/odd"; out="$(env -u SSH_CONNECTION TOKENMETER_DB_PASSWORD="p@ss:w/rd%1" DEPLOY_ROOT="$r" "$1/deploy/vm3-processor.sh" 2>&1)" || { echo "$out"; exit 1; }
	grep -qx "MONGODB_URI=mongodb://tokenmeter:p%40ss%3Aw%2Frd%251@10.0.1.11:27017/tokenmeter?authSource=tokenmeter" "$r/etc/tokenmeter/processor.env" &&
	[[ "$(cat "$r/etc/tokenmeter/mongodb-tokenmeter.secret")" == "p@ss:w/rd%1" ]]' _ "$REPO" "$WORK"
check "tokenmeter-processor.service: non-root, env files, Restart=on-failure, hardening" bash -c '
	f="$1/etc/systemd/system/tokenmeter-processor.service"
	for l in "User=tokenmeter" "EnvironmentFile=/etc/tokenmeter/processor.env" \
		"EnvironmentFile=-/etc/tokenmeter/processor.local.env" "ExecStart=/usr/local/bin/tokenmeter process" \
		"Restart=on-failure" "NoNewPrivileges=yes" "ProtectSystem=strict" "CapabilityBoundingSet=" \
		"SystemCallFilter=@system-service"; do
		grep -qxF "$l" "$f" || { echo "missing: $l"; exit 1; }
	done' _ "$R"
check "tokenmeter-producer@.service: per-instance env file, replay not restarted after it ran" bash -c '
	f="$1/etc/systemd/system/tokenmeter-producer@.service"
	grep -qxF "EnvironmentFile=/etc/tokenmeter/producer-%i.env" "$f" &&
	grep -qxF "ExecStart=/usr/local/bin/tokenmeter produce --no-progress \$PRODUCER_ARGS \${TRACE_FILE}" "$f" &&
	grep -qxF "RestartPreventExitStatus=1 2 SIGTERM SIGINT SIGKILL SIGABRT SIGSEGV" "$f" &&
	! grep -q "^\[Install\]" "$f"' _ "$R"
check "producer instances gpu-node-1 and gpu-node-2 written once" bash -c '
	grep -qx "PRODUCER_ARGS=--host gpu-node-1 --gpus 8 --model llama-3-70b --speed 10" "$1/etc/tokenmeter/producer-gpu-node-1.env" &&
	grep -qx "TRACE_FILE=/var/lib/tokenmeter/traces/AzureLLMInferenceTrace_code.csv" "$1/etc/tokenmeter/producer-gpu-node-2.env"' _ "$R"

# UFW commands as scripts/firewall-gen.sh renders them from deploy/firewall.tsv.
ufw_has() {
	local f="$ROOT/var/lib/tokenmeter-deploy/ufw-$1.rules" want
	shift
	[[ -f "$f" ]] || { echo "no $f"; return 1; }
	for want in "$@"; do
		grep -qE -- "$want" "$f" || { echo "missing /$want/ in:"; cat "$f"; return 1; }
	done
}
allow() { printf '^ufw allow from %s to any port %s proto tcp' "${1//./\\.}" "$2"; }
check "ufw vm1: 22 admin, 9092 from vm3 and vm4, nothing else" ufw_has vm1 \
	"^ufw default deny incoming$" "$(allow 10.0.1.100 22)" "$(allow 10.0.1.12 9092)" "$(allow 10.0.1.13 9092)"
check "ufw vm2: 22 admin, 27017 from vm3" ufw_has vm2 "$(allow 10.0.1.100 22)" "$(allow 10.0.1.12 27017)"
check "ufw vm3: 22 and 8080 from admin" ufw_has vm3 "$(allow 10.0.1.100 22)" "$(allow 10.0.1.100 8080)"
check "ufw vm4: 22 from admin only" bash -c '
	f="$1/var/lib/tokenmeter-deploy/ufw-vm4.rules"
	[[ "$(grep -c "^ufw allow" "$f")" == 1 ]] && grep -q "^ufw allow from 10.0.1.100 to any port 22 " "$f"' _ "$ROOT"
check "ufw: the allow-row counts match the rule table" bash -c '
	for h in vm1 vm2 vm3 vm4; do
		want=$(awk -F"\t" -v h="$h" "\$1 == h && \$4 != \"local\"" "$1/deploy/firewall.tsv" | wc -l)
		got=$(grep -c "^ufw allow" "$2/var/lib/tokenmeter-deploy/ufw-$h.rules")
		[[ "$want" == "$got" ]] || { echo "$h: table $want, ufw $got"; exit 1; }
	done' _ "$REPO" "$ROOT"
check "ufw: ADMIN_ADDR=203.0.113.7/32 reaches the generated rules" bash -c '
	r="$2/adm"; env -u SSH_CONNECTION ADMIN_ADDR=203.0.113.7/32 DEPLOY_ROOT="$r" "$1/deploy/vm4-producers.sh" >/dev/null 2>&1
	grep -q "^ufw allow from 203.0.113.7/32 to any port 22 " "$r/var/lib/tokenmeter-deploy/ufw-vm4.rules"' _ "$REPO" "$WORK"

# ---------------------------------------------------------------- 4. units and tools

verify_unit() {
	local unit="$1" tmp="$WORK/units"
	mkdir -p "$tmp"
	# the binaries the units name live in DEPLOY_ROOT here; java is the machine's own
	sed -e "s#/usr/local/bin/tokenmeter#$ROOT/usr/local/bin/tokenmeter#" \
		-e 's#^\(ExecStart=\)/usr/lib/jvm/java-17-openjdk-[a-z0-9]*/bin/java#\1/bin/true#' \
		"$ROOT/etc/systemd/system/$unit" >"$tmp/$unit"
	systemd-analyze verify "$tmp/${2:-$unit}"
}
if command -v systemd-analyze >/dev/null; then
	check "systemd-analyze verify zookeeper.service" verify_unit zookeeper.service
	check "systemd-analyze verify kafka.service" verify_unit kafka.service
	check "systemd-analyze verify tokenmeter-processor.service" verify_unit tokenmeter-processor.service
	check "systemd-analyze verify tokenmeter-producer@gpu-node-1.service" \
		verify_unit tokenmeter-producer@.service tokenmeter-producer@gpu-node-1.service
fi
check "rendered kafka-run-class, kafka-topics, kafka-consumer-groups pass shellcheck" \
	shellcheck -s sh "$ROOT/usr/local/bin/kafka-run-class" "$ROOT/usr/local/bin/kafka-topics" \
	"$ROOT/usr/local/bin/kafka-consumer-groups"

# ---------------------------------------------------------------- 5. helpers

helpers() (
	# shellcheck source=common.sh
	source "$HERE/common.sh"
	[[ "$(tm_urlencode 'p@ss:w/rd%1 ~x')" == 'p%40ss%3Aw%2Frd%251%20~x' ]] || { echo urlencode; return 1; }
	if ! tm_ip_in 10.0.1.100 10.0.1.100 || ! tm_ip_in 10.0.1.100 10.0.1.0/24 ||
		! tm_ip_in 1.2.3.4 0.0.0.0/0 || tm_ip_in 10.0.2.1 10.0.1.0/24 || tm_ip_in 10.0.1.101 10.0.1.100; then
		echo ip_in
		return 1
	fi
	(tm_check_env_value X 'a b' 2>/dev/null) && { echo "blank accepted"; return 1; }
	(tm_check_env_value X 'a$b' 2>/dev/null) && { echo "dollar accepted"; return 1; }
	(tm_check_env_value X "a'b" 2>/dev/null) && { echo "quote accepted"; return 1; }
	tm_check_env_value X 'mongodb://u:p%40@h:1/d?authSource=d'
)
check "helpers: tm_urlencode, tm_ip_in, tm_check_env_value" helpers
guard() (
	# shellcheck source=common.sh
	source "$HERE/common.sh"
	local rules="ufw allow from 10.0.1.0/24 to any port 22 proto tcp comment 'x'"
	export TM_GUARD_NO_SS=1
	(SSH_CONNECTION="10.0.1.7 5555 10.0.1.10 22" tm_ufw_guard "$rules") || { echo "allowed client refused"; return 1; }
	(SSH_CONNECTION="192.0.2.1 5555 10.0.1.10 22" tm_ufw_guard "$rules" 2>/dev/null) && { echo "foreign client accepted"; return 1; }
	tm_ufw_allows_ssh "$rules" 10.0.1.200 || { echo "10.0.1.200 not in 10.0.1.0/24"; return 1; }
	! tm_ufw_allows_ssh "ufw allow from 10.0.1.0/24 to any port 2222 proto tcp" 10.0.1.7 || { echo "port 2222 taken for 22"; return 1; }
	return 0
)
check "UFW guard: refuses a firewall that would cut off the SSH session running it" guard

# ---------------------------------------------------------------- 6. healthcheck.sh

if command -v python3 >/dev/null; then
	cat >"$WORK/tm_http_test.py" <<-'EOF'
		import http.server, sys
		class H(http.server.BaseHTTPRequestHandler):
		    def do_GET(self):
		        code = 200 if open(sys.argv[1]).read().strip() == "ok" else 503
		        body = b"ok\n" if code == 200 else b"degraded: mongodb: down\n"
		        self.send_response(code if self.path == "/health" else 404)
		        self.end_headers()
		        self.wfile.write(body)
		    def log_message(self, *a):
		        pass
		s = http.server.HTTPServer(("127.0.0.1", 0), H)
		print(s.server_address[1], flush=True)
		s.serve_forever()
	EOF
	echo ok >"$WORK/state"
	coproc HTTP { exec python3 "$WORK/tm_http_test.py" "$WORK/state" 2>/dev/null; }
	read -r -t 10 port <&"${HTTP[0]}" || port=""
	if [[ -n "$port" ]]; then
		check "healthcheck.sh: 200 is healthy" env HTTP_LISTEN="127.0.0.1:$port" deploy/docker/healthcheck.sh
		echo down >"$WORK/state"
		check "healthcheck.sh: 503 is unhealthy" bash -c '! env HTTP_LISTEN="$1" deploy/docker/healthcheck.sh' _ "127.0.0.1:$port"
		check "healthcheck.sh: 0.0.0.0 means loopback" bash -c '! env HTTP_LISTEN="0.0.0.0:$1" deploy/docker/healthcheck.sh | grep -q "cannot connect"' _ "$port"
		pid="${HTTP_PID:-}"
		if [[ -n "$pid" ]]; then
			kill "$pid" 2>/dev/null || true
			wait "$pid" 2>/dev/null || true
		fi
		HTTP_PID=""
		check "healthcheck.sh: nothing listening is unhealthy" bash -c '! env HTTP_LISTEN="$1" deploy/docker/healthcheck.sh' _ "127.0.0.1:$port"
	else
		bad "healthcheck.sh: the test HTTP server did not start"
	fi
fi

# ---------------------------------------------------------------- 7. optional linters

if command -v hadolint >/dev/null; then
	check "hadolint Dockerfile.processor Dockerfile.producer" \
		hadolint deploy/docker/Dockerfile.processor deploy/docker/Dockerfile.producer
else
	printf 'skip  hadolint not on PATH\n'
fi
compose_config() {
	local r="$WORK/compose"
	mkdir -p "$r"
	# compose reads the env files at their absolute paths: point a copy at rendered ones
	sed -e "s#/etc/tokenmeter/#$ROOT/etc/tokenmeter/#g" -e "s#context: ../..#context: $REPO#" \
		deploy/docker/compose.yaml >"$r/compose.yaml"
	"$@" -f "$r/compose.yaml" --profile producers config --quiet
}
if docker compose version >/dev/null 2>&1; then
	check "docker compose config (compose.yaml)" compose_config docker compose
elif command -v docker-compose >/dev/null; then
	check "docker-compose config (compose.yaml)" compose_config docker-compose
else
	printf 'skip  docker compose not on PATH\n'
fi

printf '%d passed, %d failed\n' "$PASS" "$FAIL"
((FAIL == 0))
