"""Run history rendered: each cell's p50 over the runs of a history file, as a plot and a table.

The history itself (one JSON line per run) is :mod:`convbench.suites.regress.history`.
"""

from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from convbench.suites.regress.history import load, series

from .plots import pyplot


def plot(history_file, out_png, *, filter: str | None = None, max_cells: int = 40) -> Path:
    """p50 per cell over the runs of ``history_file`` (log scale), one line per cell."""
    plt = pyplot()
    runs = load(history_file)
    if not runs:
        raise ValueError(f"{history_file} holds no readable runs")
    data = {k: v for k, v in series(runs, filter).items() if any(x is not None for x in v)}
    if not data:
        raise ValueError(f"no timed cells{' matching ' + repr(filter) if filter else ''} in {history_file}")
    shown = sorted(data)[:max_cells]
    fig, ax = plt.subplots(figsize=(10, 5.5))
    xs = list(range(len(runs)))
    for key in shown:
        pts = [(x, y) for x, y in zip(xs, data[key]) if y is not None and y > 0]
        if pts:
            ax.plot(*zip(*pts), marker="o", markersize=3, linewidth=1, label=key)
    ax.set_yscale("log")
    ax.set_xlabel("run")
    ax.set_ylabel("p50 (ms)")
    ax.set_xticks(xs)
    ax.set_xticklabels([(r.commit or r.time or str(i))[:12] for i, r in zip(xs, runs)], rotation=45,
                       ha="right", fontsize=7)
    title = f"p50 per cell over {len(runs)} runs"
    if len(data) > len(shown):
        title += f" (first {len(shown)} of {len(data)} cells; narrow with --filter)"
    ax.set_title(title)
    if len(shown) <= 12:
        ax.legend(fontsize=6, loc="best")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def text_summary(history_file, filter: str | None = None, last: int = 5) -> str:
    """The last ``last`` runs' p50 per cell as a table."""
    runs = load(history_file)[-last:]
    data = series(runs, filter)
    headers = ["cell"] + [(r.commit or r.time or r.run)[:12] for r in runs]
    rows = [[k] + ["" if v is None else f"{v:.4g}" for v in vals] for k, vals in data.items()]
    return tabulate(rows, headers=headers) + "\n"
