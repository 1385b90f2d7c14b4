# shellcheck shell=bash disable=SC2034  # variables are used by the scripts that source this file
# Shared helpers of deploy/vm1-kafka.sh ... deploy/vm4-producers.sh (sourced, not executed).
#
# Every step prints one line, "<step>  changed|unchanged|skipped ...", and the script ends with
# a summary; a second run of a script on the same machine prints only "unchanged" lines.
#
# Addresses (DESIGN 1; override for another subnet, the same names on every VM):
#   KAFKA_ADDR (10.0.1.10)  MONGODB_ADDR (10.0.1.11)  PROCESSOR_ADDR (10.0.1.12)
#   PRODUCERS_ADDR (10.0.1.13)  ADMIN_ADDR (10.0.1.100: where the operator's SSH and HTTP
#   come from; a CIDR such as 203.0.113.0/28 is fine)
# Other settings:
#   DEPLOY_ROOT    render every file under this directory instead of / and skip each step
#                  that would change the machine (packages, users, services, firewall, sshd
#                  reload, downloads); how deploy/selftest.sh tests the scripts off Ubuntu
#   TM_SKIP_UFW=1  leave the host firewall alone (e.g. while the cloud security groups are
#                  being set up); TM_SKIP_SSHD=1 the same for the sshd drop-in
#   TM_FORCE=1     skip the lock-out guards (authorized_keys present, SSH client allowed)

TM_DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TM_REPO="$(cd "$TM_DEPLOY_DIR/.." && pwd)"
DEPLOY_ROOT="${DEPLOY_ROOT:-}"
DEPLOY_ROOT="${DEPLOY_ROOT%/}"

KAFKA_ADDR="${KAFKA_ADDR:-10.0.1.10}"
MONGODB_ADDR="${MONGODB_ADDR:-10.0.1.11}"
PROCESSOR_ADDR="${PROCESSOR_ADDR:-10.0.1.12}"
PRODUCERS_ADDR="${PRODUCERS_ADDR:-10.0.1.13}"
ADMIN_ADDR="${ADMIN_ADDR:-10.0.1.100}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
MONGODB_PORT="${MONGODB_PORT:-27017}"
HTTP_PORT="${HTTP_PORT:-8080}"
export KAFKA_ADDR MONGODB_ADDR PROCESSOR_ADDR PRODUCERS_ADDR ADMIN_ADDR

# Where the scripts keep what they need to remember between runs (applied firewall rules).
TM_STATE_DIR=/var/lib/tokenmeter-deploy

TM_N_CHANGED=0
TM_N_UNCHANGED=0
TM_N_SKIPPED=0
TM_CHANGED=0         # 1 when the last tm_put_file/tm_ensure_* step changed something
TM_DAEMON_RELOAD=0   # 1 once a unit file changed
TM_APT_UPDATED=0
TM_APT_STALE=0       # 1 once an apt source changed: the next install runs apt-get update

# ---------------------------------------------------------------- messages

tm_die() {
	printf '%s: error: %s\n' "${0##*/}" "$*" >&2
	exit 1
}

tm_warn() {
	printf '%s: warning: %s\n' "${0##*/}" "$*" >&2
}

# tm_report STEP STATUS [DETAIL]: one line per step; STATUS changed|unchanged|skipped.
tm_report() {
	local step="$1" status="$2" detail="${3:-}"
	case "$status" in
	changed) TM_N_CHANGED=$((TM_N_CHANGED + 1)) ;;
	unchanged) TM_N_UNCHANGED=$((TM_N_UNCHANGED + 1)) ;;
	skipped) TM_N_SKIPPED=$((TM_N_SKIPPED + 1)) ;;
	*) tm_die "tm_report: bad status '$status'" ;;
	esac
	printf '%-52s %s%s\n' "$step" "$status" "${detail:+ ($detail)}"
}

tm_summary() {
	if ((TM_N_CHANGED == 0)); then
		printf '%s: nothing changed (%d steps unchanged, %d skipped)\n' \
			"${0##*/}" "$TM_N_UNCHANGED" "$TM_N_SKIPPED"
	else
		printf '%s: %d steps changed, %d unchanged, %d skipped\n' \
			"${0##*/}" "$TM_N_CHANGED" "$TM_N_UNCHANGED" "$TM_N_SKIPPED"
	fi
}

