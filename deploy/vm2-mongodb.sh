#!/usr/bin/env bash
# deploy/vm2-mongodb.sh - provisions vm2 "mongodb" (DESIGN 1) on Ubuntu 22.04. Run as root.
#
#   1. sshd key-only (drop-in), UFW from deploy/firewall.tsv (scripts/firewall-gen.sh ufw vm2)
#   2. MongoDB 7.0 from MongoDB's apt repository for jammy (signing key checked against its
#      published fingerprint), package mongodb-org (mongod + mongosh)
#   3. /etc/mongod.conf: bindIp 127.0.0.1,$MONGODB_ADDR, security.authorization enabled
#   4. users, through mongosh on 127.0.0.1: "admin" (role root, created through the localhost
#      exception while no user exists) and "tokenmeter" (readWrite on db tokenmeter) - passwords
#      from MONGODB_ADMIN_PASSWORD / TOKENMETER_DB_PASSWORD, else the ones kept in
#      /etc/tokenmeter/mongodb-admin.secret and mongodb-tokenmeter.secret (0600, generated on
#      the first run); the processor (vm3) needs the second one
#   5. checks: authenticated ping as tokenmeter; a read without credentials is refused
#
# Idempotent: a second run prints only "unchanged" lines; mongod restarts only when
# /etc/mongod.conf changed. A changed TOKENMETER_DB_PASSWORD updates the user's password.
#
# Env (defaults): MONGODB_ADDR (10.0.1.11), MONGODB_SERIES (7.0), TOKENMETER_DB (tokenmeter),
#   TOKENMETER_DB_USER (tokenmeter), MONGODB_ADMIN_USER (admin), MONGODB_ADMIN_PASSWORD,
#   TOKENMETER_DB_PASSWORD, and those of deploy/common.sh.
set -euo pipefail

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

MONGODB_SERIES="${MONGODB_SERIES:-7.0}"
TOKENMETER_DB="${TOKENMETER_DB:-tokenmeter}"
TOKENMETER_DB_USER="${TOKENMETER_DB_USER:-tokenmeter}"
MONGODB_ADMIN_USER="${MONGODB_ADMIN_USER:-admin}"
MONGODB_ADMIN_PASSWORD="${MONGODB_ADMIN_PASSWORD:-}"
TOKENMETER_DB_PASSWORD="${TOKENMETER_DB_PASSWORD:-}"

# MongoDB's server 7.0 signing key (https://pgp.mongodb.com/server-7.0.asc).
MONGODB_KEY_URL="https://pgp.mongodb.com/server-$MONGODB_SERIES.asc"
MONGODB_KEY_FPR="${MONGODB_KEY_FPR:-E58830201F7DD82CD808AA84160D26BB1785BA38}"
KEYRING="/usr/share/keyrings/mongodb-server-$MONGODB_SERIES.gpg"
APT_LIST="/etc/apt/sources.list.d/mongodb-org-$MONGODB_SERIES.list"
ADMIN_SECRET=/etc/tokenmeter/mongodb-admin.secret
APP_SECRET=/etc/tokenmeter/mongodb-tokenmeter.secret
LOCAL_URI="mongodb://127.0.0.1:$MONGODB_PORT"

for v in TOKENMETER_DB TOKENMETER_DB_USER MONGODB_ADMIN_USER; do
	[[ "${!v}" =~ ^[A-Za-z0-9_-]+$ ]] || tm_die "$v: letters, digits, _ and - only"
done

# ---------------------------------------------------------------- apt repository

keyring_fpr() {
	gpg --batch --show-keys --with-colons "$1" 2>/dev/null | awk -F: '$1 == "fpr" {print $10; exit}'
}

ensure_mongodb_repo() {
	if ! tm_live; then
		tm_report "apt key $KEYRING" skipped "DEPLOY_ROOT"
	elif [[ -s "$KEYRING" && "$(keyring_fpr "$KEYRING")" == "$MONGODB_KEY_FPR" ]]; then
		tm_report "apt key $KEYRING" unchanged "fingerprint $MONGODB_KEY_FPR"
	else
		local asc fpr
		asc="$(mktemp)"
		curl -fsSL --retry 3 -o "$asc" "$MONGODB_KEY_URL" || tm_die "cannot download $MONGODB_KEY_URL"
		fpr="$(keyring_fpr "$asc")"
		[[ "$fpr" == "$MONGODB_KEY_FPR" ]] ||
			tm_die "$MONGODB_KEY_URL has fingerprint '${fpr:-none}', expected $MONGODB_KEY_FPR"
		gpg --batch --yes --dearmor -o "$KEYRING.new" "$asc"
		chmod 0644 "$KEYRING.new"
		mv -f "$KEYRING.new" "$KEYRING"
		rm -f "$asc"
		TM_APT_STALE=1
		tm_report "apt key $KEYRING" changed "fingerprint $MONGODB_KEY_FPR"
	fi
	tm_put_file "$APT_LIST" 0644 root:root <<-EOF
		# Managed by tokenmeter deploy/vm2-mongodb.sh: MongoDB $MONGODB_SERIES for Ubuntu 22.04 (jammy)
		deb [ arch=amd64,arm64 signed-by=$KEYRING ] https://repo.mongodb.org/apt/ubuntu jammy/mongodb-org/$MONGODB_SERIES multiverse
	EOF
	((TM_CHANGED)) && TM_APT_STALE=1
	return 0
}

