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


#: seed offset of the second input set (any value far from the run's ``--seed`` offsets)
VARIANT_SEED_STEP = 1_000_003


class InputCache:
    """Inputs (CPU tensors in the cell dtype) and the float64 reference of the last case, for
    each input set: ``variant=0`` is the set every cell is timed on, ``variant=1`` a second,
    independently drawn set that each cell is checked on once more (a cached or replayed result
    cannot pass both)."""

    def __init__(self, seed: int, check_max_flops: float):
        self.seed, self.check_max_flops = seed, check_max_flops
        self._slots: dict[int, tuple] = {}

    def get(self, case, dtype: str, *, reference: bool = True, variant: int = 0):
        """(tensors, reference or exception, images checked) for ``case`` in ``dtype``.

        ``reference=False`` (later timing rounds) builds the same inputs without the float64
        reference, which is then ``None``."""
        key = (case, "fp32" if dtype == "tf32" else dtype)
        slot = self._slots.get(variant)
        if slot is None or slot[0] != key or (reference and slot[1][1] is None):
            self._slots.pop(variant, None)  # drop the previous case first (memory)
            self._slots[variant] = (key, self._build(case, key[1], reference, variant))
        return self._slots[variant][1]

    def _build(self, case, dtype: str, reference: bool, variant: int = 0):
        arrays = ops.make_inputs(case, self.seed + VARIANT_SEED_STEP * variant)
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
            ref = ops.call(ref_module, replace_batch(case, images), exact)
            ref = (tuple(np.asarray(r, dtype=np.float64) for r in ref) if isinstance(ref, tuple)
                   else np.asarray(ref, dtype=np.float64))
        except Exception as exc:  # a missing or failing reference fails the cells, not the run
            ref = exc
        return tensors, ref, images


def replace_batch(case, n: int):
    """``case`` with batch ``n`` (the reference of a checked slice)."""
    if n == case.geom.n:
        return case
    return replace(case, geom=replace(case.geom, n=n))
