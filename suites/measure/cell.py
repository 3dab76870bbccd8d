"""One cell: build its inputs, prepare it on its backend, check it, guard it, time it.

:func:`run_cell` is what every executor runs per cell: the runner's own loop, the ``--gpus``
device workers (:mod:`.parallel`) and the Ray tasks (:mod:`.ray_executor`); the whole-run logic
(rounds, resume, env, files) is :mod:`.runner`'s.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np

from ..plan import ops
from ..plan.backends import ITEMSIZE, Backend, input_precision, to_device, torch_dtype
from ..plan.cells import Cell
from . import accuracy, guards
from .env import tf32_flags
from .inputs import InputCache, StepReference
from .records import Record
from .rounds import add_round
from .stats import StopRule
from .timing import first_call, measure
from .tune import cell_config, prepare, tune_cell

TRANSFORM_ALGORITHMS = ("winograd_f2", "winograd_f4", "fft")
#: GPU cells faster than this (event-timed median, ms) are re-timed with CUDA graphs by default
GRAPH_BELOW_MS = 0.1


@dataclass
class RunOptions:
    rule: StopRule = field(default_factory=StopRule)
    flush_l2: bool = True
    #: CUDA-graph timing: True always, False never, None (default) for GPU cells whose event-timed
    #: median is under GRAPH_BELOW_MS (launch-bound: k calls per replay amortise the launch)
    graph: bool | None = None
    seed: int = 0
    #: above this many nominal operations, per-image ops are checked on the first image only
    check_max_flops: float = 2e9
    measure_peaks: bool = True
    progress: bool = True
    #: torch CPU threads; None: 1 (see configure_threads)
    threads: int | None = None
    #: timing rounds: each cell is sampled in this many passes over the whole selection, spread
    #: over this many processes (:mod:`convbench.suites.measure.rounds`); None: the device's default
    rounds: int | None = None
    processes: int | None = None
    #: tune Triton conv2d cells before timing them (``convbench run --tune``; GPU only)
    tune: bool = False
    #: GPU: compile the GEMM-family launches in parallel before the cells run (:mod:`.precompile`)
    precompile: bool = True

    def __post_init__(self) -> None:
        if self.rounds is not None and self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if self.processes is not None and self.processes < 1:
            raise ValueError(f"processes must be >= 1, got {self.processes}")


# --------------------------------------------------------------------------------------------
# one cell
# --------------------------------------------------------------------------------------------
def algorithm_error_scale(algorithm: str) -> float:
    try:
        from convbench import kernels  # lazily: TRITON_INTERPRET must be decided first
    except Exception:
        return 1.0
    entry = {a.name: a for a in kernels.ALGORITHMS}.get(algorithm)
    return float(entry.error_scale) if entry is not None else 1.0


def cell_tolerance(cell: Cell, reduction_length: int | None = None) -> float:
    """The tolerance model applied to one cell (see :mod:`.accuracy`); ``reduction_length``
    overrides the case's (one output of a multi-output call)."""
    tdtype = torch_dtype(cell.dtype)
    scale = algorithm_error_scale(cell.algorithm) if cell.op in ("conv2d", "network") else 1.0
    operand = None
    low_precision = cell.dtype in ("fp16", "bf16")
    transformed = cell.algorithm in TRANSFORM_ALGORITHMS or cell.backend == "torch"  # cuDNN may pick one
    if low_precision and cell.op == "conv2d" and transformed:
        operand = tdtype  # transformed operands are stored in the input dtype
    accumulate = tdtype if cell.dtype == "fp64" else torch_dtype("fp32")
    length = cell.case.reduction_length if reduction_length is None else reduction_length
    tol = accuracy.tolerance(tdtype, length, algorithm_scale=scale,
                             input_precision=input_precision(cell.dtype), operand_dtype=operand,
                             accumulate_dtype=accumulate)
    if cell.case.family == "network":  # each layer's rounding carries forward: the longest conv's x depth
        tol *= cell.case.geom.depth
    return tol


def _checked_images(out, images: int, cell: Cell):
    """The images the reference covers: the first ``images`` of a per-image op's output."""
    return out if images >= cell.case.geom.n else out[:images]


