#!/usr/bin/env bash
# Make sure Debian's redis-server, pgbouncer and nginx are installed for the tests that run
# them (tests/test_redis*.py, tests/test_pgbouncer.py, tests/test_nginx.py, through
# tests/stack.py). Idempotent and silent when all three are there; installs the missing
# ones otherwise (needs root). The tests start their own processes on free loopback ports;
# they never use the services the packages may start themselves.
set -euo pipefail

declare -A BINARY=(
    [redis-server]=/usr/bin/redis-server
    [pgbouncer]=/usr/sbin/pgbouncer
    [nginx]=/usr/sbin/nginx
)

missing=()
for package in redis-server pgbouncer nginx; do
    [ -x "${BINARY[$package]}" ] || missing+=("$package")
done

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-services: ${missing[*]} missing; install as root: apt-get install -y ${missing[*]}" >&2
    exit 1
fi

echo "ensure-services: installing ${missing[*]} (Debian packages) for the tests..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for package in "${missing[@]}"; do
    [ -x "${BINARY[$package]}" ] || { echo "ensure-services: ${BINARY[$package]} still missing" >&2; exit 1; }
done
