"""Compile the Triton kernels of a GPU run ahead of its timed cells, in parallel processes.

Triton compiles a kernel at its first launch, one at a time, inside the first (untimed but
serial) call of each cell.  Before the cells run, :func:`precompile` builds the launches of every
GEMM-family conv2d cell (``implicit_gemm``, ``im2col``: the launch is rebuilt on meta tensors with
the cell's own geometry, dtype, layout and config) and compiles them for the device's target with
the static analysis's worker pool (:mod:`convbench.suites.static`, ``TRITON_INTERPRET`` unset),
which writes Triton's on-disk kernel cache; a launch whose specialisation matches then loads the
cubin instead of compiling it.  Best effort: a compile error here is counted, not raised (the
cell's own launch will report it).  Direct, Winograd and FFT launches are not rebuilt here.
"""

from __future__ import annotations

import os
import time

from ..plan.backends import input_precision, torch_dtype
from ..plan.cells import Cell


def cell_specs(cells) -> list:
    # lazily: TRITON_INTERPRET must be decided before convbench.kernels is imported
    from convbench.kernels import conv

    specs, seen = [], set()
    for cell in cells:
        if cell.op != "conv2d" or cell.case.mode != "fwd" or cell.backend != "triton" \
                or cell.algorithm not in conv.LAUNCH_ALGORITHMS \
                or cell.dtype not in ("fp32", "tf32", "fp16", "bf16"):
            continue
        launches = conv.meta_launches(cell.algorithm, cell.case.geom, torch_dtype(cell.dtype), cell.layout,
                                      input_precision(cell.dtype))
        for i, run in enumerate(launches):
            spec = run.static_spec(f"precompile/{cell.key}/{i}", default=False, expect_tensor_cores=False)
            ident = (spec.fn, tuple(sorted(spec.signature.items())), tuple(sorted(spec.constexprs.items())),
                     spec.divisible_by_16, spec.num_warps, spec.num_stages)
            if ident not in seen:
                seen.add(ident)
                specs.append(spec)
    return specs


def precompile(cells: list[Cell], target: str, jobs: int | None = None) -> dict:
    """Compile the launches of ``cells`` for ``target`` in ``jobs`` processes; a summary for env.json."""
    from convbench.suites import static  # lazily: the static analysis only on a GPU run

    t0 = time.perf_counter()
    specs = cell_specs(cells)
    if not specs:
        return {"specs": 0, "seconds": 0.0, "errors": 0}
    results = static.analyse_all([target], specs, jobs=jobs or os.cpu_count() or 1, cache=False)
    return {"specs": len(specs), "seconds": round(time.perf_counter() - t0, 1),
            "errors": sum(1 for r in results if r.error), "target": target}
