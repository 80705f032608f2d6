#!/usr/bin/env bash
# Debian packages only the benchmarks use (idempotent; needs root and apt-get).
# bench/smtp_filter.py runs rspamd privately (own config, socket, no redis); the system service
# the package ships is never started.
set -euo pipefail
PKGS="rspamd"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "missing Debian packages:$missing (run as root with apt-get, or install them)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Keep package scripts from starting the system daemon: the bench runs its own instance.
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
fi
trap '[ $created_policy = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
apt-get update -q >/dev/null
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing >/dev/null
