# shellcheck shell=bash disable=SC2034  # variables are used by the scripts that source this file
# Shared settings for scripts/deps.sh and scripts/stack.sh (sourced, not executed).
#
# Cache (downloads, builds; outside the repository):
#   TOKENMETER_CACHE   default ${XDG_CACHE_HOME:-$HOME/.cache}/tokenmeter
# Versions:
#   TM_KAFKA_VERSIONS  candidate Kafka 3.7 patch releases, newest first (default "3.7.2 3.7.1 3.7.0")
#   TM_ZK_VERSION      ZooKeeper server version (default 3.9.2)
#   TM_FERRETDB_VERSION FerretDB module version (default v1.24.2)

TM_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TM_SCRIPTS="$TM_REPO/scripts"
TM_CACHE="${TOKENMETER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tokenmeter}"
TM_M2="$TM_CACHE/m2"
TM_KAFKA_VERSIONS="${TM_KAFKA_VERSIONS:-3.7.2 3.7.1 3.7.0}"
TM_ZK_VERSION="${TM_ZK_VERSION:-3.9.2}"
TM_FERRETDB_VERSION="${TM_FERRETDB_VERSION:-v1.24.2}"
TM_FERRETDB_MODULE="github.com/FerretDB/FerretDB"
TM_FERRETDB_BIN="$TM_CACHE/bin/ferretdb"
TM_ZK_HOME="$TM_CACHE/zookeeper-$TM_ZK_VERSION"
# Marker written once a libs/ folder is complete.
TM_MARKER=".complete"

tm_die() {
	printf '%s: error: %s\n' "${0##*/}" "$*" >&2
	exit 1
}

tm_warn() {
	printf '%s: %s\n' "${0##*/}" "$*" >&2
}

# java binary: $JAVA, else $JAVA_HOME/bin/java, else java on PATH.
tm_java() {
	if [[ -n "${JAVA:-}" ]]; then
		printf '%s\n' "$JAVA"
	elif [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
		printf '%s\n' "$JAVA_HOME/bin/java"
	else
		command -v java || return 1
	fi
}

# go binary: go on PATH, else the upstream tarball location.
tm_go() {
	if command -v go >/dev/null 2>&1; then
		command -v go
	elif [[ -x /usr/local/go/bin/go ]]; then
		printf '%s\n' /usr/local/go/bin/go
	else
		return 1
	fi
}

# Prints the newest complete Kafka home in the cache (e.g. $CACHE/kafka-3.7.2).
tm_kafka_home() {
	local v
	for v in $TM_KAFKA_VERSIONS; do
		if [[ -f "$TM_CACHE/kafka-$v/$TM_MARKER" ]]; then
			printf '%s\n' "$TM_CACHE/kafka-$v"
			return 0
		fi
	done
	return 1
}
TM_VENV="$TM_CACHE/venv"