# True on a real run, false when rendering into DEPLOY_ROOT.
tm_live() { [[ -z "$DEPLOY_ROOT" ]]; }

# ---------------------------------------------------------------- preflight

# tm_preflight: root, Ubuntu 22.04 (warning otherwise), one run at a time.
tm_preflight() {
	if ! tm_live; then
		printf '%s: rendering into DEPLOY_ROOT=%s (nothing on this machine is changed)\n' \
			"${0##*/}" "$DEPLOY_ROOT"
		mkdir -p "$DEPLOY_ROOT"
		return 0
	fi
	[[ $EUID -eq 0 ]] || tm_die "run as root (sudo $0)"
	local id="" ver=""
	if [[ -r /etc/os-release ]]; then
		# shellcheck disable=SC1091  # the machine's own file
		id="$(. /etc/os-release && printf '%s' "${ID:-}")"
		# shellcheck disable=SC1091
		ver="$(. /etc/os-release && printf '%s' "${VERSION_ID:-}")"
	fi
	[[ "$id" == ubuntu && "$ver" == 22.04 ]] ||
		tm_warn "written for Ubuntu 22.04, this is ${id:-?} ${ver:-?}: going on"
	mkdir -p /run/lock
	exec 8>/run/lock/tokenmeter-deploy.lock
	flock -w 600 8 || tm_die "another deploy script holds /run/lock/tokenmeter-deploy.lock"
}

# tm_require_addr ADDR WHAT: the address must be configured on this machine (a service that
# binds it would fail otherwise).
tm_require_addr() {
	local addr="$1" what="$2"
	tm_live || return 0
	ip -o -4 addr show | awk '{print $4}' | cut -d/ -f1 | grep -qxF "$addr" ||
		tm_die "$addr ($what) is not an address of this machine (ip -4 addr): run this script on the right VM, or set the address variable (see docs/deploy.md)"
}

# ---------------------------------------------------------------- files

# tm_octal MODE: the mode as a number (0644 and 644 are equal).
tm_octal() { printf '%d' "$((8#$1))"; }

# tm_put_file PATH MODE OWNER:GROUP < CONTENT
# Writes PATH (under DEPLOY_ROOT) when its content, mode or owner differ; atomic (temporary
# file in the same directory, then rename). Sets TM_CHANGED and reports the step.
tm_put_file() {
	local path="$1" mode="$2" owner="$3" real dir new
	real="$DEPLOY_ROOT$path"
	dir="$(dirname "$real")"
	[[ -d "$dir" ]] || mkdir -p "$dir"
	new="$(mktemp "$dir/.tm-new.XXXXXX")"
	cat >"$new"
	if [[ -f "$real" && ! -L "$real" ]] && cmp -s "$new" "$real" &&
		[[ "$(tm_octal "$(stat -c %a "$real")")" == "$(tm_octal "$mode")" ]] &&
		{ ! tm_live || [[ "$(stat -c %U:%G "$real")" == "$owner" ]]; }; then
		rm -f "$new"
		TM_CHANGED=0
		tm_report "file $path" unchanged
		return 0
	fi
	chmod "$mode" "$new"
	if tm_live; then chown "$owner" "$new"; fi
	mv -f "$new" "$real"
	TM_CHANGED=1
	tm_report "file $path" changed
}

# tm_put_file_once PATH MODE OWNER:GROUP < CONTENT: writes PATH only when it does not exist
# (files the operator edits afterwards: gpu_seed.json, producer instances).
tm_put_file_once() {
	local path="$1"
	if [[ -e "$DEPLOY_ROOT$path" ]]; then
		cat >/dev/null
		TM_CHANGED=0
		tm_report "file $path" unchanged "exists; yours to edit, never overwritten"
		return 0
	fi
	tm_put_file "$@"
}

# tm_put_unit PATH < CONTENT: a systemd unit file; remembers that systemd must reload.
tm_put_unit() {
	tm_put_file "$1" 0644 root:root
	if ((TM_CHANGED)); then TM_DAEMON_RELOAD=1; fi
	return 0
}

