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

from ..plan.cells import Cell


def cell_specs(cells) -> list:
    # lazily: TRITON_INTERPRET must be decided before convbench.kernels is imported
    import torch

    from convbench.kernels import conv  # lazily, as torch above
    from convbench.kernels.conv import im2col, implicit_gemm  # lazily, as torch above

    specs, seen = [], set()
    for cell in cells:
        if cell.op != "conv2d" or cell.backend != "triton" or cell.algorithm not in ("implicit_gemm", "im2col"):
            continue
        geom = cell.case.geom
        dtype = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16,
                 "bf16": torch.bfloat16}.get(cell.dtype)
        if dtype is None:
            continue
        precision = "tf32" if cell.dtype == "tf32" else "ieee"
        fmt = torch.channels_last if cell.layout == "nhwc" else torch.contiguous_format
        x = torch.empty(geom.input_shape, dtype=dtype, device="meta").contiguous(memory_format=fmt)
        w = torch.empty(geom.weight_shape, dtype=dtype, device="meta")
        b = torch.empty(geom.k, dtype=dtype, device="meta")
        algo = conv.BY_NAME[cell.algorithm]
        cfg = algo.default_config(geom, dtype, cell.layout == "nhwc")
        if cell.algorithm == "implicit_gemm":
            launches = [implicit_gemm._plan_unchecked(x, w, b, geom, precision, cfg)[0]]
        else:
            launches = list(im2col._plan_unchecked(x, w, b, geom, precision, cfg)[:2])
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
