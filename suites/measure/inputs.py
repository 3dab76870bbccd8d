"""Cell inputs and their float64 references, shared by the cells of one case and dtype.

Inputs are seeded (:func:`convbench.suites.plan.ops.make_inputs`), rounded to the cell's dtype, and
the reference is computed from the rounded values, so an error is the kernel's own.  For large
cases of per-image operators the reference covers the first image only.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import numpy as np
import torch

from convbench import reference as ref_module

from ..plan import ops
from ..plan.backends import torch_dtype
from ..plan.shapes import Case
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
            if case.family == "network" and case.mode == "fwd+bwd":
                ref = step_reference(case, exact, ref)
        except Exception as exc:  # a missing or failing reference fails the cells, not the run
            ref = exc
        return tensors, ref, images


def replace_batch(case, n: int):
    """``case`` with batch ``n`` (the reference of a checked slice)."""
    if n == case.geom.n:
        return case
    return replace(case, geom=replace(case.geom, n=n))


@dataclass(frozen=True)
class StepReference:
    """A training step's float64 reference and what it takes to check against it.

    ``parts``: the logits, then each parameter's gradient (named in ``names``).  A freshly
    initialised network's training step is ill-conditioned (batch norm with batch statistics
    cancels in its backward; the gradients grow layer by layer), so a fixed tolerance would be
    either loose or wrong: torch's own fp32 step differs from float64 by 0.1% on MobileNetV2 and
    4% on ResNet-50 at 4 x 32 x 32.  ``probe_max``/``probe_rms``: that fp32 step's relative
    errors per part, from the same operands on the CPU (the cell's tolerances scale with them).
    ``zero``: parts that are structurally zero (a bias whose shift the next batch norm removes:
    their float64 values are rounding, ``ops.STRUCTURAL_ZERO`` x the step's largest gradient
    element or less, and their relative error means nothing); ``scale``: per part, what a
    structurally zero part's errors are relative to: the largest gradient element of the live
    parameters of its module (a batch norm's weight), else of the step."""

    parts: tuple
    names: tuple
    probe_max: tuple
    probe_rms: tuple
    zero: tuple
    scale: tuple


def step_reference(case: Case, exact: dict, parts: tuple) -> StepReference:
    """Wrap the float64 step ``parts`` with the names, the fp32 probe's errors, the structural zeros."""
    from convbench import models  # lazily: the network cells only

    g = case.geom
    net = ops.network_model(g.model, g.h, g.w, g.classes, ops.network_seed(case))
    model = models.layers.training_mode(copy.deepcopy(net).float())
    x, dy = (torch.from_numpy(exact[k]).float() for k in ("input", "grad_output"))
    y = model(x)
    probe = (y.detach(), *torch.autograd.grad(y, list(model.parameters()), dy))
    errors = [accuracy.errors(a.double().numpy(), r) for a, r in zip(probe, parts)]
    largest = [float(np.max(np.abs(r))) if r.size else 0.0 for r in parts]
    step = max(largest[1:], default=0.0)
    zero = tuple(i > 0 and largest[i] <= ops.STRUCTURAL_ZERO * step for i in range(len(parts)))
    modules = ["", *(name.rpartition(".")[0] for name, _ in net.named_parameters())]
    scale = []
    for i, module in enumerate(modules):
        live = [largest[j] for j in range(1, len(parts)) if modules[j] == module and not zero[j]]
        scale.append(max(live) if live and zero[i] else step)
    names = ("y", *(f"d[{name}]" for name, _ in net.named_parameters()))
    return StepReference(tuple(parts), names, tuple(e[0] for e in errors), tuple(e[1] for e in errors), zero,
                         tuple(scale))
