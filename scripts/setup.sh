#!/usr/bin/env bash
# Create (or reuse) .venv with the pinned CPU working set and convbench installed editable.
# Idempotent: a second run only checks that the pins are satisfied.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.convbench-installed
if [ ! -f "$stamp" ] || ! cmp -s requirements-cpu.txt "$stamp"; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-cpu.txt
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
    cp requirements-cpu.txt "$stamp"
fi