def check_output(cell: Cell, actual, ref) -> accuracy.Check:
    """One output against its reference; a multi-output call (a training step's y, dX, dW, db)
    part by part, each with the tolerance of its own reduction, reporting the worst part."""
    if cell.case.family == "attack":
        return accuracy.check_steps(actual, ref, cell_tolerance(cell), what=str(cell))
    if isinstance(ref, StepReference):
        return _check_step(cell, actual, ref)
    if cell.case.family == "network":
        return accuracy.check(actual, ref, cell_tolerance(cell), what=f"{cell} (tolerance: the longest conv's "
                              f"x {cell.case.geom.depth} conv layers deep)")
    if not isinstance(ref, tuple):
        return accuracy.check(actual, ref, cell_tolerance(cell), what=str(cell))
    if not isinstance(actual, tuple) or len(actual) != len(ref):
        nan = float("nan")
        return accuracy.Check(nan, nan, nan, False, f"{cell}: expected {len(ref)} outputs, got "
                                                    f"{len(actual) if isinstance(actual, tuple) else 1}")
    names = ("y", "dX", "dW", "db")
    checks = [accuracy.check(a, r, cell_tolerance(cell, length), what=f"{cell} {name}")
              for a, r, length, name in zip(actual, ref, cell.case.reduction_lengths, names)]
    failed = [c for c in checks if not c.passed]
    if failed:
        return failed[0]
    return max(checks, key=lambda c: c.max_rel / c.tol if c.tol else 0.0)


def _check_step(cell: Cell, actual, ref: StepReference) -> accuracy.Check:
    """A network training step part by part (logits, each parameter's gradient) against its
    float64 reference (see :class:`StepReference`).  Each part's max and rms relative errors
    must be within the larger of the tolerance model (the forward's; twice that for a gradient,
    which runs the network twice) and ``PROBE_FACTOR`` x torch's own fp32 error there; the rms
    bound catches a dropped or garbage gradient where fp32 itself is far off at some elements.
    A structurally zero part must be zero within the model's tolerance of its module's largest
    live gradient (a batch norm bias: the norm's weight gradient).  Returns the first failure, else the part nearest its tolerance."""
    nan = float("nan")
    if not isinstance(actual, tuple) or len(actual) != len(ref.parts):
        got = len(actual) if isinstance(actual, tuple) else 1
        return accuracy.Check(nan, nan, nan, False, f"{cell}: expected {len(ref.parts)} outputs "
                                                    f"(logits and {len(ref.parts) - 1} gradients), got {got}")
    model = cell_tolerance(cell)
    checks = []
    for i, (a, r, name) in enumerate(zip(actual, ref.parts, ref.names)):
        tol = model * (1 if i == 0 else 2)
        if ref.zero[i]:
            c = _check_zero(a, r, ref.scale[i], tol, f"{cell} {name} (structurally zero: relative to its module's "
                                                     f"largest live gradient {ref.scale[i]:.2e})")
        else:
            tol_max, tol_rms = max(tol, ops.PROBE_FACTOR * ref.probe_max[i]), max(tol, ops.PROBE_FACTOR * ref.probe_rms[i])
            what = (f"{cell} {name} (tolerance: max of the model's {tol:.1e} and {ops.PROBE_FACTOR:g}x torch fp32's "
                    f"error, max {ref.probe_max[i]:.1e} / rms {ref.probe_rms[i]:.1e})")
            c = accuracy.check(a, r, tol_max, what=what)
            if c.passed and not c.rms_rel <= tol_rms:
                c = accuracy.Check(c.max_rel, c.rms_rel, tol_max, False,
                                   f"{what}: rms_rel {c.rms_rel:.3e} > {tol_rms:.3e}")
        checks.append(c)
    failed = [c for c in checks if not c.passed]
    if failed:
        return failed[0]
    return max(checks, key=lambda c: c.max_rel / c.tol if c.tol else 0.0)


