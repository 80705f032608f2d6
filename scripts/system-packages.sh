#!/usr/bin/env bash
# Debian packages the integration tests start (idempotent; needs root and apt-get).
# The system services these packages ship are never used: tests run private instances.
set -euo pipefail
PKGS="dovecot-imapd dovecot-lmtpd dovecot-sieve dovecot-managesieved prosody postfix ca-certificates openssl poppler-utils imapfilter neomutt tmux xvfb xdotool thunderbird gajim dbus imagemagick zip"
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
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
# Keep package scripts from starting the system daemons: tests run their own instances.
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
