"""Report tables built from a run's DataFrame, independent of how they are rendered.

The records become a ``pandas.DataFrame`` (:func:`convbench.suites.measure.frame.records_frame`),
and every grid is a pivot of it: shapes as rows, ``backend:algorithm`` as columns.  A :class:`Table`
is a title, headers, rows of strings, the cells to emphasise (the best time in a row) and notes;
:mod:`.markdown`, :mod:`.html` and the terminal printer render them.  Every table function takes
the records or a frame of them.

* timing tables: per suite, op, dtype and layout; shapes as rows, every backend:algorithm as a
  column, the p50 in ms, the fastest correct timed cell of each row marked; cells that were not
  timed say so instead of showing a number;
* speedup tables: the same grid as speedup over the vendor baseline with its 95% interval;
* algorithm comparison (conv2d): winner per shape, its margin over the runner-up, how far the
  ``auto`` rule's choice (``kernels.choose_algorithm``) is from the best, and the vendor time;
* accuracy: per op, backend, algorithm and dtype, the worst error against float64 and the pass count;
* failures: every fail/error cell with its message.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

import pandas as pd

from convbench.suites.measure.frame import records_frame
from convbench.suites.measure.records import Record, short_of_rounds
from convbench.suites.plan.backends import auto_algorithm
from convbench.suites.plan.shapes import GEOMETRY_TYPES, OPS

BACKEND_SHORT = {"torch": "torch", "triton": "triton", "triton-interpret": "interp", "numpy": "numpy"}
BACKEND_ORDER = ("torch", "triton", "triton-interpret", "numpy")
DTYPE_ORDER = ("fp32", "tf32", "fp16", "bf16", "fp64")
NOT_TIMED = "✓ not timed"


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    #: (row index, column index) of cells to emphasise
    best: set = field(default_factory=set)
    notes: list[str] = field(default_factory=list)


def column_name(r) -> str:
    """A cell's column in the report grids (a Record or a frame row)."""
    if r.backend == "torch":
        return "torch (baseline)" if r.algorithm == "vendor" else f"torch:{r.algorithm}"
    short = BACKEND_SHORT.get(r.backend, r.backend)
    return short if r.algorithm == "default" else f"{short}:{r.algorithm}"


def _column_order(r) -> tuple:
    b = BACKEND_ORDER.index(r.backend) if r.backend in BACKEND_ORDER else len(BACKEND_ORDER)
    return (b, r.algorithm != "vendor", r.algorithm)  # the vendor baseline first


