#!/usr/bin/env bash
# Runs every tests/integration/NNNN-*.sh against the real servers of scripts/stack.sh
# (started here if needed; left running). Prints one line per test and a final
# "N passed, N failed"; exits non-zero on any failure.
# Usage: tests/integration/run.sh [PATTERN]   (e.g. 0040)
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
"$repo/scripts/stack.sh" up >/dev/null || { echo "0 passed, 1 failed (stack did not start)"; exit 1; }
passed=0 failed=0
for t in "$here"/[0-9][0-9][0-9][0-9]-*.sh; do
	[[ -z "${1:-}" || "$t" == *"$1"* ]] || continue
	name="$(basename "$t" .sh)"
	start=$SECONDS
	if bash "$t" >"/tmp/tm-it-$name.log" 2>&1; then
		passed=$((passed + 1))
		printf 'PASS %-40s %3ds\n' "$name" $((SECONDS - start))
	else
		failed=$((failed + 1))
		printf 'FAIL %-40s %3ds\n' "$name" $((SECONDS - start))
		sed 's/^/     /' "/tmp/tm-it-$name.log"
	fi
done
echo "integration: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
