#!/usr/bin/env bash
# Install guardmail into ./.venv (idempotent). Usage: bash scripts/install.sh [--dev]
# --dev also installs the test and lint tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "guardmail needs Python 3.11 or newer ($PY)" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    if ! "$PY" -m venv .venv 2>/dev/null; then
        # Debian's python3 needs python3-venv for ensurepip.
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null
            rm -rf .venv
            "$PY" -m venv .venv
        else
            echo "python3 -m venv failed: install python3-venv" >&2
            exit 1
        fi
    fi
fi
extra=""
[ "${1:-}" = "--dev" ] && extra="[dev]"
stamp=".venv/.guardmail-installed$extra"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".$extra"
    touch "$stamp"
fi
