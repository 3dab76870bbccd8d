"""The runner: cells -> backend callable -> check against float64 -> time -> record.

Per cell: skip it (with the reason) where it does not apply; otherwise build its inputs (seeded,
rounded to the cell's dtype, shared by every cell of the same case and dtype), call it once with
NaN-poisoned outputs (Triton backends) and time that call as ``compile_ms``, compare the result
with the float64 reference computed from the same rounded inputs (tolerance model of
:mod:`.accuracy`), then — if the backend's timing means something — sample it until the median is
stable (:mod:`.timing`).  Timing comes in rounds (:mod:`.rounds`): the first pass over the cells
checks them and takes each one's first share of samples; later passes, some in worker processes,
add the same number of samples again, so that every cell's samples spread over the whole run and
over processes.  Every outcome becomes a :class:`~.records.Record`; an exception in a kernel
becomes an ``error`` record with its message, never a crashed run.

Finished cells are appended to ``results.jsonl`` as they finish; Ctrl-C stops the loop, and the
cells finished so far are kept and finalized.  For large cases (more than
``RunOptions.check_max_flops`` nominal operations) of per-image operators the reference is
computed for the first image only and compared with that slice of the output.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Sequence

from ..plan.backends import DTYPES, Backend
from ..plan.cells import Cell
from . import metrics
from .cell import (GRAPH_BELOW_MS, TRANSFORM_ALGORITHMS, RunOptions, algorithm_error_scale,  # noqa: F401  (API)
                   cell_tolerance, new_record, poisoned, run_cell)
from .env import blas_threads, collect, configure_threads
from .inputs import InputCache
from .peaks import Peaks, measure_peaks
from .progress import Progress
from .records import Record, ResultStore  # noqa: F401  (Record: part of this module's API)
from .rounds import default_processes, default_rounds, round_rule, run_rounds
from .stats import StopRule  # noqa: F401  (API)
from .timing import first_call, measure  # noqa: F401  (API: tests time cells the runner's way)

@dataclass
class RunResult:
    records: list[Record]
    env: dict
    interrupted: bool = False
    wall_s: float = 0.0

    @property
    def failures(self) -> list[Record]:
        return [r for r in self.records if r.status in ("fail", "error")]


def _precompile(cells) -> dict:
    """Best effort (see :mod:`.precompile`): a failure here costs only the head start."""
    import torch  # lazily: GPU runs only

    from .precompile import precompile  # lazily: GPU runs only
    try:
        major, minor = torch.cuda.get_device_capability()
        return precompile(list(cells), f"sm_{major}{minor}")
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


# --------------------------------------------------------------------------------------------
# a whole run
# --------------------------------------------------------------------------------------------
def _peaks_for(cells: Sequence[Cell], backends: dict[str, Backend]) -> dict[str, Peaks]:
    wanted: dict[str, list[str]] = {}
    for c in cells:
        b = backends[c.backend]
        if b.timed and b.available() is None:
            dts = wanted.setdefault(b.device, [])
            if c.dtype not in dts:
                dts.append(c.dtype)
    return {dev: measure_peaks(dev, sorted(dts, key=DTYPES.index)) for dev, dts in wanted.items()}


def run(cells: Sequence[Cell], backends: dict[str, Backend], store: ResultStore | None = None, *,
        options: RunOptions | None = None, resume: bool = False, run_info: dict | None = None,
        devices: Sequence[str] | None = None, executor: str = "local", address: str | None = None) -> RunResult:
    """Run ``cells`` (skipping those already in ``store`` when ``resume``) and finalize the files.

    Without ``resume`` the folder's previous results are replaced.  ``devices`` (``--gpus``):
    one worker process per device value of ``CUDA_VISIBLE_DEVICES``, cells handed out as workers
    free up (:mod:`.parallel`).  ``executor="ray"``: one Ray task per cell on the cluster at
    ``address`` (None: a local Ray), the records streamed back to this process (:mod:`.ray_executor`).
    """
    if executor not in ("local", "ray"):
        raise ValueError(f"executor must be 'local' or 'ray', got {executor!r}")
    if executor == "ray" and devices:
        raise ValueError("--gpus and --executor ray do not combine (Ray places the cells on the GPUs itself)")
    options = options or RunOptions()
    t0 = time.perf_counter()
    # resuming keeps every cell already on disk (also those outside this selection)
    records = store.load() if (store is not None and resume) else []
    done = {r.key for r in records}
    todo = [c for c in cells if c.key not in done]
    by_key = {c.key: c for c in cells}
    if store is not None:
        store.start(records)
    device = "cuda" if any(b.device == "cuda" for b in backends.values()) else "cpu"
    configure_threads(options.threads)
    env = collect(device)
    env["native_threads"] = blas_threads()
    env["run"] = dict(run_info or {}, cells=len(cells), resumed=len(records))
    peaks = _peaks_for(cells, backends) if options.measure_peaks else {}
    if resume and store is not None and not peaks:
        peaks = {d: Peaks.from_dict(p) for d, p in store.read_env().get("peaks", {}).items()}
    env["peaks"] = {d: p.to_dict() for d, p in peaks.items()}
    if store is not None:
        store.write_env(env)
    cache = InputCache(options.seed, options.check_max_flops)
    rounds = options.rounds or default_rounds(device)
    processes = min(options.processes or default_processes(device), rounds)
    env["run"].update(rounds=rounds, processes=processes)
    # resumed cells with fewer rounds than asked for (an interrupted run) take the missing ones
    timed = [(by_key[r.key], r) for r in records
             if r.key in by_key and r.timed and r.status != "error" and 0 < r.rounds < rounds]
    if timed:
        env["run"]["resumed_rounds"] = {r.key: r.rounds for _, r in timed}
    for _, r in timed:
        r.rounds_requested = rounds
    if device == "cuda" and options.precompile and not options.tune:
        env["run"]["precompiled"] = _precompile(todo)
    first = replace(options, rule=round_rule(options.rule, rounds))
    bar = Progress(len(todo), enabled=options.progress)
    interrupted = False

    def checkpoint() -> None:  # after every round: an interruption keeps every round taken
        if store is not None:
            store.rewrite(records)

    if executor == "ray":
        from .ray_executor import run_on_ray  # the optional extra, only when asked for

        interrupted = False
        try:
            records, extra = run_on_ray(todo, backends, store, options, records=records, rounds=rounds,
                                        address=address, progress=options.progress)
            env["run"].update(extra)
        except KeyboardInterrupt:
            interrupted = True
        return _finish(records, env, store, peaks, options, interrupted, t0)
    if devices:
        from .parallel import run_on_devices  # only for --gpus

        interrupted = False
        try:
            records, extra = run_on_devices(todo, backends, store, options, list(devices), records=records,
                                            progress=options.progress)
            env["run"].update(extra)
        except KeyboardInterrupt:
            interrupted = True
        return _finish(records, env, store, peaks, options, interrupted, t0)
    try:
        for cell in todo:
            rec = run_cell(cell, backends[cell.backend], cache, first)
            records.append(rec)
            if store is not None:
                store.append(rec)  # round 0 is a complete record: kept even if the run dies later
            if rec.timed:
                rec.rounds_requested = rounds
                timed.append((cell, rec))
            bar.update(f"{cell} {rec.status}")
        bar.set_total(len(todo) + sum(rounds - r.rounds for _, r in timed))
        problems = run_rounds(timed, backends, cache, options, rounds, processes, first.rule.max_time_s, bar,
                              checkpoint=checkpoint)
        if problems:
            env["run"]["round_problems"] = problems
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
    return _finish(records, env, store, peaks, options, interrupted, t0)


def _finish(records, env, store, peaks, options, interrupted: bool, t0: float) -> RunResult:
    metrics.finalize(records, peaks, seed=options.seed)
    flag_sets: dict[str, int] = {}
    for r in records:
        if r.flags:
            text = ",".join(f"{k}={v}" for k, v in sorted(r.flags.items()))
            flag_sets[text] = flag_sets.get(text, 0) + 1
    env["run"]["cell_flags"] = flag_sets  # the torch flags the cells ran with (each record has its own)
    wall = time.perf_counter() - t0
    env["run"].update(interrupted=interrupted, wall_s=round(wall, 3))
    if store is not None:
        store.rewrite(records)
        store.write_env(env)
    return RunResult(records, env, interrupted, wall)
