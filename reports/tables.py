"""Report tables built from result records, independent of how they are rendered.

A :class:`Table` is a title, headers, rows of strings, the cells to emphasise (the best time in a
row) and notes.  :mod:`reports.markdown`, :mod:`reports.html` and the terminal printer render them.

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

from collections import OrderedDict
from dataclasses import dataclass, field

from suites.records import Record
from suites.shapes import OPS

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


def column_name(r: Record) -> str:
    if r.backend == "torch":
        return "torch (baseline)"
    short = BACKEND_SHORT.get(r.backend, r.backend)
    return short if r.algorithm == "default" else f"{short}:{r.algorithm}"


def _column_order(r: Record) -> tuple:
    b = BACKEND_ORDER.index(r.backend) if r.backend in BACKEND_ORDER else len(BACKEND_ORDER)
    return (b, r.algorithm)


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return ""
    return f"{ms:.3g}" if ms >= 0.01 else f"{ms * 1e3:.3g}us"


def cell_text(r: Record) -> str:
    """What a timing table shows for one record."""
    if r.status == "skipped":
        return "n/a"
    if r.status == "error":
        return "error"
    mark = "✗ " if r.status == "fail" else ""
    if r.p50_ms is None:
        return "✗ wrong, not timed" if r.status == "fail" else NOT_TIMED
    return mark + fmt_ms(r.p50_ms)


def _groups(records: list[Record]):
    """(suite, op, dtype, layout) -> records, in a stable report order."""
    def order(r):
        return (r.suite, OPS.index(r.op) if r.op in OPS else 99,
                DTYPE_ORDER.index(r.dtype) if r.dtype in DTYPE_ORDER else 9, r.layout)

    groups: OrderedDict = OrderedDict()
    for r in sorted(records, key=order):
        groups.setdefault((r.suite, r.op, r.dtype, r.layout), []).append(r)
    return groups


def _grid(group: list[Record]):
    columns = sorted({column_name(r): _column_order(r) for r in group}.items(), key=lambda kv: kv[1])
    columns = [c for c, _ in columns]
    rows: OrderedDict = OrderedDict()
    for r in group:
        rows.setdefault((r.label, r.shape), {})[column_name(r)] = r
    return columns, rows


def timing_tables(records: list[Record]) -> list[Table]:
    tables = []
    for (suite, op, dtype, layout), group in _groups(records).items():
        columns, rows = _grid(group)
        t = Table(f"{suite} · {op} · {dtype} · {layout} — p50 ms (fastest correct cell in bold)",
                  ["layer", "shape", *columns])
        for i, ((label, shape), cells) in enumerate(rows.items()):
            row = [label, shape] + [cell_text(cells[c]) if c in cells else "" for c in columns]
            timed = [(cells[c].p50_ms, j) for j, c in enumerate(columns)
                     if c in cells and cells[c].status == "ok" and cells[c].p50_ms is not None]
            if len(timed) > 1:
                t.best.add((i, 2 + min(timed)[1]))
            t.rows.append(row)
        if any(r.timing_note.startswith("not measured: Triton interpreter") for r in group):
            t.notes.append("Triton cells ran in the CPU interpreter: checked for correctness, timing not measured.")
        if any(r.backend == "torch" and r.device == "cuda" for r in group):
            t.notes.append("Baseline: torch.nn.functional on cuDNN with cudnn.benchmark=True; TF32 "
                           + ("on (tf32 cells)." if dtype == "tf32" else "off."))
        tables.append(t)
    return tables


def speedup_text(r: Record) -> str:
    if r.speedup is None:
        return ""
    return f"{r.speedup:.2f}x [{r.speedup_lo:.2f}, {r.speedup_hi:.2f}]"


def speedup_tables(records: list[Record]) -> list[Table]:
    tables = []
    for (suite, op, dtype, layout), group in _groups(records).items():
        if not any(r.speedup is not None for r in group):
            continue
        columns, rows = _grid([r for r in group if r.backend != "torch"])
        t = Table(f"{suite} · {op} · {dtype} · {layout} — speedup over torch (95% bootstrap interval)",
                  ["layer", "shape", *columns])
        for (label, shape), cells in rows.items():
            t.rows.append([label, shape] + [speedup_text(cells[c]) if c in cells else "" for c in columns])
        tables.append(t)
    return tables


def _geometry(r: Record):
    from suites.shapes import GEOMETRY_TYPES

    g = dict(r.geometry)
    cls = GEOMETRY_TYPES.get(g.pop("type", ""))
    if cls is None:
        return None
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in g.items()})


def auto_choice(r: Record) -> str | None:
    """``kernels.choose_algorithm`` for this record's geometry and dtype, or None if unavailable."""
    try:
        import kernels
        from suites.backends import torch_dtype

        return kernels.choose_algorithm(_geometry(r), torch_dtype(r.dtype))
    except Exception:
        return None


