#!/usr/bin/env bash
# Installs what tokenmeter needs to build and test, skipping what is already there:
#   1. Debian packages (apt-get; `apt-get update` only when something must be installed)
#   2. Apache Kafka 3.7.x broker jars + runtime deps (Maven Central, via mvn) -> $CACHE/kafka-3.7.x/libs
#   3. Apache ZooKeeper 3.9.2 server jars + runtime deps                     -> $CACHE/zookeeper-3.9.2/libs
#   4. FerretDB v1.24.2 (MongoDB wire protocol server), built with Go        -> $CACHE/bin/ferretdb
#      (skipped when a `mongod` is on PATH: scripts/stack.sh prefers it)
#   5. a Python virtual environment with pymongo (PyPI), used by the integration
#      tests to check MongoDB independently of tokenmeter's own C code  -> $CACHE/venv
# One line per thing: "ok (cached)" or "installed".
#
# Usage: scripts/deps.sh [--no-apt] [--no-servers]
# Env:   TOKENMETER_CACHE (cache dir, outside the repository), TM_KAFKA_VERSIONS,
#        TM_ZK_VERSION, TM_FERRETDB_VERSION, TM_FORCE_FERRETDB=1 (build even if mongod exists)
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

APT_PACKAGES=(
	build-essential pkg-config
	librdkafka-dev libmongoc-dev libbson-dev libmicrohttpd-dev
	libcmocka-dev libjansson-dev libcurl4-openssl-dev
	shellcheck clang curl netcat-openbsd jq python3 python3-venv
	# scripts/lab.sh: network namespaces, firewalls, key-only sshd per VM, password-login checks
	iproute2 nftables openssh-server openssh-client sshpass
)

do_apt=1
do_servers=1
for arg in "$@"; do
	case "$arg" in
	--no-apt) do_apt=0 ;;
	--no-servers) do_servers=0 ;;
	-h | --help)
		sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*) tm_die "unknown argument: $arg (try --help)" ;;
	esac
done

report() { printf '%-32s %s\n' "$1" "$2"; }

pkg_installed() {
	dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed$'
}

# Runs apt-get, as root or through sudo, waiting for the dpkg/apt locks when another
# apt-get is running (DPkg::Lock::Timeout covers install; update is retried).
apt_run() {
	local -a sudo=()
	if [[ $(id -u) -ne 0 ]]; then
		command -v sudo >/dev/null 2>&1 || tm_die "not root and no sudo: install ${APT_PACKAGES[*]} by hand"
		sudo=(sudo)
	fi
	local try
	for try in $(seq 1 60); do
		if "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
			apt-get -q -o DPkg::Lock::Timeout=600 "$@"; then
			return 0
		fi
		[[ $try -lt 60 ]] || break
		tm_warn "apt-get $1 failed (apt busy?), retrying in 10 s ($try/60)"
		sleep 10
	done
	return 1
}