# ---------------------------------------------------------------- mongod.conf

RESTART_MONGOD=0
write_mongod_conf() {
	tm_put_file /etc/mongod.conf 0644 root:root <<-EOF
		# Managed by tokenmeter deploy/vm2-mongodb.sh (DESIGN 1: MongoDB $MONGODB_SERIES, bound to
		# loopback and the private address, authorization on; the host firewall allows
		# $MONGODB_PORT from the processor, $PROCESSOR_ADDR, only).
		storage:
		  dbPath: /var/lib/mongodb
		systemLog:
		  destination: file
		  logAppend: true
		  path: /var/log/mongodb/mongod.log
		net:
		  port: $MONGODB_PORT
		  bindIp: 127.0.0.1,$MONGODB_ADDR
		processManagement:
		  timeZoneInfo: /usr/share/zoneinfo
		security:
		  authorization: enabled
	EOF
	((TM_CHANGED)) && RESTART_MONGOD=1
	return 0
}

# ---------------------------------------------------------------- users (mongosh)

# mongo_js JS: runs JS in mongosh against 127.0.0.1 with the passwords in the environment
# (never on a command line); prints mongosh's output.
mongo_js() {
	TM_ADMIN_USER="$MONGODB_ADMIN_USER" TM_ADMIN_PW="$ADMIN_PW" \
		TM_APP_USER="$TOKENMETER_DB_USER" TM_APP_PW="$APP_PW" TM_DB="$TOKENMETER_DB" \
		TM_URI="$LOCAL_URI" \
		mongosh --quiet --norc "$LOCAL_URI/admin" --eval "$1"
}

mongod_up() {
	[[ "$(mongosh --quiet --norc "$LOCAL_URI/admin" --eval 'db.runCommand({ping: 1}).ok' 2>/dev/null)" == 1 ]]
}

ensure_admin_user() {
	local r
	if ! tm_live; then
		tm_report "mongodb user $MONGODB_ADMIN_USER (root)" skipped "DEPLOY_ROOT"
		return 0
	fi
	r="$(mongo_js '
		const env = process.env;
		let r = "fail";
		try { if (db.getSiblingDB("admin").auth(env.TM_ADMIN_USER, env.TM_ADMIN_PW).ok === 1) r = "ok"; }
		catch (e) { r = "fail"; }
		print(r);' 2>/dev/null | tail -n 1)" || true
	if [[ "$r" == ok ]]; then
		tm_report "mongodb user $MONGODB_ADMIN_USER (root)" unchanged
		return 0
	fi
	# no user yet: the localhost exception lets this connection create the first one
	if ! r="$(mongo_js '
		const env = process.env;
		db.getSiblingDB("admin").createUser({user: env.TM_ADMIN_USER, pwd: env.TM_ADMIN_PW,
			roles: [{role: "root", db: "admin"}]});
		print("created");' 2>&1)" || [[ "$(tail -n 1 <<<"$r")" != created ]]; then
		printf '%s\n' "$r" >&2
		tm_die "cannot log in as $MONGODB_ADMIN_USER with the password of $ADMIN_SECRET, nor create it (users exist already): put the right password in $ADMIN_SECRET"
	fi
	tm_report "mongodb user $MONGODB_ADMIN_USER (root)" changed "created"
}

