#!/usr/bin/env bash
# Set up .venv (pinned CPU working set) and run the whole test suite.
# Triton kernels run under the interpreter (TRITON_INTERPRET=1, set in tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python -m pytest -q -n 2 "$@"
