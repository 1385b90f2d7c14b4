#!/usr/bin/env bash
# The DESIGN 1 lab (issue 4): `scripts/lab.sh up`, `verify` with every row PASS (firewall
# rows allowed and denied, MongoDB authentication, key-only SSH, trace slices end to end with
# exact totals), then `down` leaves no namespace and no process behind, and a second `down`
# is harmless. Needs root (CI runs as root): a lab that cannot be built is a failure, never a skip.
# Independent of the loopback stack of scripts/stack.sh: the lab runs its own servers.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
LAB="${TM_LAB_STATE:-$repo/.lab}"
LABSH="$repo/scripts/lab.sh"
name="$(basename "$0" .sh)"
work="$(mktemp -d "/tmp/tm-it-lab.XXXX")"

info() { printf '  [%s] %s\n' "$name" "$*"; }
fail() {
	printf '  [%s] FAIL: %s\n' "$name" "$*" >&2
	exit 1
}
cleanup() {
	"$LABSH" down >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

[[ $(id -u) -eq 0 ]] || fail "the lab needs root (network namespaces, nftables, sshd); CI runs as root"

t0=$SECONDS
"$LABSH" up || fail "scripts/lab.sh up failed (see above)"
info "up in $((SECONDS - t0))s"

t1=$SECONDS
rc=0
"$LABSH" verify >"$work/verify.out" 2>&1 || rc=$?
cat "$work/verify.out"
info "verify in $((SECONDS - t1))s"
fails=$(grep -c '^FAIL' "$work/verify.out" || true)
passes=$(grep -c '^PASS' "$work/verify.out" || true)
[[ $rc -eq 0 && $fails -eq 0 ]] || fail "verify: $fails FAIL row(s), exit status $rc"
[[ $passes -ge 50 ]] || fail "verify printed only $passes PASS rows"

# every check of issue 4 is among the PASS rows
for want in \
	'root namespace: no 10\.0\.1' \
	'allowed: vm4 -> vm1 10\.0\.1\.10:9092' \
	'allowed: vm3 -> vm1 10\.0\.1\.10:9092' \
	'allowed: vm3 -> vm2 10\.0\.1\.11:27017 MongoDB with credentials' \
	'allowed: admin -> vm3 10\.0\.1\.12:8080 GET /health' \
	'allowed: admin -> vm1 10\.0\.1\.10:22 ssh root with the lab key' \
	'allowed: admin -> vm2 10\.0\.1\.11:22 ssh root with the lab key' \
	'allowed: admin -> vm3 10\.0\.1\.12:22 ssh root with the lab key' \
	'allowed: admin -> vm4 10\.0\.1\.13:22 ssh root with the lab key' \
	'denied:  vm4 -> vm2 10\.0\.1\.11:27017' \
	'denied:  vm2 -> vm1 10\.0\.1\.10:9092' \
	'denied:  admin -> vm1 10\.0\.1\.10:9092' \
	'denied:  admin -> vm2 10\.0\.1\.11:27017' \
	'denied:  vm4 -> vm3 10\.0\.1\.12:8080' \
	'denied:  vm3 -> vm1 10\.0\.1\.10:2181' \
	'denied:  vm2 -> vm1 10\.0\.1\.10:2181' \
	'denied:  vm4 -> vm1 10\.0\.1\.10:2181' \
	'denied:  admin -> vm1 10\.0\.1\.10:2181' \
	'vm1: ZooKeeper listens on 127\.0\.0\.1:2181 only' \
	'denied:  vm3 -> vm2 MongoDB without credentials' \
	'denied:  admin -> vm[1-4] ssh nobody with a password' \
	'denied:  admin -> vm[1-4] ssh root with a password' \
	'e2e: token_usage on vm2 .* = trace sums' \
	'e2e: admin -> vm3 GET /gpu/info'; do
	grep -qE -- "^PASS  $want" "$work/verify.out" || fail "no PASS row for: $want"
done

# what runs in the lab, to prove afterwards that none of it is left
for ns in $(ip netns list | awk '$1 ~ /^tmlab-/ { print $1 }'); do
	for pid in $(ip netns pids "$ns"); do
		printf '%s %s\n' "$pid" "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-200)"
	done
done >"$work/lab-procs"
[[ -s "$work/lab-procs" ]] || fail "no process found in the lab namespaces"

t2=$SECONDS
"$LABSH" down || fail "scripts/lab.sh down failed"
info "down in $((SECONDS - t2))s"

left="$(ip netns list | awk '$1 ~ /^tmlab-/ { print $1 }')"
[[ -z "$left" ]] || fail "namespaces left after down: $left"
while read -r pid cmd; do
	if [[ -r "/proc/$pid/cmdline" && "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-200)" == "$cmd" ]]; then
		fail "process left after down: $pid $cmd"
	fi
done <"$work/lab-procs"
for f in /proc/[0-9]*/cmdline; do
	c="$(tr '\0' ' ' <"$f" 2>/dev/null)" || continue
	[[ "$c" != *"$LAB/"* ]] || fail "process left after down: ${f//[^0-9]/} $c"
done
out="$( (ip -4 addr show; ip -4 route show table all; ip -br link show) | grep -E '10\.0\.1\.|tmlab' || true)"
[[ -z "$out" ]] || fail "the root namespace has lab addresses, routes or links: $out"
"$LABSH" down >/dev/null || fail "a second scripts/lab.sh down failed"
info "ok: $passes rows PASS; nothing left after down ($(wc -l <"$work/lab-procs") processes stopped)"
