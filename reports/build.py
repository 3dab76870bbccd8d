"""Build a report folder's ``report.md``, ``report.html`` and plots from its results files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from convbench.suites.measure.records import Record, atomic_write_text, load_run

from . import plots as plotting
from .headline import headline
from .heatmap import heatmap_plots
from .html import render_html
from .markdown import render_markdown, render_text
from .tables import all_tables, env_lines
from .networks import breakdown_tables, network_table
from .training import training_table


@dataclass
class Report:
    markdown: Path
    html: Path
    plots: list[str] = field(default_factory=list)
    text: str = ""
    #: the headline block, a line each (what `convbench run` ends with)
    headline: list[str] = field(default_factory=list)


def with_training(sections: dict, records) -> dict:
    """The sections with the training-modes table and the network tables after the algorithm
    comparison (when the run has backward-mode or network cells)."""
    extra = {}
    table = training_table(records)
    if table is not None:
        extra["training"] = [table]
    nets = network_table(records)
    if nets is not None:
        extra["networks"] = [nets, *breakdown_tables(records)]
    if not extra:
        return sections
    out = {}
    for name, tables in sections.items():
        out[name] = tables
        if name == "algorithms":
            out.update(extra)
    for name, tables in extra.items():
        out.setdefault(name, tables)
    return out


def write_report(out_dir: Path | str, records: list[Record] | None = None, env: dict | None = None, *,
                 with_plots: bool = True, title: str | None = None) -> Report:
    out_dir = Path(out_dir)
    if records is None or env is None:
        records, env = load_run(out_dir)
    sections = with_training(all_tables(records), records)
    lines = env_lines(env)
    top = headline(records, env)
    files: list[str] = []
    if with_plots:
        files += heatmap_plots(records, out_dir)
        files += plotting.speedup_plots(records, out_dir)
        files += plotting.roofline_plots(records, env, out_dir)
    suites = ", ".join(dict.fromkeys(r.suite for r in records)) or "no cells"
    title = title or f"convbench report: {suites}"
    md, page = out_dir / "report.md", out_dir / "report.html"
    atomic_write_text(md, render_markdown(sections, lines, files, title, headline=top.lines()))
    atomic_write_text(page, render_html(sections, lines, files, title, headline=top, plot_dir=out_dir))
    return Report(md, page, files, render_text(sections, lines), top.lines())