def _value(x):
    """A frame value as Python: NaN and missing are None."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return x


def fmt_ms(ms: float | None) -> str:
    ms = _value(ms)
    if ms is None:
        return ""
    return f"{ms:.3g}" if ms >= 0.01 else f"{ms * 1e3:.3g}us"


def cell_text(r) -> str:
    """What a timing table shows for one record (or frame row)."""
    if r.status == "skipped":
        return "n/a"
    if r.status == "error":
        return "error"
    mark = "✗ " if r.status == "fail" else ""
    if _value(r.p50_ms) is None:
        return "✗ wrong, not timed" if r.status == "fail" else NOT_TIMED
    return mark + fmt_ms(r.p50_ms)


def _order(r) -> tuple:
    return (r.suite, OPS.index(r.op) if r.op in OPS else 99,
            DTYPE_ORDER.index(r.dtype) if r.dtype in DTYPE_ORDER else 9, r.layout)


def _groups(records: list[Record]):
    """(suite, op, dtype, layout) -> records, in a stable report order (the plots' panels)."""
    groups: OrderedDict = OrderedDict()
    for r in sorted(records, key=_order):
        groups.setdefault((r.suite, r.op, r.dtype, r.layout), []).append(r)
    return groups


# ----------------------------------------------------------------------------- the frame
def as_frame(records) -> pd.DataFrame:
    """The records as a frame (:func:`~convbench.suites.measure.frame.records_frame`); a frame
    is taken as it is, with a fresh index (a concatenation of runs may repeat labels)."""
    if isinstance(records, pd.DataFrame):
        return records.reset_index(drop=True)
    return records_frame(records)


def report_frame(records) -> pd.DataFrame:
    """The records (or a frame of them) with the report's grid columns added (``grid_column``:
    the column name, ``grid_rank``: its place), in report order; a report frame is returned as it is."""
    if isinstance(records, pd.DataFrame) and "grid_column" in records.columns:
        return records
    df = as_frame(records).copy()
    rows = list(df.itertuples(index=False))
    df["grid_column"] = [column_name(r) for r in rows]
    df["grid_rank"] = [_column_order(r) for r in rows]
    df["report_order"] = [_order(r) for r in rows]
    return df.sort_values("report_order", kind="stable").reset_index(drop=True)


def _report_groups(df: pd.DataFrame):
    """((suite, op, dtype, layout), rows) in report order."""
    return df.groupby(["suite", "op", "dtype", "layout"], sort=False)


def _pivot(group: pd.DataFrame, values: pd.Series) -> pd.DataFrame:
    """``values`` (one per row of ``group``) as a grid: (layer, shape) rows in order of first
    appearance, grid columns in backend:algorithm order; a cell that appears twice keeps the last."""
    rows = list(dict.fromkeys(zip(group["label"], group["shape"])))
    g = group.assign(_v=values.values)
    g = g.drop_duplicates(["label", "shape", "grid_column"], keep="last")
    columns = [c for c, _ in sorted(dict(zip(g["grid_column"], g["grid_rank"])).items(), key=lambda kv: kv[1])]
    grid = g.pivot(index=["label", "shape"], columns="grid_column", values="_v")
    return grid.reindex(index=pd.MultiIndex.from_tuples(rows, names=["label", "shape"]), columns=columns)


def _grid_rows(grid: pd.DataFrame) -> list[list[str]]:
    """[layer, shape, cell texts...] per grid row ("" where the grid has no cell)."""
    return [[label, shape, *("" if _value(v) is None else v for v in values)]
            for (label, shape), values in zip(grid.index, grid.itertuples(index=False))]


def _texts(group: pd.DataFrame, fn) -> pd.Series:
    return pd.Series([fn(r) for r in group.itertuples(index=False)], index=group.index, dtype=object)


# ------------------------------------------------------------------------------- tables
def timing_tables(records) -> list[Table]:
    df = report_frame(records)
    tables = []
    for (suite, op, dtype, layout), group in _report_groups(df):
        grid = _pivot(group, _texts(group, cell_text))
        counted = "count" in group.columns and (group["count"].fillna(1) > 1).any()
        t = Table(f"{suite} · {op} · {dtype} · {layout} — p50 ms (fastest correct cell in bold)",
                  ["layer", "shape", *(["count"] if counted else []), *grid.columns])
        t.rows = _grid_rows(grid)
        correct = group["p50_ms"].where(group["status"] == "ok")
        times = _pivot(group, correct).astype(float)
        first = 3 if counted else 2
        for i, row in enumerate(times.itertuples(index=False)):
            timed = [(v, j) for j, v in enumerate(row) if not math.isnan(v)]
            if len(timed) > 1:
                t.best.add((i, first + min(timed)[1]))
        if counted:  # how often each layer occurs in its network, and the network-weighted totals
            counts = _pivot(group, group["count"].fillna(1).astype(float)).max(axis=1)
            t.rows = [row[:2] + [str(int(n))] + row[2:] for row, n in zip(t.rows, counts)]
            totals = [fmt_ms(float((times[c] * counts).sum())) if times[c].notna().all() else ""
                      for c in times.columns]
            t.rows.append(["weighted total", "sum of count x p50", "", *totals])
            t.notes.append("weighted total: the layers' time in one forward of the network (count = occurrences); "
                           "a column with an untimed layer has none")
        if group["timing_note"].str.startswith("not measured: Triton interpreter").any():
            t.notes.append("Triton cells ran in the CPU interpreter: checked for correctness, timing not measured.")
        if ((group["backend"] == "torch") & (group["device"] == "cuda")).any():
            t.notes.append("Baseline: torch.nn.functional on cuDNN with cudnn.benchmark=True; TF32 "
                           + ("on (tf32 cells)." if dtype == "tf32" else "off."))
        tables.append(t)
    return tables


def speedup_text(r) -> str:
    if _value(r.speedup) is None:
        return ""
    return f"{r.speedup:.2f}x [{r.speedup_lo:.2f}, {r.speedup_hi:.2f}]"


def speedup_tables(records) -> list[Table]:
    df = report_frame(records)
    tables = []
    for (suite, op, dtype, layout), group in _report_groups(df):
        if group["speedup"].isna().all():
            continue
        group = group[group["backend"] != "torch"]
        grid = _pivot(group, _texts(group, speedup_text))
        t = Table(f"{suite} · {op} · {dtype} · {layout} — speedup over torch (95% bootstrap interval)",
                  ["layer", "shape", *grid.columns])
        t.rows = _grid_rows(grid)
        tables.append(t)
    return tables


def _geometry(r):
    g = dict(r.geometry)
    cls = GEOMETRY_TYPES.get(g.pop("type", ""))
    if cls is None:
        return None
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in g.items()})


def auto_choice(r) -> str | None:
    """The ``auto`` rule's choice for this record's geometry and dtype, or None if unavailable."""
    try:
        geometry = _geometry(r)
    except (TypeError, ValueError):  # a record from an older or foreign file: not rebuildable
        return None
    return auto_algorithm(geometry, r.dtype) if geometry is not None else None