# tm_ensure_dir PATH MODE OWNER:GROUP
tm_ensure_dir() {
	local path="$1" mode="$2" owner="$3" real what=()
	real="$DEPLOY_ROOT$path"
	if [[ ! -d "$real" ]]; then
		mkdir -p "$real"
		what+=(created)
	fi
	if [[ "$(tm_octal "$(stat -c %a "$real")")" != "$(tm_octal "$mode")" ]]; then
		chmod "$mode" "$real"
		what+=("mode $mode")
	fi
	if tm_live && [[ "$(stat -c %U:%G "$real")" != "$owner" ]]; then
		chown "$owner" "$real"
		what+=("owner $owner")
	fi
	if ((${#what[@]})); then
		TM_CHANGED=1
		tm_report "dir $path" changed "${what[*]}"
	else
		TM_CHANGED=0
		tm_report "dir $path" unchanged
	fi
}

# ---------------------------------------------------------------- values

# tm_check_env_value NAME VALUE: the value must be safe in a systemd EnvironmentFile, a shell
# `set -a; . file` and a Docker --env-file alike (written unquoted): no blanks, quotes,
# backslashes, $ or backquotes.
tm_check_env_value() {
	local name="$1" value="$2"
	[[ -n "$value" ]] || tm_die "$name is empty"
	if [[ "$value" =~ [[:space:]\'\"\\\$\`] ]]; then
		tm_die "$name contains a blank, a quote, a backslash, \$ or a backquote: not allowed in env files"
	fi
}

# tm_urlencode STRING: percent-encodes all but RFC 3986's unreserved characters.
tm_urlencode() {
	local LC_ALL=C s="$1" out="" c i
	for ((i = 0; i < ${#s}; i++)); do
		c="${s:i:1}"
		case "$c" in
		[A-Za-z0-9._~-]) out+="$c" ;;
		*) printf -v c '%%%02X' "'$c" && out+="$c" ;;
		esac
	done
	printf '%s' "$out"
}

tm_gen_password() {
	od -An -N24 -tx1 /dev/urandom | tr -d ' \n'
}

# tm_secret PATH VALUE: PATH (0600 root) holds VALUE; with VALUE empty, keeps what PATH holds
# or generates a password once (48 hex digits).
tm_secret() {
	local path="$1" value="$2" real="$DEPLOY_ROOT$1"
	if [[ -z "$value" ]]; then
		if [[ -s "$real" ]]; then
			value="$(head -n 1 "$real")"
		else
			value="$(tm_gen_password)"
		fi
	fi
	[[ "$value" != *$'\n'* ]] || tm_die "a secret for $path spans lines"
	# a here-string, not a pipe: tm_put_file must run in this shell (TM_CHANGED, the counts)
	tm_put_file "$path" 0600 root:root <<<"$value"
}

# tm_read_secret PATH: prints the first line of PATH (under DEPLOY_ROOT).
tm_read_secret() {
	[[ -s "$DEPLOY_ROOT$1" ]] || return 1
	head -n 1 "$DEPLOY_ROOT$1"
}

# ---------------------------------------------------------------- packages, users

tm_pkg_installed() {
	[[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

tm_apt() {
	DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get -q -y \
		-o DPkg::Lock::Timeout=600 \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
}

# tm_ensure_packages PKG...: installs the missing ones (apt-get update first, once per run).
tm_ensure_packages() {
	local p missing=() log
	if ! tm_live; then
		tm_report "apt $*" skipped "DEPLOY_ROOT"
		return 0
	fi
	for p in "$@"; do
		tm_pkg_installed "$p" || missing+=("$p")
	done
	if ((${#missing[@]} == 0)); then
		TM_CHANGED=0
		tm_report "apt $*" unchanged
		return 0
	fi
	log="$(mktemp)"
	if ((TM_APT_UPDATED == 0 || TM_APT_STALE == 1)); then
		tm_apt update >"$log" 2>&1 || {
			tail -n 30 "$log" >&2
			tm_die "apt-get update failed"
		}
		TM_APT_UPDATED=1
		TM_APT_STALE=0
	fi
	tm_apt install --no-install-recommends "${missing[@]}" >>"$log" 2>&1 || {
		tail -n 30 "$log" >&2
		tm_die "apt-get install ${missing[*]} failed"
	}
	rm -f "$log"
	for p in "${missing[@]}"; do
		tm_pkg_installed "$p" || tm_die "package $p is still not installed"
	done
	TM_CHANGED=1
	tm_report "apt $*" changed "installed ${missing[*]}"
}

# tm_ensure_user NAME HOME: a system user and group of the same name, no login shell.
tm_ensure_user() {
	local name="$1" home="$2"
	if ! tm_live; then
		tm_report "user $name" skipped "DEPLOY_ROOT"
		return 0
	fi
	if getent passwd "$name" >/dev/null; then
		TM_CHANGED=0
		tm_report "user $name" unchanged
		return 0
	fi
	useradd --system --user-group --home-dir "$home" --no-create-home \
		--shell /usr/sbin/nologin --comment "tokenmeter deploy: $name" "$name"
	TM_CHANGED=1
	tm_report "user $name" changed "created"
}

# ---------------------------------------------------------------- systemd

tm_systemd_reload() {
	if ! tm_live; then
		tm_report "systemctl daemon-reload" skipped "DEPLOY_ROOT"
		return 0
	fi
	if ((TM_DAEMON_RELOAD)); then
		systemctl daemon-reload
		TM_DAEMON_RELOAD=0
		tm_report "systemctl daemon-reload" changed
	else
		tm_report "systemctl daemon-reload" unchanged "no unit changed"
	fi
}

# tm_ensure_service NAME RESTART: enabled and active; restarted when RESTART is 1 (its
# configuration, unit or binary changed). Fails with the journal when it does not stay up.
tm_ensure_service() {
	local name="$1" restart="$2" what=()
	if ! tm_live; then
		tm_report "service $name" skipped "DEPLOY_ROOT"
		return 0
	fi
	if ! systemctl is-enabled --quiet "$name" 2>/dev/null; then
		systemctl enable --quiet "$name"
		what+=(enabled)
	fi
	if ! systemctl is-active --quiet "$name"; then
		systemctl start "$name" || true
		what+=(started)
	elif [[ "$restart" == 1 ]]; then
		systemctl restart "$name" || true
		what+=(restarted)
	fi
	if ((${#what[@]})); then
		sleep 2
		if ! systemctl is-active --quiet "$name"; then
			journalctl -u "$name" -n 40 --no-pager >&2 || true
			tm_die "$name is not active after ${what[*]} (journal above)"
		fi
		TM_CHANGED=1
		tm_report "service $name" changed "${what[*]}"
	else
		TM_CHANGED=0
		tm_report "service $name" unchanged "enabled, active"
	fi
}

# tm_verify_units FILE...: systemd-analyze verify (syntax, executables) on a real run.
tm_verify_units() {
	local f out
	tm_live || return 0
	for f in "$@"; do
		if ! out="$(systemd-analyze verify "$f" 2>&1)"; then
			printf '%s\n' "$out" >&2
			tm_die "systemd-analyze verify $f failed"
		fi
	done
}

# tm_wait_until SECONDS WHAT CMD...: runs CMD every second until it succeeds.
tm_wait_until() {
	local secs="$1" deadline
	shift 2
	deadline=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		((SECONDS < deadline)) || return 1
		sleep 1
	done
	return 0
}

# tm_tcp_open HOST PORT: a TCP connection succeeds within 3 s.
tm_tcp_open() {
	# shellcheck disable=SC2016  # expanded by the inner bash
	timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

# ---------------------------------------------------------------- sshd (key-only)

TM_SSHD_DROPIN=/etc/ssh/sshd_config.d/10-tokenmeter.conf

# The login the operator uses (sudo's caller, else root) must have a key, or key-only SSH
# would lock them out.
tm_check_authorized_keys() {
	local user="${SUDO_USER:-root}" home
	home="$(getent passwd "$user" | cut -d: -f6)"
	if [[ -s "$home/.ssh/authorized_keys" ]] || [[ "${TM_FORCE:-0}" == 1 ]]; then
		return 0
	fi
	tm_die "$user has no $home/.ssh/authorized_keys: key-only SSH would lock you out (add your key, or TM_FORCE=1)"
}

# tm_sshd_harden: the drop-in, `sshd -t` before the reload, then the effective values.
# sshd keeps the first value it reads and Ubuntu's sshd_config includes sshd_config.d/*.conf
# first, so 10-tokenmeter.conf wins over the cloud image's 50-cloudimg-settings.conf.
tm_sshd_harden() {
	if [[ "${TM_SKIP_SSHD:-0}" == 1 ]]; then
		tm_report "sshd key-only" skipped "TM_SKIP_SSHD=1"
		return 0
	fi
	local real="$DEPLOY_ROOT$TM_SSHD_DROPIN" old=""
	if tm_live; then
		command -v sshd >/dev/null || tm_die "sshd is not installed (openssh-server)"
		tm_check_authorized_keys
	fi
	[[ -f "$real" ]] && old="$(mktemp)" && cp -p "$real" "$old"
	tm_put_file "$TM_SSHD_DROPIN" 0644 root:root <<-'EOF'
		# Managed by tokenmeter deploy/common.sh (DESIGN 1: SSH key-only from the admin address;
		# the host firewall limits who reaches port 22). Edit the script, not this file.
		PubkeyAuthentication yes
		PasswordAuthentication no
		KbdInteractiveAuthentication no
		PermitEmptyPasswords no
		PermitRootLogin prohibit-password
		AuthenticationMethods publickey
		MaxAuthTries 3
		X11Forwarding no
	EOF
	local changed="$TM_CHANGED"
	if ! tm_live; then
		rm -f "${old:-/nonexistent}"
		tm_report "sshd -t and reload" skipped "DEPLOY_ROOT"
		return 0
	fi
	if ((changed)); then
		local err
		if ! err="$(sshd -t 2>&1)"; then
			if [[ -n "$old" ]]; then mv -f "$old" "$real"; else rm -f "$real"; fi
			printf '%s\n' "$err" >&2
			tm_die "sshd -t rejected the configuration; $TM_SSHD_DROPIN restored"
		fi
		systemctl reload ssh
		tm_report "sshd -t and reload" changed
	else
		tm_report "sshd -t and reload" unchanged
	fi
	rm -f "${old:-/nonexistent}"
	# effective values, whatever other files say
	local eff
	eff="$(sshd -T -C user=root,host=localhost,addr=127.0.0.1 2>/dev/null)" || tm_die "sshd -T failed"
	if ! grep -qx 'passwordauthentication no' <<<"$eff" ||
		! grep -qx 'kbdinteractiveauthentication no' <<<"$eff" ||
		! grep -qxE 'permitrootlogin (prohibit-password|without-password)' <<<"$eff"; then
		tm_die "sshd -T shows password logins still allowed: another file in /etc/ssh wins over $TM_SSHD_DROPIN"
	fi
}

# ---------------------------------------------------------------- UFW (from deploy/firewall.tsv)

# tm_ip_in IP NET: IPv4 address IP lies in NET (a.b.c.d or a.b.c.d/n).
tm_ip_in() {
	local ip="$1" net="${2%/*}" bits=32 a b
	[[ "$2" == */* ]] && bits="${2#*/}"
	a="$(tm_ip2int "$ip")" || return 1
	b="$(tm_ip2int "$net")" || return 1
	((bits == 0)) && return 0
	(((a >> (32 - bits)) == (b >> (32 - bits))))
}

tm_ip2int() {
	local IFS=. o1 o2 o3 o4
	[[ "$1" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || return 1
	read -r o1 o2 o3 o4 <<<"$1"
	printf '%d' "$(((o1 << 24) | (o2 << 16) | (o3 << 8) | o4))"
}

# tm_ufw_rules HOST: the UFW commands scripts/firewall-gen.sh prints for HOST (with the
# addresses of this environment).
tm_ufw_rules() {
	local gen="$TM_REPO/scripts/firewall-gen.sh"
	[[ -f "$gen" ]] || tm_die "scripts/firewall-gen.sh is missing (it renders deploy/firewall.tsv)"
	bash "$gen" --addr "vm1=$KAFKA_ADDR" --addr "vm2=$MONGODB_ADDR" --addr "vm3=$PROCESSOR_ADDR" \
		--addr "vm4=$PRODUCERS_ADDR" --addr "admin=$ADMIN_ADDR" ufw "$1"
}

# tm_ufw_apply HOST
# The generated commands are applied on a reset firewall when they differ from the last ones
# applied, or when UFW is inactive, or when its rules drifted (`ufw show added` differs from
# what was recorded after the last apply); otherwise nothing is touched.
tm_ufw_apply() {
	local host="$1" rules state="$TM_STATE_DIR/ufw-$1"
	if [[ "${TM_SKIP_UFW:-0}" == 1 ]]; then
		tm_report "ufw ($host, deploy/firewall.tsv)" skipped "TM_SKIP_UFW=1"
		return 0
	fi
	rules="$(tm_ufw_rules "$host")" || tm_die "scripts/firewall-gen.sh ufw $host failed"
	[[ -n "$rules" ]] || tm_die "scripts/firewall-gen.sh ufw $host printed nothing"
	if ! tm_live; then
		tm_put_file "$state.rules" 0644 root:root <<<"$rules"
		tm_report "ufw ($host, deploy/firewall.tsv)" skipped "DEPLOY_ROOT; commands in $state.rules"
		return 0
	fi
	command -v ufw >/dev/null || tm_ensure_packages ufw
	mkdir -p "$TM_STATE_DIR"
	if ufw status | grep -qx 'Status: active' &&
		[[ -f "$state.rules" && -f "$state.added" ]] &&
		[[ "$(cat "$state.rules")" == "$rules" ]] &&
		[[ "$(ufw show added 2>/dev/null)" == "$(cat "$state.added")" ]]; then
		tm_report "ufw ($host, deploy/firewall.tsv)" unchanged "active"
		return 0
	fi
	tm_ufw_guard "$rules"
	ufw --force reset >/dev/null
	# the generated text is this repository's own output: one ufw command per line
	if ! bash -euo pipefail -c "$rules" >/dev/null; then
		tm_die "applying the UFW commands of scripts/firewall-gen.sh ufw $host failed (UFW is reset and may be inactive)"
	fi
	ufw status | grep -qx 'Status: active' || ufw --force enable >/dev/null
	ufw status | grep -qx 'Status: active' || tm_die "ufw did not become active"
	printf '%s\n' "$rules" >"$state.rules"
	ufw show added >"$state.added" 2>/dev/null
	tm_report "ufw ($host, deploy/firewall.tsv)" changed "reset, $(grep -c '^ufw ' "$state.rules") commands, active"
}

# Refuses to enable a firewall that would cut off the SSH session running this script: every
# client of an established SSH connection (sudo drops SSH_CONNECTION, so ss is asked too) must
# be allowed on port 22 by one of the generated rules. (TM_GUARD_NO_SS=1, for
# deploy/selftest.sh: SSH_CONNECTION only.)
tm_ufw_guard() {
	local rules="$1" client clients=()
	[[ "${TM_FORCE:-0}" == 1 ]] && return 0
	[[ -n "${SSH_CONNECTION:-}" ]] && clients+=("${SSH_CONNECTION%% *}")
	if [[ -z "${TM_GUARD_NO_SS:-}" ]] && command -v ss >/dev/null; then
		while read -r client; do
			client="${client%:*}"
			client="${client#[}"
			client="${client%]}"
			client="${client#::ffff:}"
			[[ -n "$client" ]] && clients+=("$client")
		done < <(ss -Htn state established '( sport = :22 )' 2>/dev/null | awk '{print $4}')
	fi
	for client in "${clients[@]}"; do
		tm_ufw_allows_ssh "$rules" "$client" ||
			tm_die "an SSH session comes from $client, which no generated port-22 rule allows: enabling UFW would cut it off (set ADMIN_ADDR, or TM_FORCE=1)"
	done
	return 0
}

# tm_ufw_allows_ssh RULES IP: a generated "ufw allow ... port 22 ..." line covers IP.
tm_ufw_allows_ssh() {
	local line net
	while IFS= read -r line; do
		[[ "$line" == "ufw allow "*" port 22 "* ]] || continue
		while IFS= read -r net; do
			tm_ip_in "$2" "$net" && return 0
		done < <(grep -oE '[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+(/[0-9]+)?' <<<"$line")
	done <<<"$1"
	return 1
}

# ---------------------------------------------------------------- tokenmeter from source

TM_BUILD_PACKAGES=(build-essential pkg-config
	librdkafka-dev libmongoc-dev libbson-dev libmicrohttpd-dev libjansson-dev)
TM_PREFIX=/usr/local
TM_BINARY="$TM_PREFIX/bin/tokenmeter"
TM_SEED_EXAMPLE="$TM_PREFIX/share/tokenmeter/gpu_seed.json"

# tm_install_tokenmeter: builds this checkout with the Debian/Ubuntu -dev packages and
# `make install` into a staging directory, then installs what differs into /usr/local.
# Sets TM_BINARY_CHANGED.
tm_install_tokenmeter() {
	local stage log
	tm_ensure_packages "${TM_BUILD_PACKAGES[@]}"
	stage="$(mktemp -d)"
	log="$stage.log"
	if make -C "$TM_REPO" -q build/default/bin/tokenmeter >/dev/null 2>&1; then
		tm_report "build tokenmeter (make)" unchanged "up to date"
	else
		tm_report "build tokenmeter (make)" changed "compiled in $TM_REPO/build/default"
	fi
	if ! make -C "$TM_REPO" -j"$(nproc)" install PREFIX="$TM_PREFIX" DESTDIR="$stage" >"$log" 2>&1; then
		tail -n 40 "$log" >&2
		tm_die "make install failed (log above)"
	fi
	tm_put_file "$TM_BINARY" 0755 root:root <"$stage$TM_BINARY"
	TM_BINARY_CHANGED="$TM_CHANGED"
	tm_put_file "$TM_SEED_EXAMPLE" 0644 root:root <"$stage$TM_SEED_EXAMPLE"
	rm -rf "$stage" "$log"
	if tm_live; then
		"$TM_BINARY" version >/dev/null || tm_die "$TM_BINARY does not run (missing libraries?)"
	fi
}

# ---------------------------------------------------------------- containers (RUNTIME=container)

TM_DOCKER_PACKAGES=(docker.io docker-compose-v2)
TM_COMPOSE_FILE="$TM_DEPLOY_DIR/docker/compose.yaml"

# tm_docker_image DOCKERFILE TAG: builds the image from this checkout; changed when its id moved.
tm_docker_image() {
	local file="$1" tag="$2" before after log
	if ! tm_live; then
		tm_report "docker image $tag" skipped "DEPLOY_ROOT"
		return 0
	fi
	before="$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)"
	log="$(mktemp)"
	if ! docker build -q -f "$TM_DEPLOY_DIR/docker/$file" -t "$tag" "$TM_REPO" >"$log" 2>&1; then
		tail -n 40 "$log" >&2
		tm_die "docker build -f deploy/docker/$file failed"
	fi
	rm -f "$log"
	after="$(docker image inspect -f '{{.Id}}' "$tag")"
	if [[ "$before" == "$after" ]]; then
		TM_CHANGED=0
		tm_report "docker image $tag" unchanged
	else
		TM_CHANGED=1
		tm_report "docker image $tag" changed "${after:7:12}"
	fi
}

# tm_disable_service NAME: stopped and disabled (the other runtime took over).
tm_disable_service() {
	local name="$1" what=()
	tm_live || return 0
	if systemctl is-active --quiet "$name"; then
		systemctl stop "$name"
		what+=(stopped)
	fi
	if systemctl is-enabled --quiet "$name" 2>/dev/null; then
		systemctl disable --quiet "$name"
		what+=(disabled)
	fi
	if ((${#what[@]})); then
		tm_report "service $name" changed "${what[*]}"
	else
		tm_report "service $name" unchanged "not in use"
	fi
}

# The systemd sandbox every tokenmeter-managed service shares (vm1's Kafka and
# ZooKeeper, vm4's producers); a unit adds its own ReadWritePaths, UMask and extras.
# The processor (vm3) keeps its own narrower list: NVML needs /dev and /proc whole.
tm_unit_sandbox() {
	cat <<-'EOF'
		NoNewPrivileges=yes
		ProtectSystem=strict
		ProtectHome=yes
		PrivateTmp=yes
		PrivateDevices=yes
		ProtectKernelTunables=yes
		ProtectKernelModules=yes
		ProtectKernelLogs=yes
		ProtectControlGroups=yes
		ProtectClock=yes
		ProtectHostname=yes
		RestrictSUIDSGID=yes
		RestrictRealtime=yes
		RestrictNamespaces=yes
		LockPersonality=yes
		RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
		CapabilityBoundingSet=
		SystemCallArchitectures=native
	EOF
}
