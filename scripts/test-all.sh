#!/usr/bin/env bash
# Install everything (Debian packages when root, the venv with dev tools) and run the whole suite:
# lint, types, unit and integration tests. This is README's second command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-packages.sh
bash scripts/install.sh --dev
V=.venv/bin
echo "== ruff"; $V/ruff check guardmail tests bench tools
echo "== ruff format"; $V/ruff format --check guardmail tests bench tools
echo "== mypy"; $V/mypy
echo "== pytest (branch coverage; with CI=true an unlisted skip fails: tests/allowed-skips.txt)"
$V/pytest --cov=guardmail --cov-branch --cov-report=
echo "== coverage floors"; $V/python tools/coverage_floor.py
echo "== bench (short run)"; $V/python bench/decide.py --quick
