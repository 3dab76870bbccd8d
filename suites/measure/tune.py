"""Tuning a suite's conv2d cells with the suite's own timer and the static analysis's pruning.

``convbench tune`` and ``convbench run --tune`` call :func:`tune_cell` for each Triton conv2d
cell.  On a GPU the candidates are the algorithm's configs that can run the cell
(:func:`convbench.kernels.conv.candidates`); each is first compiled for the device's target by
the static analysis (:mod:`convbench.suites.static`, cached on disk) and dropped when it spills
or needs more shared memory than the target has; the rest are timed with
:func:`convbench.suites.measure.timing.measure` (warm-up, L2 flush before every sample, the
run's stopping rule), and the fastest goes into the persistent tuning cache
(:mod:`convbench.kernels.tuning`).  Under the CPU interpreter nothing is tuned: the result says
``"not tuned: no GPU"``, and the cell runs with its heuristic config.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..plan.backends import input_precision
from ..plan.cells import Cell
from .stats import StopRule
from .timing import measure


@dataclass
class TuneOutcome:
    cell: str
    status: str  # "tuned", "cached", "not tuned: no GPU", "error"
    config: str = ""
    ms: float | None = None
    tuning_s: float = 0.0
    candidates: int = 0
    pruned: int = 0
    message: str = ""


def suite_timer(rule: StopRule):
    """The run's timer as a tuning timer: the median of :func:`measure`'s samples."""
    def timer(fn) -> float:
        fn()
        torch.cuda.synchronize()
        m = measure(fn, "cuda", rule, flush_l2=True)
        samples = sorted(m.samples_ms)
        return samples[len(samples) // 2]
    return timer


def target_of(device: torch.device) -> str:
    major, minor = torch.cuda.get_device_capability(device)
    return f"sm_{major}{minor}"


def static_pruner(algo, geom, x, weight, bias, precision: str, target: str):
    """Prune by the compiled kernel for ``target``: spills or shared memory over the limit.

    GEMM-family configs are compiled for exactly this problem (the launch built on meta tensors
    carries its specialisation); other algorithms' configs by the static specs of the kernel
    check whose config part the config's name starts with (direct: the whole name; Winograd and
    FFT: their GEMM stage, the part that can spill).
    """
    # lazily, like every kernels import of the suites: TRITON_INTERPRET must be decided first
    from convbench import kernels
    from convbench.kernels import conv, tuning  # lazily, as above
    from convbench.suites import static  # lazily: the static analysis only when tuning prunes

    family = f"conv.{algo.name.split('_')[0]}"
    other_specs = [] if algo.name in conv.LAUNCH_ALGORITHMS else \
        [s for s in kernels.static_specs() if s.name.startswith(family)]

    layout = tuning.layout_of(x)

    def prune(cfg) -> str | None:
        launches = conv.meta_launches(algo.name, geom, x.dtype, layout, precision, cfg) \
            if algo.name in conv.LAUNCH_ALGORITHMS else None
        if launches is not None:
            specs = [run.static_spec(f"tune/{algo.name}/{cfg.name}/{i}", default=False, expect_tensor_cores=False)
                     for i, run in enumerate(launches)]
        else:
            specs = [s for s in other_specs if cfg.name.startswith(s.name.rsplit("/", 1)[-1])]
        for spec in specs:
            r = static.analyse(spec, target)
            if r.error:
                return f"does not compile for {target}: {r.error.splitlines()[0][:120]}"
            if r.spills:
                return f"spills on {target} ({r.spill_store_bytes} B stored)"
            if r.total_shared_bytes > r.shared_limit_bytes:
                return f"needs {r.total_shared_bytes} B of shared memory, {target} has {r.shared_limit_bytes}"
        return None

    return prune


def tune_cell(cell: Cell, tensors: dict, rule: StopRule, *, force: bool = False) -> TuneOutcome:
    """Tune one Triton conv2d cell (``tensors`` on the cell's device, in its layout)."""
    # lazily: TRITON_INTERPRET must be decided first
    from convbench import kernels
    from convbench.kernels import conv  # lazily, as above

    x, w, b = tensors["input"], tensors["weight"], tensors.get("bias")
    precision = input_precision(cell.dtype)
    if not conv.can_tune(x):
        return TuneOutcome(str(cell), conv.NOT_TUNED)
    algo = conv.algorithm_for(cell.algorithm, cell.case.geom, x.dtype)
    cache = kernels.tuning.default_cache()
    key = conv.tune_key(algo, cell.case.geom, x, precision)
    hit = None if force else cache.get(key)
    if hit is not None:
        return TuneOutcome(str(cell), "cached", hit.config, hit.ms, 0.0, len(hit.times_ms) + len(hit.pruned),
                           len(hit.pruned))
    prune = static_pruner(algo, cell.case.geom, x, w, b, precision, target_of(x.device))
    try:
        result = conv.tune_conv2d(x, w, b, cell.case.geom, algo.name, input_precision=precision,
                                  timer=suite_timer(rule), prune=prune, cache=cache)
    except Exception as exc:
        return TuneOutcome(str(cell), "error", message=f"{type(exc).__name__}: {exc}")
    return TuneOutcome(str(cell), "tuned", result.config, result.ms, result.tuning_s,
                       len(result.times_ms) + len(result.pruned) + len(result.failed), len(result.pruned))


def cell_config(cell: Cell, tune: bool) -> str | None:
    """The ``config=`` a cell is prepared with: ``"tune"`` for Triton conv2d cells under
    ``--tune`` (the cache :func:`tune_cell` filled), else None (the heuristic).  A training
    step's forward is tuned like a forward cell; dgrad and wgrad have no tuned configs yet."""
    forward = cell.op == "conv2d" and cell.case.mode in ("fwd", "fwd+bwd")
    return "tune" if tune and forward and cell.backend.startswith("triton") else None


def prepare(backend, cell: Cell, tensors: dict, tune: bool):
    """``backend.prepare`` for a cell, with its config under ``--tune`` (every round the same)."""
    config = cell_config(cell, tune)
    if config is None:
        return backend.prepare(cell.case, cell.algorithm, cell.dtype, cell.layout, tensors)
    return backend.prepare(cell.case, cell.algorithm, cell.dtype, cell.layout, tensors, config=config)