def _check_zero(actual, expected: np.ndarray, scale: float, tol: float, what: str) -> accuracy.Check:
    """``actual`` against a structurally zero ``expected``: shape and NaNs as ``accuracy.check``,
    then the errors relative to ``scale`` (not to the part's own rounding-sized values)."""
    a = np.asarray(actual, dtype=np.float64)
    c = accuracy.check(a, expected, float("inf"), what=what)  # shape, NaN and infinity checks only
    if not c.passed:
        return accuracy.Check(c.max_rel, c.rms_rel, tol, False, c.message)
    diff = a - expected
    max_rel = float(np.max(np.abs(diff))) / scale if diff.size else 0.0
    rms_rel = float(np.sqrt(np.mean(diff**2))) / scale if diff.size else 0.0
    if not max_rel <= tol:
        return accuracy.Check(max_rel, rms_rel, tol, False, f"{what}: max_rel {max_rel:.3e} > tol {tol:.3e}")
    return accuracy.Check(max_rel, rms_rel, tol, True)


@contextlib.contextmanager
def poisoned(enabled: bool):
    """Kernel outputs start as NaN (unwritten elements then fail the check)."""
    if not enabled:
        yield
        return
    from convbench.kernels import _common  # lazily: TRITON_INTERPRET must be decided first

    old = _common.POISON_OUTPUTS
    _common.POISON_OUTPUTS = True
    try:
        yield
    finally:
        _common.POISON_OUTPUTS = old


def new_record(cell: Cell, backend: Backend) -> Record:
    case = cell.case
    geometry = {"type": type(case.geom).__name__,
                **{k: getattr(case.geom, k) for k in case.geom.__dataclass_fields__}}
    return Record(suite=cell.suite, op=cell.op, algorithm=cell.algorithm, backend=cell.backend, shape=cell.shape,
                  dtype=cell.dtype, layout=cell.layout, label=case.label, mode=case.mode, count=case.count,
                  geometry=geometry,
                  device=backend.device,
                  flops=case.flops, min_bytes=case.min_bytes(ITEMSIZE[cell.dtype]))


