"""The interpreter's int32 overflow sanitizer: off by default (it costs half the interpreter's
time and cannot fire at the shapes the interpreter runs), on with CONVBENCH_INTERPRET_OVERFLOW_CHECKS=1."""

import os
import subprocess
import sys

import pytest
import torch
import triton
import triton.language as tl

from convbench.kernels import _common
from convbench.runtime import OVERFLOW_CHECKS_ENV, interpreter_overflow_checks_requested

pytestmark = pytest.mark.skipif(not _common.INTERPRETER_MODE, reason="the sanitizer switch is the interpreter's")


@triton.jit
def _scale_kernel(x_ptr, y_ptr, factor):
    offs = tl.arange(0, 4)
    tl.store(y_ptr + offs, tl.load(x_ptr + offs) * factor)


def _scale(x, factor):
    y = torch.empty_like(x)
    _scale_kernel[(1,)](x, y, factor)
    return y


def test_overflow_checks_are_off_by_default_and_switch_on():
    x = torch.full((4,), 2**30, dtype=torch.int32)
    if not interpreter_overflow_checks_requested():
        assert _common.interpreter_overflow_checks() is False
    try:
        assert _common.set_interpreter_overflow_checks(False)
        assert _common.interpreter_overflow_checks() is False
        assert (_scale(x, 4) == 0).all()  # 2**32 wraps to 0 in int32, unchecked
        assert _common.set_interpreter_overflow_checks(True)
        with pytest.raises(Exception, match="overflow"):
            _scale(x, 4)
        assert (_scale(x, 1) == 2**30).all()  # no overflow, no complaint
    finally:
        _common.set_interpreter_overflow_checks(interpreter_overflow_checks_requested())


def test_environment_variable_keeps_the_checks_and_env_json_says_so():
    code = ("from convbench.kernels import _common; from convbench.suites.measure import env; "
            "print(_common.interpreter_overflow_checks(), env.collect('cpu')['interpret_overflow_checks'])")
    for value, expect in (("1", "True True"), ("0", "False False")):
        environ = {**os.environ, "TRITON_INTERPRET": "1", OVERFLOW_CHECKS_ENV: value}
        out = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True)
        assert out.stdout.split()[-2:] == expect.split(), out.stdout + out.stderr