def algorithm_table(records) -> Table:
    t = Table("conv2d algorithm comparison — winner per shape", [
        "suite", "shape", "dtype", "layout", "backend", "winner", "winner config", "p50 ms", "runner-up", "margin",
        "auto picks", "auto / best", "torch / winner"])
    df = as_frame(records)
    p50 = {key: _value(v) for key, v in zip(df["key"], df["p50_ms"])}
    conv = df[(df["op"] == "conv2d") & (df["backend"] != "torch")]
    if "mode" in conv.columns:  # the backward modes have their own table (reports/training.py)
        conv = conv[conv["mode"].fillna("fwd") == "fwd"]
    untimed = set()
    for (suite, shape, dtype, layout, backend), group in conv.groupby(
            ["suite", "shape", "dtype", "layout", "backend"], sort=False):
        timed = group[(group["status"] == "ok") & group["p50_ms"].notna()].sort_values("p50_ms", kind="stable")
        if timed.empty:
            untimed.add(backend)
            continue
        ranked = list(timed.itertuples(index=False))
        best = ranked[0]
        runner = ranked[1] if len(ranked) > 1 else None
        margin = f"{runner.p50_ms / best.p50_ms:.2f}x" if runner else ""
        auto, auto_rel = "", ""
        if backend.startswith("triton"):
            auto = auto_choice(best) or "?"
            chosen = next((r for r in ranked if r.algorithm == auto), None)
            auto_rel = f"{chosen.p50_ms / best.p50_ms:.2f}x" if chosen else "not timed"
        base = p50.get(best.baseline) if best.baseline else None
        vs = f"{base / best.p50_ms:.2f}x" if base else ""
        config = getattr(best, "config", "") or ""
        config_from = getattr(best, "config_from", "") or ""
        config_text = f"{config} ({config_from})" if config and config_from else config
        t.rows.append([suite, shape, dtype, layout, backend, best.algorithm, config_text, fmt_ms(best.p50_ms),
                       runner.algorithm if runner else "", margin, auto, auto_rel, vs])
    for backend in sorted(untimed):
        t.notes.append(f"{backend}: algorithms not timed on this machine (correctness only); "
                       "the winner needs a GPU run.")
    t.notes.append("margin = runner-up time / winner time; auto / best = time of the heuristic auto rule's choice / "
                   "best time (its regret; with tuned entries `auto` takes the measured best instead, whose regret "
                   "is that of the tuning measurement); winner config = the launch config and where it came from "
                   "(heuristic, tuned by `run --tune`/`convbench tune`); "
                   "torch / winner > 1 means the winner beats the vendor library.")
    return t


def accuracy_table(records) -> Table:
    t = Table("accuracy against the float64 reference (worst cell per row)", [
        "op", "backend", "algorithm", "dtype", "checked", "passed", "max rel err", "rms rel err",
        "tolerance", "err / tol"])
    df = as_frame(records)
    df = df[df["max_rel_err"].notna() | (df["status"] == "fail")]
    order = [(OPS.index(r.op) if r.op in OPS else 99, _column_order(r),
              DTYPE_ORDER.index(r.dtype) if r.dtype in DTYPE_ORDER else 9) for r in df.itertuples(index=False)]
    df = df.assign(_order=order).sort_values("_order", kind="stable")
    for (op, backend, algorithm, dtype), group in df.groupby(["op", "backend", "algorithm", "dtype"], sort=False):
        errs = group[group["max_rel_err"].notna()]
        ratio = (errs["max_rel_err"] / errs["tolerance"]).where(errs["tolerance"].fillna(0) != 0, 0.0)
        worst = errs.loc[ratio.idxmax()] if not errs.empty else None
        has_tol = worst is not None and _value(worst["tolerance"])
        t.rows.append([op, backend, algorithm, dtype, str(len(group)), str(int(group["passed"].eq(True).sum())),
                       f"{errs['max_rel_err'].max():.2e}" if not errs.empty else "",
                       f"{errs['rms_rel_err'].max():.2e}" if not errs.empty else "",
                       f"{worst['tolerance']:.1e}" if has_tol else "",
                       f"{worst['max_rel_err'] / worst['tolerance']:.3f}" if has_tol else ""])
    t.notes.append("tolerance = 8 x algorithm scale x (u_out + 2 u_operand + u_acc sqrt(reduction length)); "
                   "err / tol is the worst cell's ratio (must be <= 1).")
    if ((df["backend"] == "triton-interpret") & (df["dtype"] == "tf32")).any():
        t.notes.append("The interpreter computes tl.dot exactly in fp32: its tf32 cells check the code path, "
                       "not TF32 rounding (that needs a GPU run).")
    return t


