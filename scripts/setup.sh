#!/usr/bin/env bash
# Create (or reuse) .venv with the pinned CPU working set and convbench installed editable.
# Idempotent: a second run only checks that the pins and pyproject.toml are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# the pins and the package metadata (packages, entry points): a change of either reinstalls
stamp=.venv/.convbench-installed
want=$(cat requirements-cpu.txt pyproject.toml)
if [ ! -f "$stamp" ] || [ "$want" != "$(cat "$stamp")" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-cpu.txt
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
    printf '%s' "$want" > "$stamp"
fi