install_apt() {
	local -a missing=()
	local p
	for p in "${APT_PACKAGES[@]}"; do
		if pkg_installed "$p"; then
			report "apt $p" "ok (cached)"
		else
			missing+=("$p")
		fi
	done
	[[ ${#missing[@]} -gt 0 ]] || return 0
	local log
	log="$(mktemp)"
	if ! { apt_run update && apt_run install -y --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
		tail -n 30 "$log" >&2
		rm -f "$log"
		tm_die "apt-get install ${missing[*]} failed"
	fi
	rm -f "$log"
	for p in "${missing[@]}"; do
		pkg_installed "$p" || tm_die "package $p still not installed"
		report "apt $p" "installed"
	done
}

# mvn with the local repository inside the cache; output goes to $MVN_LOG.
MVN_LOG="$TM_CACHE/mvn.log"
mvn_run() {
	mvn -B -q --no-transfer-progress -Dmaven.repo.local="$TM_M2" "$@" >>"$MVN_LOG" 2>&1
}

# A libs/ folder is complete when its marker names the current pom.xml (editing the pom
# refetches).
POM_SHA="$(sha256sum "$TM_SCRIPTS/maven/pom.xml" | cut -d' ' -f1)"
libs_current() {
	[[ -f "$1/$TM_MARKER" ]] && grep -qxF "pom=$POM_SHA" "$1/$TM_MARKER"
}

# fetch_libs NAME PROFILE VERSION-PROPERTY VERSION HOME
# Copies the artifact and its runtime dependencies into HOME/libs, then writes the marker.
fetch_libs() {
	local name="$1" profile="$2" prop="$3" version="$4" home="$5"
	rm -rf "$home/libs" "$home/libs.partial" "${home:?}/$TM_MARKER"
	mkdir -p "$home"
	if ! mvn_run -f "$TM_SCRIPTS/maven/pom.xml" -P "$profile" "-D$prop=$version" \
		dependency:copy-dependencies -DincludeScope=runtime \
		-DoutputDirectory="$home/libs.partial"; then
		tail -n 30 "$MVN_LOG" >&2
		tm_die "mvn could not fetch $name $version (log: $MVN_LOG)"
	fi
	mv "$home/libs.partial" "$home/libs"
	{
		printf 'pom=%s\nname=%s\nversion=%s\n' "$POM_SHA" "$name" "$version"
		printf 'fetched=%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
		(cd "$home/libs" && ls -1)
	} >"$home/$TM_MARKER"
}

install_kafka() {
	local home v
	if home="$(tm_kafka_home)" && libs_current "$home"; then
		report "kafka ${home##*/kafka-}" "ok (cached)"
		return 0
	fi
	command -v mvn >/dev/null 2>&1 || tm_die "mvn (Maven) is not installed"
	for v in $TM_KAFKA_VERSIONS; do
		if mvn_run org.apache.maven.plugins:maven-dependency-plugin:3.6.1:get \
			-Dartifact="org.apache.kafka:kafka_2.13:$v" -Dtransitive=false; then
			fetch_libs kafka kafka kafka.version "$v" "$TM_CACHE/kafka-$v"
			report "kafka $v" "installed"
			return 0
		fi
		tm_warn "kafka_2.13:$v did not resolve, trying the next version"
	done
	tail -n 30 "$MVN_LOG" >&2
	tm_die "no Kafka version of '$TM_KAFKA_VERSIONS' resolved (log: $MVN_LOG)"
}

install_zookeeper() {
	if libs_current "$TM_ZK_HOME"; then
		report "zookeeper $TM_ZK_VERSION" "ok (cached)"
		return 0
	fi
	command -v mvn >/dev/null 2>&1 || tm_die "mvn (Maven) is not installed"
	fetch_libs zookeeper zookeeper zookeeper.version "$TM_ZK_VERSION" "$TM_ZK_HOME"
	report "zookeeper $TM_ZK_VERSION" "installed"
}

# The module zip of FerretDB lacks the generated build/version/version.txt, so a plain
# `go install ...@version` builds a binary that panics at start. Build from a writable copy
# of the module source instead, with version.txt filled in.
install_ferretdb() {
	local mongod
	if mongod="$(command -v mongod 2>/dev/null)" && [[ "${TM_FORCE_FERRETDB:-0}" != 1 ]]; then
		report "mongod" "ok (cached: $mongod, FerretDB not needed)"
		return 0
	fi
	if [[ -x "$TM_FERRETDB_BIN" ]] && "$TM_FERRETDB_BIN" --version 2>/dev/null | grep -qx "version: $TM_FERRETDB_VERSION"; then
		report "ferretdb $TM_FERRETDB_VERSION" "ok (cached)"
		return 0
	fi
	local go
	go="$(tm_go)" || tm_die "go is not installed (needed to build FerretDB)"
	local src="$TM_CACHE/src/FerretDB-$TM_FERRETDB_VERSION" log="$TM_CACHE/go-build.log" dir
	: >"$log"
	export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0
	if ! dir="$(cd "$TM_CACHE" && "$go" mod download -json "$TM_FERRETDB_MODULE@$TM_FERRETDB_VERSION" 2>>"$log" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')" || [[ -z "$dir" || ! -d "$dir" ]]; then
		tail -n 30 "$log" >&2
		tm_die "go mod download $TM_FERRETDB_MODULE@$TM_FERRETDB_VERSION failed (log: $log)"
	fi
	rm -rf "$src"
	mkdir -p "${src%/*}" "$TM_CACHE/bin"
	cp -R "$dir" "$src"
	chmod -R u+w "$src"
	printf '%s\n' "$TM_FERRETDB_VERSION" >"$src/build/version/version.txt"
	printf '%s\n' "tokenmeter-source-build" >"$src/build/version/package.txt"
	if ! (cd "$src" && "$go" build -trimpath -o "$TM_FERRETDB_BIN.partial" ./cmd/ferretdb) >>"$log" 2>&1; then
		tail -n 30 "$log" >&2
		tm_die "building FerretDB failed (log: $log)"
	fi
	mv "$TM_FERRETDB_BIN.partial" "$TM_FERRETDB_BIN"
	rm -rf "$src"
	"$TM_FERRETDB_BIN" --version | grep -qx "version: $TM_FERRETDB_VERSION" ||
		tm_die "$TM_FERRETDB_BIN does not report version $TM_FERRETDB_VERSION"
	report "ferretdb $TM_FERRETDB_VERSION" "installed"
}

install_pytools() {
	local venv="$TM_CACHE/venv"
	if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c 'import pymongo' 2>/dev/null; then
		report "python venv + pymongo" "ok (cached)"
		return 0
	fi
	rm -rf "$venv"
	python3 -m venv "$venv" || tm_die "python3 -m venv failed (is python3-venv installed?)"
	"$venv/bin/python" -m pip install -q --disable-pip-version-check 'pymongo>=4.6,<5' ||
		tm_die "pip install pymongo failed"
	report "python venv + pymongo" "installed"
}

[[ $do_apt -eq 0 ]] || install_apt
if [[ $do_servers -eq 1 ]]; then
	mkdir -p "$TM_CACHE"
	: >"$MVN_LOG"
	install_kafka
	install_zookeeper
	install_ferretdb
	install_pytools
	printf 'cache: %s\n' "$TM_CACHE"
fi