def throughput_tables(records) -> list[Table]:
    df = report_frame(records)
    tables = []
    for (suite, op, dtype, layout), group in _report_groups(df):
        timed = group[group["p50_ms"].notna()]
        if timed.empty:
            continue
        conv = op in ("conv2d", "conv_transpose2d")
        unit = "TFLOP/s" if conv else "GB/s"

        def text(r):
            value = _value(r.tflops if conv else r.gbps)
            pct = _value(r.roofline_pct)
            return "" if value is None else f"{value:.3g}" + (f" ({pct:.0f}%)" if pct is not None else "")

        grid = _pivot(timed, _texts(timed, text))
        t = Table(f"{suite} · {op} · {dtype} · {layout} — {unit} (% of measured roofline)",
                  ["layer", "shape", *grid.columns])
        t.rows = _grid_rows(grid)
        tables.append(t)
    return tables


def failure_table(records, limit: int = 200) -> Table | None:
    df = as_frame(records)
    bad = df[df["status"].isin(["fail", "error"])]
    if bad.empty:
        return None
    t = Table(f"failed and errored cells ({len(bad)})", ["status", "cell", "message"])
    for r in bad.head(limit).itertuples(index=False):
        msg = r.message.replace("\n", " ")
        t.rows.append([r.status, f"{r.suite} {r.op} {r.shape} {r.backend}:{r.algorithm} {r.dtype} {r.layout}",
                       msg[:160] + ("…" if len(msg) > 160 else "")])
    if len(bad) > limit:
        t.notes.append(f"{len(bad) - limit} more in results.csv")
    return t


def summary_table(records) -> Table:
    t = Table("cells by backend and status", ["backend", "cells", "ok", "fail", "error", "skipped", "timed"])
    df = as_frame(records)
    if df.empty:
        return t
    statuses = pd.crosstab(df["backend"], df["status"])
    counts = statuses.reindex(columns=["ok", "fail", "error", "skipped"], fill_value=0)
    timed = df.groupby("backend")["timed"].sum()
    for backend in sorted(counts.index, key=lambda b: BACKEND_ORDER.index(b) if b in BACKEND_ORDER else 9):
        t.rows.append([backend, str(int(statuses.loc[backend].sum())), *(str(int(v)) for v in counts.loc[backend]),
                       str(int(timed[backend]))])
    short = short_of_rounds(df.to_dict("records"))
    if short:
        t.notes.append(f"WARNING: {len(short)} timed cell(s) have fewer timing rounds than the run asked for "
                       "(interrupted and not resumed; `convbench run --resume --out DIR` finishes them)")
    return t


def env_lines(env: dict) -> list[str]:
    """One-line facts about where the numbers come from."""
    device = env.get("gpu") or f"CPU: {env.get('cpu')} ({env.get('cpu_count')} cores)"
    lines = [f"device: {device}; torch CPU threads {env.get('torch_threads')}"]
    if env.get("gpu"):
        lines.append(f"SMs {env.get('gpu_sms')}, L2 {(env.get('gpu_l2_bytes') or 0) / 2**20:.0f} MiB, "
                     f"driver {env.get('driver')}, CUDA {env.get('cuda')}, cuDNN {env.get('cudnn')}")
    lines.append(f"python {env.get('python')}, torch {env.get('torch')}, triton {env.get('triton')}, "
                 f"numpy {env.get('numpy')}; commit {str(env.get('git_commit'))[:12]}"
                 + (" (dirty)" if env.get("git_dirty") else "")
                 + f"; host {env.get('hostname')}; {env.get('time_utc')}")
    for dev, p in (env.get("peaks") or {}).items():
        mm = ", ".join(f"{k} {v:.3g}" for k, v in p.get("matmul_tflops", {}).items())
        lines.append(f"measured peaks ({dev}): copy {p.get('copy_gbps') or 0:.0f} GB/s; matmul TFLOP/s: {mm}")
    run = env.get("run") or {}
    if run:
        lines.append(f"run: {run.get('command', '')} — {run.get('cells')} cells, "
                     f"{run.get('wall_s', 0):.0f} s" + (" (interrupted)" if run.get("interrupted") else ""))
    return lines


def all_tables(records) -> dict[str, list[Table]]:
    """Every table of a report, by section (the records, or a frame of them)."""
    records = as_frame(records)  # in the records' order: the algorithm and failure tables keep it
    grids = report_frame(records)  # once, for the three grid sections
    failures = failure_table(records)
    return {
        "summary": [summary_table(records)],
        "timing": timing_tables(grids),
        "speedup": speedup_tables(grids),
        "algorithms": [algorithm_table(records)],
        "throughput": throughput_tables(grids),
        "accuracy": [accuracy_table(records)],
        "failures": [failures] if failures else [],
    }
