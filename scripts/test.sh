#!/usr/bin/env bash
# Set up .venv (pinned CPU working set), run the GPU-free static performance gate, then the tests.
#
# 1. scripts/static_gate.sh compiles every Triton kernel config for sm_80 and sm_90 on the CPU
#    and compares registers/spills/shared memory/tensor-core use with reports/static/.
#    It runs first so tests/test_static.py finds every compile in the result cache.
# 2. pytest over tests/ (with the optional Ray and demo extras installed first, requirements-ray.txt and
#    requirements-demo.txt) (Triton kernels under TRITON_INTERPRET=1, set in tests/conftest.py).
# 3. headless Chromium (Debian's package, installed where missing and allowed) for the report's browser test.
# The exit status is non-zero when either step fails; pytest's summary is the last output.
set -uo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh || exit $?
# the optional Ray extra, so that the --executor ray tests run (pinned; installs from local disk)
if ! .venv/bin/python -c "import ray" 2>/dev/null; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-ray.txt || exit $?
fi
# scikit-learn for `convbench attack-demo` and its test (pinned; installs from local disk)
if ! .venv/bin/python -c "import sklearn" 2>/dev/null; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-demo.txt || exit $?
fi
# Chromium for the browser test of the reports (tests/test_report_browser.py; skipped without it):
# Debian's package where it is missing and this machine lets us install it
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    { timeout 300 apt-get install -y -qq --no-install-recommends chromium \
        || { timeout 300 apt-get update -qq && timeout 300 apt-get install -y -qq --no-install-recommends chromium; }
    } >/dev/null 2>&1 || echo "chromium could not be installed: the browser test will be skipped" >&2
fi
gate=0
./scripts/static_gate.sh || gate=$?
.venv/bin/python -m pytest -q -n 2 "$@"
tests=$?
if [ "$gate" -ne 0 ]; then
    echo "static gate FAILED (exit $gate): see the flags above; refresh the baseline with" \
         "scripts/static_gate.sh --update only for an intended change" >&2
fi
[ "$tests" -ne 0 ] && exit "$tests"
exit "$gate"