ensure_app_user() {
	local r
	if ! tm_live; then
		tm_report "mongodb user $TOKENMETER_DB_USER (readWrite@$TOKENMETER_DB)" skipped "DEPLOY_ROOT"
		return 0
	fi
	if ! r="$(mongo_js '
		const env = process.env;
		db.getSiblingDB("admin").auth(env.TM_ADMIN_USER, env.TM_ADMIN_PW);
		const t = db.getSiblingDB(env.TM_DB);
		const roles = [{role: "readWrite", db: env.TM_DB}];
		const u = t.getUser(env.TM_APP_USER);
		if (u === null) {
			t.createUser({user: env.TM_APP_USER, pwd: env.TM_APP_PW, roles: roles});
			print("changed created");
		} else {
			const fixes = [];
			const same = u.roles.length === 1 && u.roles[0].role === "readWrite" && u.roles[0].db === env.TM_DB;
			if (!same) { t.updateUser(env.TM_APP_USER, {roles: roles}); fixes.push("roles"); }
			let pwok = false;
			try {
				const c = new Mongo(env.TM_URI);
				pwok = c.getDB(env.TM_DB).auth(env.TM_APP_USER, env.TM_APP_PW).ok === 1;
			} catch (e) { pwok = false; }
			if (!pwok) { t.updateUser(env.TM_APP_USER, {pwd: env.TM_APP_PW}); fixes.push("password"); }
			print(fixes.length ? "changed updated " + fixes.join(",") : "unchanged");
		}' 2>&1)"; then
		printf '%s\n' "$r" >&2
		tm_die "mongosh could not create or check user $TOKENMETER_DB_USER"
	fi
	r="$(tail -n 1 <<<"$r")"
	case "$r" in
	unchanged) tm_report "mongodb user $TOKENMETER_DB_USER (readWrite@$TOKENMETER_DB)" unchanged ;;
	changed*) tm_report "mongodb user $TOKENMETER_DB_USER (readWrite@$TOKENMETER_DB)" changed "${r#changed }" ;;
	*) tm_die "unexpected answer of mongosh: $r" ;;
	esac
}

# The processor's credentials work, and no credentials get nothing.
check_auth() {
	local r
	tm_live || return 0
	r="$(mongo_js '
		const env = process.env;
		const c = new Mongo(env.TM_URI);
		const d = c.getDB(env.TM_DB);
		d.auth(env.TM_APP_USER, env.TM_APP_PW);
		print(d.runCommand({ping: 1}).ok);' 2>&1 | tail -n 1)"
	[[ "$r" == 1 ]] || tm_die "ping as $TOKENMETER_DB_USER failed: $r"
	if mongosh --quiet --norc "$LOCAL_URI/$TOKENMETER_DB" \
		--eval 'db.getCollection("token_usage").findOne()' >/dev/null 2>&1; then
		tm_die "a read without credentials succeeded: authorization is not enforced"
	fi
	tm_report "auth (tokenmeter user works, no credentials refused)" unchanged "checked"
}

check_sockets() {
	local bad
	tm_live || return 0
	bad="$(ss -Hltn "sport = :$MONGODB_PORT" | awk '{print $4}' |
		grep -vxE "(127\.0\.0\.1|${MONGODB_ADDR//./\\.}):$MONGODB_PORT" || true)"
	[[ -z "$bad" ]] || tm_die "mongod listens on unexpected addresses: $bad"
	ss -Hltn "sport = :$MONGODB_PORT" | grep -qF "$MONGODB_ADDR:$MONGODB_PORT" ||
		tm_die "mongod does not listen on $MONGODB_ADDR:$MONGODB_PORT"
	tm_report "listeners (127.0.0.1 and $MONGODB_ADDR:$MONGODB_PORT only)" unchanged "checked"
}

# ---------------------------------------------------------------- main

tm_preflight
tm_require_addr "$MONGODB_ADDR" MONGODB_ADDR
tm_sshd_harden
tm_ufw_apply vm2
tm_ensure_packages ca-certificates curl gnupg
ensure_mongodb_repo
tm_ensure_packages mongodb-org
write_mongod_conf
tm_ensure_service mongod.service "$RESTART_MONGOD"
if tm_live; then
	tm_wait_until 60 mongod mongod_up ||
		tm_die "mongod does not answer on 127.0.0.1:$MONGODB_PORT (journalctl -u mongod, /var/log/mongodb/mongod.log)"
fi

tm_ensure_dir /etc/tokenmeter 0755 root:root
# The admin password is never changed by this script: it would lose the one that works.
if [[ -n "$MONGODB_ADMIN_PASSWORD" ]] && old="$(tm_read_secret "$ADMIN_SECRET")" &&
	[[ "$old" != "$MONGODB_ADMIN_PASSWORD" ]]; then
	tm_die "MONGODB_ADMIN_PASSWORD differs from $ADMIN_SECRET: change the admin password with mongosh (db.changeUserPassword), then the file"
fi
tm_secret "$ADMIN_SECRET" "$MONGODB_ADMIN_PASSWORD"
tm_secret "$APP_SECRET" "$TOKENMETER_DB_PASSWORD"
ADMIN_PW="$(tm_read_secret "$ADMIN_SECRET")"
APP_PW="$(tm_read_secret "$APP_SECRET")"
ensure_admin_user
ensure_app_user
check_auth
check_sockets
tm_summary
