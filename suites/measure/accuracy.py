"""The tolerance model and error measures: one implementation, used by the runner and the tests.

Errors are measured the way the design notes tabulate them: ``max|out - ref| / max|ref|``
(``max_rel``) and the RMS of the error over the RMS of the reference (``rms_rel``), with ``ref``
the float64 reference computed *from the operands the kernel actually saw* (inputs already
rounded to the kernel's dtype), so what remains is the kernel's own error:

* rounding of the output to its dtype:            ~ u(out dtype)
* rounding of operands inside the kernel (tf32 products, Winograd/FFT transformed operands
  stored in fp16/bf16):                           ~ u(operand dtype), times the algorithm's scale
* accumulation over a reduction of length L:      ~ u(accumulator) * sqrt(L) (random-walk growth;
  fp32 unless told otherwise)

``tolerance`` adds these with a safety factor of 8; nothing is a single global atol.
``tests/_compare.py`` re-exports these names, so tests and benchmark cells judge alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

#: unit roundoff 2**-(mantissa bits + 1)
UNIT_ROUNDOFF = {
    torch.float64: 2.0**-53,
    torch.float32: 2.0**-24,
    torch.float16: 2.0**-11,
    torch.bfloat16: 2.0**-8,
    "tf32": 2.0**-11,
    # 3xTF32 (tl.dot input_precision="tf32x3"): an fp32 operand as two TF32 parts, three
    # tensor-core products; the dropped low x low product and the low part's rounding ~ 2^-22
    "tf32x3": 2.0**-22,
}
SAFETY = 8.0


def tolerance(dtype: torch.dtype, reduction_length: int = 1, *, algorithm_scale: float = 1.0,
              input_precision: str = "ieee", operand_dtype=None,
              accumulate_dtype: torch.dtype = torch.float32) -> float:
    """Tolerated ``max_rel`` for a kernel with outputs in ``dtype`` reducing ``reduction_length`` terms.

    ``operand_dtype``: the dtype operands are rounded to inside the kernel (None: not rounded
    beyond the input dtype).  fp32 with ``input_precision="tf32"`` rounds operands to tf32.
    ``accumulate_dtype``: the accumulator (fp32 for every Triton kernel; float64 for the NumPy
    references timed as a backend).
    """
    u_out = UNIT_ROUNDOFF[dtype]
    if operand_dtype is None and dtype == torch.float32 and input_precision == "tf32":
        operand_dtype = "tf32"
    u_op = UNIT_ROUNDOFF[operand_dtype] if operand_dtype is not None else 0.0
    u_acc = UNIT_ROUNDOFF[accumulate_dtype]
    err = u_out + 2 * u_op + u_acc * math.sqrt(max(reduction_length, 1))
    return SAFETY * algorithm_scale * err


def _as_f64(actual) -> np.ndarray:
    if isinstance(actual, torch.Tensor):
        return actual.detach().cpu().double().numpy()
    return np.asarray(actual, np.float64)


def errors(actual, expected: np.ndarray) -> tuple[float, float]:
    """(max_rel, rms_rel) of ``actual`` against the float64 ``expected``."""
    a = _as_f64(actual)
    diff = a - expected
    scale = np.max(np.abs(expected)) if expected.size else 0.0
    scale = scale if scale > 0 else 1.0
    rms = np.sqrt(np.mean(expected**2)) if expected.size else 0.0
    rms = rms if rms > 0 else 1.0
    if not diff.size:
        return 0.0, 0.0
    return float(np.max(np.abs(diff)) / scale), float(np.sqrt(np.mean(diff**2)) / rms)


@dataclass(frozen=True)
class Check:
    """The verdict on one output: errors over the finite reference elements, and why it failed."""

    max_rel: float
    rms_rel: float
    tol: float
    passed: bool
    message: str = ""


def check(actual, expected: np.ndarray, tol: float, what: str = "") -> Check:
    """Same shape, NaN exactly where the reference has NaN, equal infinities, ``max_rel <= tol``."""
    a = _as_f64(actual)
    nan = float("nan")
    if a.shape != expected.shape:
        return Check(nan, nan, tol, False, f"{what}: shape {a.shape} != reference {expected.shape}")
    bad_nan = np.isnan(a) != np.isnan(expected)
    if bad_nan.any():
        first = tuple(int(i) for i in np.argwhere(bad_nan)[0])
        return Check(nan, nan, tol, False,
                     f"{what}: NaN mismatch at {int(bad_nan.sum())} of {a.size} elements, first at "
                     f"{first} (unwritten output or lost NaN)")
    inf = np.isinf(expected)
    if not np.array_equal(a[inf], expected[inf]):
        return Check(nan, nan, tol, False, f"{what}: infinities differ from the reference")
    finite = np.isfinite(expected)
    max_rel, rms_rel = errors(a[finite], expected[finite])
    if not max_rel <= tol:
        return Check(max_rel, rms_rel, tol, False,
                     f"{what}: max_rel {max_rel:.3e} > tol {tol:.3e} (rms_rel {rms_rel:.3e})")
    return Check(max_rel, rms_rel, tol, True)


#: adversarial examples: the share of elements allowed to differ by a flipped gradient sign
MAX_FLIPPED = 0.02


def check_steps(actual, expected: np.ndarray, tol: float, what: str = "", max_flipped: float = MAX_FLIPPED) -> Check:
    """Adversarial examples against the float64 attack.  A step is ``sign(gradient)``: where the
    true gradient is within rounding of zero (a ReLU at its kink, a pixel the loss ignores), the
    two implementations may step opposite ways, and that element then differs by a whole step.
    So: every element within ``tol`` (relative to the largest reference value) except a share of
    at most ``max_flipped``; ``max_rel`` is measured over the agreeing elements and the message
    names the share that flipped."""
    a = _as_f64(actual)
    nan = float("nan")
    if a.shape != expected.shape:
        return Check(nan, nan, tol, False, f"{what}: shape {a.shape} != reference {expected.shape}")
    if np.isnan(a).any():
        return Check(nan, nan, tol, False, f"{what}: NaN in {int(np.isnan(a).sum())} of {a.size} elements")
    scale = float(np.max(np.abs(expected))) if expected.size else 1.0
    diff = np.abs(a - expected) / (scale if scale > 0 else 1.0)
    off = diff > tol
    share = float(off.mean()) if off.size else 0.0
    agree = diff[~off]
    max_rel = float(agree.max()) if agree.size else 0.0
    rms = float(np.sqrt(np.mean(agree**2))) if agree.size else 0.0
    if share > max_flipped:
        return Check(max_rel, rms, tol, False, f"{what}: {share:.1%} of the elements differ by more than tol "
                                               f"{tol:.1e} (at most {max_flipped:.0%} may flip a sign step)")
    return Check(max_rel, rms, tol, True, f"{share:.2%} of the elements flipped a sign step" if share else "")


def assert_close(actual, expected: np.ndarray, tol: float, what: str = "") -> float:
    """Assert :func:`check` passes; returns max_rel."""
    result = check(actual, expected, tol, what)
    assert result.passed, result.message
    return result.max_rel


def rounded(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t`` rounded to ``dtype`` (the operand as the kernel will see it)."""
    return t.to(dtype)


def as_ref(t: torch.Tensor) -> np.ndarray:
    """The exact float64 value of a (possibly low-precision) tensor, for the reference."""
    return t.detach().cpu().double().numpy()
