#!/usr/bin/env bash
# Host firewall of one tokenmeter host, generated from the rule table deploy/firewall.tsv
# (DESIGN 1: default deny inbound, then exactly the table's rows for that host).
#
# Usage: scripts/firewall-gen.sh [--table FILE] [--addr NAME=ADDR]... COMMAND
#   nft HOST     an nftables ruleset for HOST (`nft -f -` loads it; loading it again replaces
#                it): table inet tokenmeter, chain input with policy drop, accepting
#                established/related, loopback and IPv6 neighbour discovery, then the rows
#   ufw HOST     the UFW commands for HOST, one a line (pipe them to `sh -e` on the host):
#                defaults (deny incoming, allow outgoing), one `ufw allow` per row,
#                then `ufw --force enable`
#   rows HOST    the rows of HOST with their sources resolved: "proto port from address comment"
#   hosts        the hosts that have rows
#   addrs        the address of every name ("NAME ADDR")
#   addr NAME    the address of NAME
#   check        validates the table (every command does), prints a summary
#
# Names and their default addresses (DESIGN 1; admin is the lab's admin address): vm1 10.0.1.10,
# vm2 10.0.1.11, vm3 10.0.1.12, vm4 10.0.1.13, admin 10.0.1.100. Override one with
# --addr NAME=ADDR or the environment variable TM_ADDR_<NAME> (e.g. TM_ADDR_ADMIN=203.0.113.7,
# or a CIDR such as 198.51.100.0/24 for an admin network). The --addr option wins.
# Env: TM_FIREWALL_TABLE (default: deploy/firewall.tsv next to this script's repository).
# Self-contained (bash only): it can be copied to a VM together with the table.
set -euo pipefail

die() {
	printf 'firewall-gen.sh: error: %s\n' "$*" >&2
	exit 2
}

