#!/usr/bin/env bash
# GPU-free performance regression gate: compile every Triton kernel spec for sm_80 and sm_90 on the
# CPU and compare registers, spills, shared memory and tensor-core instructions with the committed
# baseline (reports/static/baseline-triton<version>.json).  Exit status 1 on a regression.
#
#   scripts/static_gate.sh              compare (extra arguments go to `convbench static`, e.g. -j 4)
#   scripts/static_gate.sh --update     regenerate the baseline after an intended change
#
# Results are cached (~/.cache/convbench/static, or $CONVBENCH_CACHE_DIR): run it before the
# tests and tests/test_static.py reuses every compile.
set -euo pipefail
cd "$(dirname "$0")/.."
# PYTHON (or .venv/bin/python, else python3) must have convbench installed (scripts/setup.sh does)
PY=${PYTHON:-}
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
convbench() { "$PY" -m convbench "$@"; }
version=$("$PY" -c "import triton; print(triton.__version__)")
baseline="reports/static/baseline-triton${version}.json"
if [ "${1:-}" = "--update" ]; then
    shift
    convbench static --target sm_80,sm_90 --format json --out "$baseline" -q "$@"
    echo "static gate: wrote $baseline"
    exit 0
fi
if [ ! -f "$baseline" ]; then
    echo "static gate: no baseline for triton $version ($baseline); create it with $0 --update" >&2
    exit 1
fi
convbench static --target sm_80,sm_90 --compare "$baseline" -q "$@"
