#!/usr/bin/env bash
# Make sure Debian's chromium is installed for the admin browser test (tests/test_admin_browser.py).
# Idempotent and silent when the browser is already there; installs it otherwise (needs root).
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-browser: $CHROMIUM is missing; install it as root: apt-get install -y chromium" >&2
    exit 1
fi

echo "ensure-browser: installing chromium (Debian package) for the browser test..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
"$CHROMIUM" --version >&2