usage() {
	sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TABLE="${TM_FIREWALL_TABLE:-$(cd "$here/.." && pwd)/deploy/firewall.tsv}"
NAMES=(vm1 vm2 vm3 vm4 admin)
declare -A ADDR=(
	[vm1]="${TM_ADDR_VM1:-10.0.1.10}"
	[vm2]="${TM_ADDR_VM2:-10.0.1.11}"
	[vm3]="${TM_ADDR_VM3:-10.0.1.12}"
	[vm4]="${TM_ADDR_VM4:-10.0.1.13}"
	[admin]="${TM_ADDR_ADMIN:-10.0.1.100}"
)

is_ipv4() {
	local a="${1%/*}" p o
	[[ "$1" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}(/[0-9]{1,2})?$ ]] || return 1
	[[ "$1" != */* ]] || { p="${1#*/}"; ((10#$p <= 32)) || return 1; }
	IFS=. read -r -a o <<<"$a"
	for p in "${o[@]}"; do ((10#$p <= 255)) || return 1; done
}
is_ipv6() { [[ "$1" =~ ^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(/[0-9]{1,3})?$ ]]; }
is_addr() { is_ipv4 "$1" || is_ipv6 "$1"; }

# ---------------------------------------------------------------- options

cmd=""
args=()
while [[ $# -gt 0 ]]; do
	case "$1" in
	--table)
		[[ $# -ge 2 ]] || die "--table needs a file"
		TABLE="$2"
		shift 2
		;;
	--table=*)
		TABLE="${1#--table=}"
		shift
		;;
	--addr | --addr=*)
		if [[ "$1" == --addr ]]; then
			[[ $# -ge 2 ]] || die "--addr needs NAME=ADDR"
			kv="$2"
			shift 2
		else
			kv="${1#--addr=}"
			shift
		fi
		[[ "$kv" == *=* ]] || die "--addr $kv: want NAME=ADDR"
		ADDR["${kv%%=*}"]="${kv#*=}"
		;;
	-h | --help | help)
		usage
		exit 0
		;;
	-*) die "unknown option '$1' (try --help)" ;;
	*)
		if [[ -z "$cmd" ]]; then cmd="$1"; else args+=("$1"); fi
		shift
		;;
	esac
done
[[ -n "$cmd" ]] || {
	usage >&2
	exit 2
}

for n in "${!ADDR[@]}"; do
	[[ "$n" =~ ^[a-z][a-z0-9_-]*$ ]] || die "bad host name '$n'"
	is_addr "${ADDR[$n]}" || die "address of $n is not an IPv4/IPv6 address or CIDR: '${ADDR[$n]}'"
done

# ---------------------------------------------------------------- the table

# Parsed rows, one array per column.
R_HOST=() R_PROTO=() R_PORT=() R_FROM=() R_SRC=() R_COMMENT=()

load_table() {
	[[ -r "$TABLE" ]] || die "rule table '$TABLE' is not readable"
	local line n=0 host proto port from comment extra src
	while IFS= read -r line || [[ -n "$line" ]]; do
		n=$((n + 1))
		line="${line%$'\r'}"
		[[ -z "${line//[[:space:]]/}" || "$line" == \#* ]] && continue
		IFS=$'\t' read -r host proto port from comment extra <<<"$line"
		[[ "$host" == host && "$proto" == proto ]] && continue # column header
		[[ -z "${extra:-}" ]] || die "$TABLE:$n: more than 5 tab-separated columns"
		[[ "$host" =~ ^[a-z][a-z0-9_-]*$ ]] || die "$TABLE:$n: bad host '$host'"
		[[ "$proto" == tcp || "$proto" == udp ]] || die "$TABLE:$n: proto must be tcp or udp, not '$proto'"
		if ! [[ "$port" =~ ^[0-9]{1,5}$ ]] || ((10#$port < 1 || 10#$port > 65535)); then
			die "$TABLE:$n: bad port '$port'"
		fi
		[[ -n "${from:-}" ]] || die "$TABLE:$n: missing 'from' column"
		comment="${comment:-}"
		[[ "$comment" != *[\"\'\\]* ]] || die "$TABLE:$n: the comment may not contain quotes or backslashes"
		((${#comment} <= 100)) || die "$TABLE:$n: comment longer than 100 characters"
		if [[ "$from" == local ]]; then
			src=local
		elif [[ -n "${ADDR[$from]+set}" ]]; then
			src="${ADDR[$from]}"
		elif is_addr "$from"; then
			src="$from"
		else
			die "$TABLE:$n: 'from' is neither a known name (${!ADDR[*]}), an address nor 'local': '$from'"
		fi
		R_HOST+=("$host") R_PROTO+=("$proto") R_PORT+=("$((10#$port))") R_FROM+=("$from")
		R_SRC+=("$src") R_COMMENT+=("$comment")
	done <"$TABLE"
	[[ ${#R_HOST[@]} -gt 0 ]] || die "$TABLE has no rows"
}

# Row indices of HOST, SSH (22) first so that a UFW enable never locks the operator out.
host_rows() {
	local host="$1" i pass found=0
	for pass in ssh other; do
		for i in "${!R_HOST[@]}"; do
			[[ "${R_HOST[$i]}" == "$host" ]] || continue
			if { [[ "$pass" == ssh && "${R_PORT[$i]}" == 22 ]]; } ||
				{ [[ "$pass" == other && "${R_PORT[$i]}" != 22 ]]; }; then
				printf '%s\n' "$i"
				found=1
			fi
		done
	done
	[[ $found -eq 1 ]] || die "host '$host' has no rows in $TABLE (hosts: $(list_hosts | paste -sd' '))"
}

list_hosts() {
	local -A seen=()
	local h
	for h in "${R_HOST[@]}"; do
		[[ -n "${seen[$h]+x}" ]] && continue
		seen[$h]=1
		printf '%s\n' "$h"
	done
}

need_host() {
	[[ ${#args[@]} -eq 1 ]] || die "$cmd needs exactly one HOST"
	HOSTARG="${args[0]}"
	mapfile -t IDX < <(host_rows "$HOSTARG")
	[[ ${#IDX[@]} -gt 0 ]] || exit 2
}

host_label() {
	if [[ -n "${ADDR[$1]+set}" ]]; then printf '%s (%s)' "$1" "${ADDR[$1]}"; else printf '%s' "$1"; fi
}

# ---------------------------------------------------------------- generators

gen_nft() {
	local i src fam
	printf '#!/usr/sbin/nft -f\n'
	printf '# host firewall of %s, generated by scripts/firewall-gen.sh from %s\n' \
		"$(host_label "$HOSTARG")" "${TABLE##*/}"
	printf '# inbound: default drop, then exactly the rows of the table for this host\n'
	printf 'table inet tokenmeter\ndelete table inet tokenmeter\n'
	printf 'table inet tokenmeter {\n\tchain input {\n'
	printf '\t\ttype filter hook input priority filter; policy drop;\n'
	printf '\t\tct state established,related accept\n'
	printf '\t\tct state invalid drop\n'
	printf '\t\tiif "lo" accept comment "loopback is always allowed"\n'
	printf '\t\ticmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert } accept comment "IPv6 neighbour discovery"\n'
	for i in "${IDX[@]}"; do
		src="${R_SRC[$i]}"
		if [[ "$src" == local ]]; then
			printf '\t\t# %s/%s from %s: %s (loopback only, accepted above)\n' \
				"${R_PORT[$i]}" "${R_PROTO[$i]}" "${R_FROM[$i]}" "${R_COMMENT[$i]}"
			continue
		fi
		if is_ipv4 "$src"; then fam=ip; else fam=ip6; fi
		printf '\t\t%s saddr %s %s dport %s accept comment "%s"\n' \
			"$fam" "$src" "${R_PROTO[$i]}" "${R_PORT[$i]}" "${R_FROM[$i]}: ${R_COMMENT[$i]}"
	done
	printf '\t}\n}\n'
}

gen_ufw() {
	local i src
	printf '# UFW commands for %s, generated by scripts/firewall-gen.sh from %s\n' \
		"$(host_label "$HOSTARG")" "${TABLE##*/}"
	printf 'ufw default deny incoming\n'
	printf 'ufw default allow outgoing\n'
	for i in "${IDX[@]}"; do
		src="${R_SRC[$i]}"
		if [[ "$src" == local ]]; then
			printf '# %s/%s: %s (loopback only; UFW always allows loopback)\n' \
				"${R_PORT[$i]}" "${R_PROTO[$i]}" "${R_COMMENT[$i]}"
			continue
		fi
		printf "ufw allow from %s to any port %s proto %s comment '%s'\n" \
			"$src" "${R_PORT[$i]}" "${R_PROTO[$i]}" "${R_FROM[$i]}: ${R_COMMENT[$i]}"
	done
	printf 'ufw --force enable\n'
}

gen_rows() {
	local i
	for i in "${IDX[@]}"; do
		printf '%s\t%s\t%s\t%s\t%s\n' "${R_PROTO[$i]}" "${R_PORT[$i]}" "${R_FROM[$i]}" \
			"${R_SRC[$i]}" "${R_COMMENT[$i]}"
	done
}

load_table
case "$cmd" in
nft)
	need_host
	gen_nft
	;;
ufw)
	need_host
	gen_ufw
	;;
rows)
	need_host
	gen_rows
	;;
hosts) list_hosts ;;
addrs)
	for n in "${NAMES[@]}"; do printf '%s %s\n' "$n" "${ADDR[$n]}"; done
	;;
addr)
	[[ ${#args[@]} -eq 1 ]] || die "addr needs exactly one NAME"
	[[ -n "${ADDR[${args[0]}]+set}" ]] || die "unknown name '${args[0]}' (names: ${NAMES[*]})"
	printf '%s\n' "${ADDR[${args[0]}]}"
	;;
check)
	printf '%s: %d rows, hosts: %s\n' "$TABLE" "${#R_HOST[@]}" "$(list_hosts | paste -sd' ')"
	;;
*) die "unknown command '$cmd' (try --help)" ;;
esac
