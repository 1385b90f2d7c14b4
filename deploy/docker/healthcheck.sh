#!/bin/bash
# HEALTHCHECK of the tokenmeter processor image: GET /health on the address of HTTP_LISTEN
# (0.0.0.0 and :: become loopback) must answer "HTTP/1.x 200". Uses bash's /dev/tcp, so the
# slim runtime image needs no curl. Exit 0 healthy, 1 not (Docker's contract).
set -euo pipefail

listen="${HTTP_LISTEN:-0.0.0.0:8080}"
port="${listen##*:}"
host="${listen%:*}"
host="${host#[}"
host="${host%]}"
case "$host" in
"" | 0.0.0.0 | "*") host=127.0.0.1 ;;
::) host=::1 ;;
esac
[[ "$port" =~ ^[0-9]+$ && "$port" != 0 ]] || {
	echo "unhealthy: HTTP_LISTEN '$listen' has no fixed port"
	exit 1
}

if ! exec 3<>"/dev/tcp/$host/$port"; then
	echo "unhealthy: cannot connect to $host:$port"
	exit 1
fi
printf 'GET /health HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' "$host" >&3
status=""
IFS= read -r -t 4 status <&3 || true
status="${status%$'\r'}"
if [[ "$status" =~ ^HTTP/1\.[01]\ 200 ]]; then
	exit 0
fi
body="$(timeout 1 cat <&3 | tr -d '\r' | tail -n 1 | cut -c 1-300 || true)"
echo "unhealthy: ${status:-no answer}: $body"
exit 1
