#!/usr/bin/env bash
# The one command for a GPU session (about 8.5 minutes on an H100/H200): environment and peaks, the
# GPU tests, the suites that matter most against cuDNN, an A/A calibration and the
# static-vs-measured table, into reports/gpu/<gpu>-<date>/ (commit that folder).
#
#   scripts/gpu_check.sh --plan          the steps and their estimated seconds (runs nothing)
#   scripts/gpu_check.sh                 run them; stops cleanly at --budget-s (default 510)
#   scripts/gpu_check.sh --cpu --out D   the same steps, tiny, under the interpreter (plumbing)
#
# On the GPU machine use its own torch/triton: `pip install --no-deps --no-build-isolation -e .`
# first (or PYTHONPATH to an installed copy); PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
exec "$PY" -m convbench gpu-check "$@"
