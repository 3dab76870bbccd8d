"""A/A calibration: how often ``compare`` cries wolf on identical runs, and how wide each cell's
run-to-run noise is, so ``--threshold`` is chosen from data (``convbench calibrate``).

The runs go through the runner API (:func:`suites.runner.run`, or :func:`suites.runner.run_cell`
cell by cell when interleaved); every pair of runs is compared with :func:`reports.compare.compare`
and any FASTER/SLOWER call between identical runs counts as a false alarm.
"""

from __future__ import annotations

import math


def select_cells(*, suites=("quick",), backends=None, ops=None, dtypes=None, layouts=None, shapes=None,
                 min_samples=10, max_time=None, progress=False):
    """(cells, backends by name, run options) of a selection; backends default to the timed
    pair of this machine (torch,triton on a GPU, numpy,torch on a CPU)."""
    from . import backends as B
    from .catalog import SUITE_NAMES, get_suite
    from .cells import build_cells
    from .runner import RunOptions
    from .stats import StopRule

    on_gpu = B.cuda_available()
    names = list(backends or (("torch", "triton") if on_gpu else ("numpy", "torch")))
    for s in suites:
        if s not in SUITE_NAMES:
            raise ValueError(f"unknown suite {s!r}; choose from {', '.join(SUITE_NAMES)}")
    B.configure_interpreter(names)
    made = {n: B.make_backend(n) for n in names}
    cells = build_cells([get_suite(s) for s in suites], list(made.values()), ops=ops,
                        dtypes=dtypes or list(B.default_dtypes()), layouts=layouts or list(B.default_layouts()),
                        shapes=shapes)
    if not cells:
        raise ValueError("the selection contains no cells")
    rule = StopRule(min_samples=min_samples, max_time_s=max_time or (1.0 if on_gpu else 0.3))
    return cells, made, RunOptions(rule=rule, measure_peaks=False, progress=progress)


def run_aa(out_dirs, *, interleave: bool = False, **selection) -> list:
    """Run one selection once per folder in ``out_dirs``; returns each run's records.

    Sequential (default): whole runs one after the other through :func:`suites.runner.run`, as a
    baseline and a later run would be; the drift between runs is part of the noise measured.
    ``interleave``: cell by cell, the runs alternating (ABBA...), which leaves out slow drift of
    the machine and measures the noise of the measurement itself."""
    from . import metrics
    from .records import ResultStore
    from .runner import InputCache, configure_threads, run, run_cell

    cells, backends, options = select_cells(**selection)
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
    from dataclasses import replace

    return [replace(r, samples_ms=[v * (1.0 + slowdown) for v in r.samples_ms]) if r.key == key else r
            for r in records]


def detection(runs: list, slowdowns=(0.30, 0.02), **compare_kw) -> dict:
    """For every pair of identical runs and every timed cell the pair did not already call a
    regression: plant each slowdown in that one cell of the later run and compare again.
    Returns ``{slowdown: {"tries", "named", "failed_exit", "already_flagged"}}``: how often the
    planted cell was called SLOWER, how often the comparison failed, and how many cells were
    left out because the A/A comparison had flagged them already (those are false alarms,
    counted by :func:`calibration`)."""
    from reports.compare import compare

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
    from reports.compare import compare

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


def render_calibration(cal: dict) -> str:
    from tabulate import tabulate

    def pc(x):
        return "n/a" if x is None else f"{100 * x:.2f}%"

    lines = ["# convbench calibrate (A/A)", ""]
    rate = cal["false_alarm_rate"]
    lines.append(f"- {len(cal['pairs'])} pair(s) of identical runs, {cal['timed_cells']} timed cell comparisons; "
                 f"false alarms at threshold {pc(cal['threshold'])}, FDR {cal['alpha']:g}: "
                 f"{cal['false_alarms']} ({pc(rate)})")
    for p in cal["pairs"]:
        lines.append(f"- runs {p['pair'][0]} vs {p['pair'][1]}: compare exit status {p['exit_status']}; "
                     + ", ".join(f"{n} {v}" for v, n in p["counts"].items() if n)
                     + (f"; false alarms: {', '.join(p['false_alarms'])}" if p["false_alarms"] else ""))
    band = cal["noise_band"]
    lines.append("- noise band |median ratio - 1| over cells: "
                 + ", ".join(f"{k} {pc(v)}" for k, v in band.items()))
    lines.append(f"- suggested --threshold: {pc(cal['suggested_threshold'])} "
                 "(the worst A/A cell, rounded up to a whole percent)")
    for slowdown, d in sorted(cal.get("detection", {}).items(), reverse=True):
        lines.append(f"- planted slowdown of {pc(slowdown)} in one cell at a time ({d['tries']} tries): "
                     f"called SLOWER in {d['named']} ({pc(d['named'] / d['tries'] if d['tries'] else None)}), "
                     f"comparison failed in {d['failed_exit']}"
                     + (f" ({d['already_flagged']} cell(s) left out: flagged by the A/A comparison already)"
                        if d["already_flagged"] else ""))
    rows = sorted(cal["per_cell_max"].items(), key=lambda kv: -kv[1])
    if rows:
        lines += ["", tabulate([(k, pc(v)) for k, v in rows], headers=("cell", "max |ratio - 1|"),
                               tablefmt="github")]
    return "\n".join(lines) + "\n"
