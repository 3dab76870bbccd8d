"""Cell inputs and their float64 references, shared by the cells of one case and dtype.

Inputs are seeded (:func:`convbench.suites.plan.ops.make_inputs`), rounded to the cell's dtype, and
the reference is computed from the rounded values, so an error is the kernel's own.  For large
cases of per-image operators the reference covers the first image only.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from convbench import reference as ref_module

from ..plan import ops
from ..plan.backends import torch_dtype
from . import accuracy


class InputCache:
    """Inputs (CPU tensors in the cell dtype) and the float64 reference of the last case."""

    def __init__(self, seed: int, check_max_flops: float):
        self.seed, self.check_max_flops = seed, check_max_flops
        self._key = None
        self._value = None

    def get(self, case, dtype: str, *, reference: bool = True):
        """(tensors, reference or exception, images checked) for ``case`` in ``dtype``.

        ``reference=False`` (later timing rounds) builds the same inputs without the float64
        reference, which is then ``None``."""
        key = (case, "fp32" if dtype == "tf32" else dtype)
        if key != self._key or (reference and self._value[1] is None):
            self._key, self._value = key, None  # drop the previous case first (memory)
            self._value = self._build(case, key[1], reference)
        return self._value

    def _build(self, case, dtype: str, reference: bool):
        arrays = ops.make_inputs(case, self.seed)
        tdtype = torch_dtype(dtype)
        tensors = {k: (None if a is None else torch.from_numpy(a).to(tdtype)) for k, a in arrays.items()}
        images = case.geom.n
        if case.flops > self.check_max_flops and ops.per_image(case):
            images = 1
        if not reference:
            return tensors, None, images
        exact = {k: (None if t is None else accuracy.as_ref(t[:images] if k == "input" else t).copy())
                 for k, t in tensors.items()}
        try:
            ref = np.asarray(ops.call(ref_module, replace_batch(case, images), exact), dtype=np.float64)
        except Exception as exc:  # a missing or failing reference fails the cells, not the run
            ref = exc
        return tensors, ref, images


def replace_batch(case, n: int):
    """``case`` with batch ``n`` (the reference of a checked slice)."""
    if n == case.geom.n:
        return case
    return replace(case, geom=replace(case.geom, n=n))