def run_cell(cell: Cell, backend: Backend, cache: InputCache, options: RunOptions) -> Record:
    rec = new_record(cell, backend)
    try:
        reason = backend.available() or backend.unsupported(cell.case, cell.algorithm, cell.dtype, cell.layout)
        rec.workspace_bytes = backend.workspace_bytes(cell.case, cell.algorithm, cell.dtype)
        rec.multiplies = backend.multiplies(cell.case, cell.algorithm)
    except Exception as exc:
        rec.status, rec.message = "error", f"{type(exc).__name__}: {exc}"
        return rec
    if reason:
        rec.status, rec.message = "skipped", reason
        rec.timing_note = "not run"
        return rec
    try:
        tensors, ref, images = cache.get(cell.case, cell.dtype)
        rec.checked_images = images
        if cell_config(cell, options.tune) is not None:
            outcome = tune_cell(cell, to_device(tensors, backend.device, cell.layout), options.rule)
            if outcome.status == "error":
                raise RuntimeError(f"tuning failed: {outcome.message}")
            rec.tuning_s = outcome.tuning_s
        with poisoned(cell.backend.startswith("triton")):  # a plan allocates its output now
            prepared = prepare(backend, cell, tensors, options.tune)
        rec.config = prepared.info.get("config", "")
        rec.message = prepared.info.get("note", "")  # e.g. the layers a forced network policy left to auto
        rec.config_from = prepared.info.get("config_from", "")
        rec.tuning_s = prepared.info.get("tuning_s", rec.tuning_s)  # e.g. a tuned network's layers
        if backend.timed:
            rec.setup_ms = prepared.info.get("setup_ms")
        rec.launches = prepared.info.get("launches")
        prepared.setup()
        rec.flags = tf32_flags()
        before = guards.input_digests(prepared.inputs)
        with poisoned(cell.backend.startswith("triton")):
            out, first_ms = first_call(prepared.run, backend.device)
        rec.compile_ms = first_ms if backend.timed else None  # never interpreter seconds
        if isinstance(ref, Exception):
            raise RuntimeError(f"reference failed: {type(ref).__name__}: {ref}")
        check = check_output(cell, prepared.to_numpy(_checked_images(out, images, cell)), ref)
        rec.max_rel_err, rec.rms_rel_err = check.max_rel, check.rms_rel
        rec.tolerance, rec.passed = check.tol, check.passed
        if not check.passed:
            rec.status, rec.message = "fail", check.message
        elif check.message:  # e.g. the share of an attack's elements that flipped a sign step
            rec.message = check.message
        cheat = guards.mutated_inputs(before, prepared.inputs) or \
            guards.aliasing(out, prepared.inputs, flush=guards.flush_buffers()) or \
            _second_input_set(cell, backend, cache, options, out)
        del out
        if cheat:
            rec.status, rec.message, rec.passed = "fail", cheat, False
            rec.timing_note = "not measured: a cheat guard failed"
            return rec
        if not backend.timed:
            rec.timing_note = "not measured: Triton interpreter (correctness only)"
            return rec
        m = measure(prepared.run, backend.device, options.rule, flush_l2=options.flush_l2,
                    graph=bool(options.graph))
        if options.graph is None and backend.device == "cuda" and m.timer == "cuda-events" and m.samples_ms \
                and sorted(m.samples_ms)[len(m.samples_ms) // 2] < GRAPH_BELOW_MS:
            m = measure(prepared.run, backend.device, options.rule, flush_l2=options.flush_l2, graph=True)
            m.note = (m.note + "; " if m.note else "") + \
                f"under {GRAPH_BELOW_MS * 1e3:.0f} us with events: timed as CUDA-graph replays (hot L2)"
        if prepared.end_to_end is not None:  # the whole public call, for users who want that number
            e2e = measure(prepared.end_to_end, backend.device, _e2e_rule(options.rule), flush_l2=options.flush_l2)
            rec.e2e_p50_ms = float(sorted(e2e.samples_ms)[len(e2e.samples_ms) // 2]) if e2e.samples_ms else None
        if backend.device == "cuda" and m.timer == "cuda-events" and m.samples_ms:
            escaped = guards.escaped_work(prepared.run, sorted(m.samples_ms)[len(m.samples_ms) // 2])
            if escaped:
                rec.status, rec.message, rec.passed = "fail", escaped, False
                rec.timing_note = "not measured: a cheat guard failed"
                return rec
    except Exception as exc:  # NotImplementedError from an unfinished kernel included
        rec.status = "error"
        rec.message = f"{type(exc).__name__}: {exc}"
        rec.timing_note = rec.timing_note or "not measured: the cell raised"
        return rec
    rec.timed, rec.timer, rec.stop_reason, rec.timing_note = True, m.timer, m.stop_reason, m.note
    add_round(rec, m.samples_ms, m.probe_ms)
    return rec


def _e2e_rule(rule: StopRule) -> StopRule:
    """A short stopping rule for the end-to-end column (a quarter of the cell's budget)."""
    return StopRule(min_samples=min(rule.min_samples, 5), max_samples=max(min(rule.max_samples, 200), 5),
                    target_noise=max(rule.target_noise, 0.02), max_time_s=rule.max_time_s / 4)


def _second_input_set(cell: Cell, backend: Backend, cache: InputCache, options: RunOptions, first_out) -> str | None:
    """Check the cell once more on an independently drawn input set (the first call's output
    still alive): a wrong result there, or an output sharing memory with the first one, is a
    cached or replayed result."""
    tensors, ref, images = cache.get(cell.case, cell.dtype, variant=1)
    if isinstance(ref, Exception):
        return None  # the first set's reference failed the same way and is reported there
    with poisoned(cell.backend.startswith("triton")):
        prepared = prepare(backend, cell, tensors, options.tune)
        prepared.setup()
        out, _ = first_call(prepared.run, backend.device)
    alias = guards.aliasing(out, prepared.inputs, previous=first_out)
    if alias:
        return alias
    check = check_output(cell, prepared.to_numpy(_checked_images(out, images, cell)), ref)
    if not check.passed:
        return f"cheat guard: wrong on a second input set (a cached or replayed result?): {check.message}"
    return None


