"""A/A calibration: how often ``compare`` cries wolf on identical runs, and how wide each cell's
run-to-run noise is, so ``--threshold`` is chosen from data (``convbench calibrate``).

The runs go through the runner API (:func:`convbench.suites.measure.runner.run`, or
:func:`~convbench.suites.measure.runner.run_cell` cell by cell when interleaved); every pair of runs
is compared with :func:`convbench.suites.regress.verdicts.compare` and any FASTER/SLOWER call
between identical runs counts as a false alarm.  :mod:`convbench.reports.calibration` renders
the result.
"""

from __future__ import annotations

import math
from dataclasses import replace

from convbench.runtime import cuda_available

from ..measure import metrics
from ..measure.env import configure_threads
from ..measure.inputs import InputCache
from ..measure.records import ResultStore
from ..measure.runner import RunOptions, run, run_cell
from ..measure.stats import StopRule
from ..plan.select import select_cells
from .verdicts import compare


def selection(*, suites=("quick",), backends=None, ops=None, dtypes=None, layouts=None, shapes=None,
              min_samples=10, max_time=None, progress=False):
    """(cells, backends by name, run options) of a selection (:func:`convbench.suites.plan.select.select_cells`);
    backends default to the timed pair of this machine (torch,triton on a GPU, numpy,torch on a CPU)."""
    on_gpu = cuda_available()
    names = list(backends or (("torch", "triton") if on_gpu else ("numpy", "torch")))
    # a backend that cannot run here is kept: its cells skip with the reason, as in any run
    chosen = select_cells(suites, names, ops=ops, dtypes=dtypes, layouts=layouts, shapes=shapes,
                          require_available=False)
    rule = StopRule(min_samples=min_samples, max_time_s=max_time or (1.0 if on_gpu else 0.3))
    return chosen.cells, chosen.backends, RunOptions(rule=rule, measure_peaks=False, progress=progress)


def run_aa(out_dirs, *, interleave: bool = False, **selection_kw) -> list:
    """Run one selection once per folder in ``out_dirs``; returns each run's records.

    Sequential (default): whole runs one after the other through :func:`~convbench.suites.measure.runner.run`, as a
    baseline and a later run would be; the drift between runs is part of the noise measured.
    ``interleave``: cell by cell, the runs alternating (ABBA...), which leaves out slow drift of
    the machine and measures the noise of the measurement itself."""
    cells, backends, options = selection(**selection_kw)
    if not interleave:
        return [run(cells, backends, ResultStore(d), options=options).records for d in out_dirs]
    configure_threads(options.threads)
    cache = InputCache(options.seed, options.check_max_flops)
    runs: list = [[] for _ in out_dirs]
    for j, cell in enumerate(cells):
        order = range(len(runs)) if j % 2 == 0 else reversed(range(len(runs)))
        for k in order:
            runs[k].append(run_cell(cell, backends[cell.backend], cache, options))
    for d, records in zip(out_dirs, runs):
        metrics.finalize(records, {}, seed=options.seed)
        store = ResultStore(d)
        store.start([])
        store.rewrite(records)
    return runs


def planted(records: list, key: str, slowdown: float) -> list:
    """``records`` with the samples of cell ``key`` made ``slowdown`` slower (0.3 = 30%): a code
    change in that one cell; the machine (its speed probes) unchanged."""
    return [replace(r, samples_ms=[v * (1.0 + slowdown) for v in r.samples_ms]) if r.key == key else r
            for r in records]


def detection(runs: list, slowdowns=(0.30, 0.02), **compare_kw) -> dict:
    """For every pair of identical runs and every timed cell the pair did not already call a
    regression: plant each slowdown in that one cell of the later run and compare again.
    Returns ``{slowdown: {"tries", "named", "failed_exit", "already_flagged"}}``: how often the
    planted cell was called SLOWER, how often the comparison failed, and how many cells were
    left out because the A/A comparison had flagged them already (those are false alarms,
    counted by :func:`calibration`)."""
    out = {s: {"tries": 0, "named": 0, "failed_exit": 0, "already_flagged": 0} for s in slowdowns}
    for i in range(len(runs)):
        for j in range(i + 1, len(runs)):
            flagged = {c.key for c in compare(runs[i], runs[j], **compare_kw).regressions}
            keys = [r.key for r in runs[j] if r.samples_ms and r.status == "ok"]
            for s in slowdowns:
                out[s]["already_flagged"] += sum(k in flagged for k in keys)
                for key in keys:
                    if key in flagged:
                        continue
                    cmp = compare(runs[i], planted(runs[j], key, s), **compare_kw)
                    named = any(c.key == key for c in cmp.regressions)
                    out[s]["tries"] += 1
                    out[s]["named"] += named
                    out[s]["failed_exit"] += named or (cmp.failed and not flagged)
    return out


def calibration(runs: list, *, threshold: float = 0.05, alpha: float = 0.05,
                normalize: str = "probe", plant=()) -> dict:
    """False alarms and noise of every pair of identical runs (lists of records); with
    ``plant`` (slowdowns such as 0.3, 0.02) also how often each planted slowdown is found."""
    pairs, alarms, timed, logs = [], 0, 0, {}
    for i in range(len(runs)):
        for j in range(i + 1, len(runs)):
            cmp = compare(runs[i], runs[j], threshold=threshold, alpha=alpha, normalize=normalize)
            cells = [c for c in cmp.cells if c.ratio is not None]
            bad = [c.key for c in cells if c.verdict in ("SLOWER", "FASTER")]
            alarms, timed = alarms + len(bad), timed + len(cells)
            for c in cells:
                logs.setdefault(c.key, []).append(abs(math.log(c.ratio)))
            pairs.append({"pair": (i, j), "timed": len(cells), "false_alarms": bad,
                          "exit_status": int(cmp.failed), "counts": cmp.counts()})
    all_logs = sorted(x for v in logs.values() for x in v)

    def pct(q):
        return math.expm1(all_logs[min(len(all_logs) - 1, int(q * len(all_logs)))]) if all_logs else None

    band = {f"p{int(q * 100)}": pct(q) for q in (0.5, 0.9, 0.95, 0.99)}
    band["max"] = math.expm1(all_logs[-1]) if all_logs else None
    # smallest whole percent above the worst A/A pair (every cell passes), at least 1%
    suggested = max(0.01, math.ceil(100 * band["max"] + 1e-9) / 100) if all_logs else None
    return {"pairs": pairs, "timed_cells": timed, "false_alarms": alarms,
            "false_alarm_rate": alarms / timed if timed else None, "noise_band": band,
            "per_cell_max": {k: math.expm1(max(v)) for k, v in sorted(logs.items())},
            "suggested_threshold": suggested, "threshold": threshold, "alpha": alpha,
            "normalize": normalize,
            "detection": (detection(runs, plant, threshold=threshold, alpha=alpha, normalize=normalize)
                          if plant else {})}
