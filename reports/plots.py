"""PNG plots (matplotlib, Agg backend): speedup per shape, and the roofline with every timed cell.

* ``speedup-<suite>-<dtype>-<layout>.png``: a row per shape (every op), one bar per backend:algorithm
  with its speedup over the vendor baseline (log scale, 95% bootstrap interval as error bars, 1x line);
* ``roofline-<device>.png``: arithmetic intensity (nominal operations / minimum bytes) against
  achieved operations per second, under the bandwidth roof and the matmul roofs measured in the
  same run; every timed cell is one point (colour: backend:algorithm, marker: operator family).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path

from convbench.suites.measure.records import Record

from .tables import _groups, column_name

_MARKERS = {"conv2d": "o", "conv_transpose2d": "s", "max_pool2d": "v", "avg_pool2d": "^",
            "adaptive_avg_pool2d": "<", "batch_norm": "D", "layer_norm": "P", "instance_norm": "X",
            "group_norm": "*"}


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (imported when a plot is drawn: it is heavy, and
    the backend must be chosen before pyplot is first imported)."""
    import matplotlib  # heavy: imported only when a plot is drawn

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt  # heavy: imported only when a plot is drawn

    return plt


def _slug(*parts: str) -> str:
    return "-".join(re.sub(r"[^A-Za-z0-9_.]+", "_", p).strip("_") for p in parts)


def speedup_plots(records: list[Record], out_dir: Path) -> list[str]:
    """One horizontal bar chart per (suite, dtype, layout): a row per shape, a bar per algorithm."""
    plt = pyplot()
    files = []
    panels: OrderedDict = OrderedDict()
    untimed: dict = {}
    for (suite, op, dtype, layout), group in _groups(records).items():
        cells = [r for r in group if r.speedup is not None]
        missing = sum(1 for r in group if r.status == "ok" and r.p50_ms is None)
        untimed[(suite, dtype, layout)] = untimed.get((suite, dtype, layout), 0) + missing
        if cells:
            panels.setdefault((suite, dtype, layout), []).extend(cells)
    for (suite, dtype, layout), cells in panels.items():
        rows = list(OrderedDict.fromkeys(f"{r.op}: {r.label or r.shape}" for r in cells))
        series: OrderedDict = OrderedDict()
        for r in cells:
            series.setdefault(column_name(r), {})[f"{r.op}: {r.label or r.shape}"] = r
        height = 0.8 / max(len(series), 1)
        fig, ax = plt.subplots(figsize=(8.0, 1.2 + 0.22 * len(rows) * max(1, len(series)) ** 0.6))
        for i, (name, by_row) in enumerate(series.items()):
            ys, xs, lo, hi = [], [], [], []
            for j, row in enumerate(rows):
                r = by_row.get(row)
                if r is None:
                    continue
                ys.append(j + (i - (len(series) - 1) / 2) * height)
                xs.append(r.speedup)
                lo.append(max(r.speedup - r.speedup_lo, 0))
                hi.append(max(r.speedup_hi - r.speedup, 0))
            ax.barh(ys, xs, height, xerr=[lo, hi], capsize=1.5, label=name)
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels(rows, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("speedup over torch (x, log scale; 95% bootstrap interval)")
        ax.set_ylabel("shape")
        note = untimed[(suite, dtype, layout)]
        ax.set_title(f"{suite} · {dtype} · {layout}: speedup over the vendor baseline"
                     + (f"\n({note} cells not timed: interpreter, correctness only; not drawn)" if note else ""),
                     fontsize=10)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        name = f"speedup-{_slug(suite, dtype, layout)}.png"
        fig.savefig(out_dir / name, dpi=110)
        plt.close(fig)
        files.append(name)
    return files


def roofline_plots(records: list[Record], env: dict, out_dir: Path) -> list[str]:
    plt = pyplot()
    files = []
    peaks_by_device = env.get("peaks") or {}
    for device in sorted({r.device for r in records}):
        timed = [r for r in records if r.device == device and r.p50_ms and r.flops and r.min_bytes]
        if not timed:
            continue
        untimed = sum(1 for r in records if r.device == device and r.status != "skipped" and not r.p50_ms)
        fig, ax = plt.subplots(figsize=(7.5, 5))
        ai = [r.flops / r.min_bytes for r in timed]
        lo_x, hi_x = min(ai) / 2, max(ai) * 2
        peaks = peaks_by_device.get(device) or {}
        bw = peaks.get("copy_gbps")
        roofs = peaks.get("matmul_tflops") or {}
        top = max(roofs.values(), default=None)
        if bw:  # the bandwidth roof, up to the highest compute roof
            knee = min(hi_x, top * 1e3 / bw) if top else hi_x
            ax.plot([lo_x, knee], [lo_x * bw / 1e3, knee * bw / 1e3], "k--", lw=1, label=f"copy {bw:.0f} GB/s")
        styles = iter([":", "-.", (0, (1, 3)), (0, (5, 2)), (0, (3, 1, 1, 1))])
        for dtype, tf in roofs.items():
            ax.axhline(tf, lw=0.9, ls=next(styles, ":"), color="gray", label=f"{dtype} matmul {tf:.3g} TFLOP/s")
        seen = set()
        colors: dict[str, str] = {}
        cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for r, x in zip(timed, ai):
            col = f"{column_name(r)} {r.dtype}"
            color = colors.setdefault(col, cycle[len(colors) % len(cycle)])
            label = col if col not in seen else None
            seen.add(col)
            ax.scatter([x], [r.flops / (r.p50_ms * 1e-3) / 1e12], marker=_MARKERS.get(r.op, "o"), color=color,
                       s=22, label=label, alpha=0.85)
        ax.set_xscale("log")
        ax.set_yscale("log")
        highest = max([r.flops / (r.p50_ms * 1e-3) / 1e12 for r in timed] + ([top] if top else []))
        ax.set_ylim(top=highest * 3)
        ax.set_xlabel("arithmetic intensity (nominal ops / minimum byte)")
        ax.set_ylabel("achieved TFLOP/s (nominal ops)")
        title = f"roofline · {env.get('gpu') or 'CPU'}" if device == "cuda" else "roofline · CPU"
        if untimed:
            title += f"  ({untimed} untimed cells not placed)"
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=6, ncol=2, loc="lower right")
        fig.tight_layout()
        name = f"roofline-{_slug(device)}.png"
        fig.savefig(out_dir / name, dpi=110)
        plt.close(fig)
        files.append(name)
    return files
