"""The winners heatmap: per suite, shapes x algorithms, colour = speedup over the vendor baseline.

``winners-<suite>.png``: one row per shape (op, layer, dtype and layout where the suite mixes
them), one column per ``backend:algorithm`` (the vendor baseline first, at 1x); the colour is
log2 of the speedup on a diverging scale centred at 1x (blue faster, red slower than the
vendor), the fastest correct timed cell of each row carries a star, and the states that have no
number are drawn as such: hatched grey "not timed" (the Triton interpreter checks correctness
only), a cross for a failed or errored cell, blank for a cell that does not apply.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import numpy as np

from convbench.suites.measure.records import Record

from .plots import _slug, pyplot
from .tables import _column_order, _order, _value, column_name

#: annotate each cell with its speedup when the grid is at most this many cells
ANNOTATE_CELLS = 700
BASELINE = "torch (baseline)"


def _row_name(r, mixed: bool) -> str:
    name = f"{r.op}: {r.label or r.shape}"
    return f"{name} [{r.dtype} {r.layout}]" if mixed else name


def heatmap_grid(records: list[Record], suite: str):
    """(rows, columns, cells) of one suite: cells maps (row, column) to (state, speedup) with
    state in "value", "untimed", "failed", "skipped"; the baseline column holds 1.0."""
    mine = sorted((r for r in records if r.suite == suite), key=_order)
    mixed = len({(r.dtype, r.layout) for r in mine}) > 1
    rows = list(OrderedDict.fromkeys(_row_name(r, mixed) for r in mine))
    columns = [c for c, _ in sorted({column_name(r): _column_order(r) for r in mine}.items(), key=lambda kv: kv[1])]
    cells = {}
    for r in mine:
        key = (_row_name(r, mixed), column_name(r))
        if r.status == "skipped":
            state, value = "skipped", None
        elif r.status in ("fail", "error"):
            state, value = "failed", None
        elif _value(r.p50_ms) is None:
            state, value = "untimed", None
        elif r.backend == "torch" and r.algorithm == "vendor":
            state, value = "value", 1.0
        elif _value(r.speedup) is not None:
            state, value = "value", r.speedup
        else:  # timed, but its baseline was not
            state, value = "untimed", None
        cells[key] = (state, value, _value(r.p50_ms) if r.status == "ok" else None)
    # a row where only the baseline ran compares nothing (e.g. torch fp32 in a run whose numpy cells are fp64)
    rows = [row for row in rows if any(c != BASELINE and (row, c) in cells for c in columns)]
    columns = [c for c in columns if any((row, c) in cells for row in rows)]
    kept_rows, kept_columns = set(rows), set(columns)
    cells = {key: v for key, v in cells.items() if key[0] in kept_rows and key[1] in kept_columns}
    return rows, columns, cells


def heatmap_plots(records: list[Record], out_dir: Path) -> list[str]:
    """One ``winners-<suite>.png`` per suite with at least one timed or checked cell."""
    files = []
    for suite in dict.fromkeys(r.suite for r in records):
        rows, columns, cells = heatmap_grid(records, suite)
        if not rows or not columns:
            continue
        files.append(_draw(suite, rows, columns, cells, out_dir))
    return files


def _draw(suite, rows, columns, cells, out_dir: Path) -> str:
    plt = pyplot()
    from matplotlib.colors import TwoSlopeNorm  # heavy: imported only when a plot is drawn
    from matplotlib.patches import Patch  # heavy: imported only when a plot is drawn

    grid = np.full((len(rows), len(columns)), np.nan)
    for (row, col), (state, value, _) in cells.items():
        if state == "value":
            grid[rows.index(row), columns.index(col)] = math.log2(value)
    finite = grid[np.isfinite(grid)]
    span = max(1.0, float(np.abs(finite).max()) if finite.size else 1.0)
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-span, vmax=span)
    width = min(3.0 + 1.1 * len(columns) + 0.06 * max(map(len, rows)), 22.0)
    height = min(2.2 + 0.28 * len(rows), 60.0)
    fig, ax = plt.subplots(figsize=(width, height))
    cmap = plt.get_cmap("RdBu").with_extremes(bad="white")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
    annotate = len(rows) * len(columns) <= ANNOTATE_CELLS
    for i, row in enumerate(rows):
        timed = [(t, c) for c in columns for state, _, t in [cells.get((row, c), ("skipped", None, None))]
                 if state == "value" and t is not None]
        winner = min(timed)[1] if len(timed) > 1 else None
        for j, col in enumerate(columns):
            state, value, _ = cells.get((row, col), ("skipped", None, None))
            if state == "untimed":
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="0.88", edgecolor="0.6",
                                           hatch="///", lw=0))
            elif state == "failed":
                ax.text(j, i, "✗", ha="center", va="center", color="black", fontsize=9, fontweight="bold")
            elif state == "value" and annotate:
                strong = abs(math.log2(value)) > 0.6 * span
                ax.text(j, i, f"{value:.2g}x" + (" ★" if col == winner else ""), ha="center", va="center",
                        fontsize=7, color="white" if strong else "black",
                        fontweight="bold" if col == winner else "normal")
            if col == winner and not annotate:
                ax.text(j, i, "★", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels(columns, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows, fontsize=7)
    ax.set_xlabel("backend:algorithm")
    ax.set_ylabel("shape")
    ax.set_title(f"{suite}: speedup over the vendor baseline per shape (★ fastest correct timed cell)", fontsize=10,
                 pad=22)
    ticks = [t for t in range(-int(span), int(span) + 1)]
    bar = fig.colorbar(image, ax=ax, ticks=ticks, fraction=0.04, pad=0.02)
    bar.ax.set_yticklabels([f"{2.0 ** t:g}x" for t in ticks])
    bar.set_label("speedup over torch (x, log2)")
    legend = [Patch(facecolor="0.88", edgecolor="0.6", hatch="///", label="not timed (interpreter: correctness only)"),
              Patch(facecolor="white", edgecolor="0.6", label="n/a (does not apply)"),
              Patch(facecolor="white", edgecolor="white", label="✗ failed or errored")]
    ax.legend(handles=legend, fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    fig.tight_layout()
    name = f"winners-{_slug(suite)}.png"
    fig.savefig(out_dir / name, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return name