def algorithm_table(records: list[Record]) -> Table:
    t = Table("conv2d algorithm comparison — winner per shape", [
        "suite", "shape", "dtype", "layout", "backend", "winner", "p50 ms", "runner-up", "margin",
        "auto picks", "auto / best", "torch / winner"])
    groups: OrderedDict = OrderedDict()
    for r in records:
        if r.op == "conv2d" and r.backend != "torch":
            groups.setdefault((r.suite, r.shape, r.dtype, r.layout, r.backend), []).append(r)
    by_key = {r.key: r for r in records}
    untimed = set()
    for (suite, shape, dtype, layout, backend), group in groups.items():
        timed = sorted((r for r in group if r.status == "ok" and r.p50_ms is not None), key=lambda r: r.p50_ms)
        if not timed:
            untimed.add(backend)
            continue
        best = timed[0]
        runner = timed[1] if len(timed) > 1 else None
        margin = f"{runner.p50_ms / best.p50_ms:.2f}x" if runner else ""
        auto, auto_rel = "", ""
        if backend.startswith("triton"):
            auto = auto_choice(best) or "?"
            chosen = next((r for r in timed if r.algorithm == auto), None)
            auto_rel = f"{chosen.p50_ms / best.p50_ms:.2f}x" if chosen else "not timed"
        base = by_key.get(best.baseline) if best.baseline else None
        vs = f"{base.p50_ms / best.p50_ms:.2f}x" if base is not None and base.p50_ms else ""
        t.rows.append([suite, shape, dtype, layout, backend, best.algorithm, fmt_ms(best.p50_ms),
                       runner.algorithm if runner else "", margin, auto, auto_rel, vs])
    for backend in sorted(untimed):
        t.notes.append(f"{backend}: algorithms not timed on this machine (correctness only); "
                       "the winner needs a GPU run.")
    t.notes.append("margin = runner-up time / winner time; auto / best = time of the auto rule's choice / best time; "
                   "torch / winner > 1 means the winner beats the vendor library.")
    return t


def accuracy_table(records: list[Record]) -> Table:
    t = Table("accuracy against the float64 reference (worst cell per row)", [
        "op", "backend", "algorithm", "dtype", "checked", "passed", "max rel err", "rms rel err",
        "tolerance", "err / tol"])
    groups: OrderedDict = OrderedDict()
    for r in sorted(records, key=lambda r: (OPS.index(r.op) if r.op in OPS else 99, _column_order(r),
                                            DTYPE_ORDER.index(r.dtype) if r.dtype in DTYPE_ORDER else 9)):
        if r.max_rel_err is not None or r.status == "fail":
            groups.setdefault((r.op, r.backend, r.algorithm, r.dtype), []).append(r)
    for (op, backend, algorithm, dtype), group in groups.items():
        errs = [r for r in group if r.max_rel_err is not None]
        worst = max(errs, key=lambda r: r.max_rel_err / r.tolerance if r.tolerance else 0) if errs else None
        t.rows.append([op, backend, algorithm, dtype, str(len(group)), str(sum(bool(r.passed) for r in group)),
                       f"{max(r.max_rel_err for r in errs):.2e}" if errs else "",
                       f"{max(r.rms_rel_err for r in errs):.2e}" if errs else "",
                       f"{worst.tolerance:.1e}" if worst and worst.tolerance else "",
                       f"{worst.max_rel_err / worst.tolerance:.3f}" if worst and worst.tolerance else ""])
    t.notes.append("tolerance = 8 x algorithm scale x (u_out + 2 u_operand + u_acc sqrt(reduction length)); "
                   "err / tol is the worst cell's ratio (must be <= 1).")
    if any(key[1] == "triton-interpret" and key[3] == "tf32" for key in groups):
        t.notes.append("The interpreter computes tl.dot exactly in fp32: its tf32 cells check the code path, "
                       "not TF32 rounding (that needs a GPU run).")
    return t


def throughput_tables(records: list[Record]) -> list[Table]:
    tables = []
    for (suite, op, dtype, layout), group in _groups(records).items():
        timed = [r for r in group if r.p50_ms is not None]
        if not timed:
            continue
        conv = op in ("conv2d", "conv_transpose2d")
        columns, rows = _grid(timed)
        unit = "TFLOP/s" if conv else "GB/s"
        t = Table(f"{suite} · {op} · {dtype} · {layout} — {unit} (% of measured roofline)",
                  ["layer", "shape", *columns])
        for (label, shape), cells in rows.items():
            row = [label, shape]
            for c in columns:
                r = cells.get(c)
                value = None if r is None else (r.tflops if conv else r.gbps)
                pct = f" ({r.roofline_pct:.0f}%)" if r is not None and r.roofline_pct is not None else ""
                row.append(f"{value:.3g}{pct}" if value is not None else "")
            t.rows.append(row)
        tables.append(t)
    return tables


def failure_table(records: list[Record], limit: int = 200) -> Table | None:
    bad = [r for r in records if r.status in ("fail", "error")]
    if not bad:
        return None
    t = Table(f"failed and errored cells ({len(bad)})", ["status", "cell", "message"])
    for r in bad[:limit]:
        msg = r.message.replace("\n", " ")
        t.rows.append([r.status, f"{r.suite} {r.op} {r.shape} {r.backend}:{r.algorithm} {r.dtype} {r.layout}",
                       msg[:160] + ("…" if len(msg) > 160 else "")])
    if len(bad) > limit:
        t.notes.append(f"{len(bad) - limit} more in results.csv")
    return t


def summary_table(records: list[Record]) -> Table:
    t = Table("cells by backend and status", ["backend", "cells", "ok", "fail", "error", "skipped", "timed"])
    for backend in sorted({r.backend for r in records}, key=lambda b: BACKEND_ORDER.index(b)
                          if b in BACKEND_ORDER else 9):
        rs = [r for r in records if r.backend == backend]
        counts = [sum(r.status == s for r in rs) for s in ("ok", "fail", "error", "skipped")]
        t.rows.append([backend, str(len(rs)), *map(str, counts), str(sum(r.timed for r in rs))])
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


def all_tables(records: list[Record]) -> dict[str, list[Table]]:
    """Every table of a report, by section."""
    failures = failure_table(records)
    return {
        "summary": [summary_table(records)],
        "timing": timing_tables(records),
        "speedup": speedup_tables(records),
        "algorithms": [algorithm_table(records)],
        "throughput": throughput_tables(records),
        "accuracy": [accuracy_table(records)],
        "failures": [failures] if failures else [],
    }
