#!/usr/bin/env bash
# Make sure the Debian packages the slow tests run are installed: chromium for the browser
# tests (tests/browser.py), redis-server, pgbouncer and nginx for the many-instance tests
# (tests/stack.py). Idempotent and silent when all are there; installs the missing ones
# otherwise (needs root). The tests start their own processes on free loopback ports;
# they never use the services the packages may start themselves.
set -euo pipefail

declare -A BINARY=(
    [chromium]=/usr/bin/chromium
    [redis-server]=/usr/bin/redis-server
    [pgbouncer]=/usr/sbin/pgbouncer
    [nginx]=/usr/sbin/nginx
)

missing=()
for package in chromium redis-server pgbouncer nginx; do
    [ -x "${BINARY[$package]}" ] || missing+=("$package")
done

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-test-packages: ${missing[*]} missing; install as root: apt-get install -y ${missing[*]}" >&2
    exit 1
fi

echo "ensure-test-packages: installing ${missing[*]} (Debian packages) for the tests..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
for package in "${missing[@]}"; do
    [ -x "${BINARY[$package]}" ] || { echo "ensure-test-packages: ${BINARY[$package]} still missing" >&2; exit 1; }
done
