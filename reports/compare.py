"""``convbench compare`` rendered: the per-cell verdict table and the summary lines, as terminal
text, Markdown, JSON or one self-contained HTML page (regressions first, then a per-cell ratio plot
with intervals and the threshold band, then the full table).  The verdicts themselves are :mod:`convbench.suites.regress.verdicts`."""

from __future__ import annotations

import base64
import html
import io
import json
import math

from tabulate import tabulate

from convbench.suites.regress.verdicts import Comparison, get_field, median_ms, to_dict

from .html import figure_html, page, table_html
from .tables import Table

_ORDER = {"SLOWER": 0, "UNSURE": 2, "FASTER": 3, "SAME": 4, "UNTIMED": 5}


def _fmt(x, spec=".3f"):
    return "" if x is None else format(x, spec)


def _rows(cmp: Comparison, show: str):
    cells = sorted(cmp.cells, key=lambda c: (0 if c.regression else _ORDER[c.verdict],
                                             -(c.ratio or 0), c.key))
    for c in cells:
        if show == "changed" and c.verdict in ("SAME", "UNTIMED") and not c.correctness:
            continue
        b_med = median_ms(get_field(c.base, "samples_ms")) if get_field(c.base, "samples_ms") else None
        n_med = median_ms(get_field(c.new, "samples_ms")) if get_field(c.new, "samples_ms") else None
        ci = f"[{c.ci_lo:.3f}, {c.ci_hi:.3f}]" if c.ci_lo is not None else ""
        yield (c.verdict, c.correctness, c.key, _fmt(b_med, ".4g"), _fmt(n_med, ".4g"),
               _fmt(c.ratio), ci, _fmt(c.q, ".2g"), c.note)


HEADERS = ("verdict", "correctness", "cell", "base p50 ms", "new p50 ms", "new/base", "95% CI",
           "q (BH)", "note")


def summary_lines(cmp: Comparison) -> list[str]:
    counts = cmp.counts()
    gm = cmp.geomean()
    lines = [f"{len(cmp.cells)} cells compared ({cmp.base_label} -> {cmp.new_label}); threshold "
             f"{cmp.threshold:.0%}, FDR {cmp.alpha:g}: "
             + ", ".join(f"{n} {v}" for v, n in counts.items() if n)]
    if gm is not None:
        lines.append(f"geometric mean of median ratios new/base: {gm:.3f} "
                     f"({'slower' if gm > 1 else 'faster'} by {abs(gm - 1):.1%})")
        backends = sorted({get_field(c.new, "backend") for c in cmp.cells if c.ratio is not None})
        if len(backends) > 1:
            per = [f"{b} {cmp.geomean([c for c in cmp.cells if get_field(c.new, 'backend') == b]):.3f}"
                   for b in backends]
            lines.append("  per backend: " + ", ".join(per))
    if cmp.probe_ratio is not None:
        lines.append(f"machine speed by the probe, new/base: x{cmp.probe_ratio:.3f} (median probe time); "
                     f"{cmp.probe_cells} cell(s) put on the base run's probe scale round by round")
    if cmp.drift:
        lines.append("run-wide drift new/base, divided out before the per-cell verdicts: "
                     + ", ".join(f"{b} x{f:.3f}" for b, f in sorted(cmp.drift.items())))
        if cmp.drift_regressions:
            lines.append(f"WARNING: every {', '.join(cmp.drift_regressions)} cell moved together beyond the "
                         f"{cmp.threshold:.0%} threshold: a slower machine or a change common to all cells"
                         + (" (fails: --fail-on-drift)" if cmp.fail_on_drift else ""))
    elif cmp.normalize == "none":
        lines.append("raw times compared (no run-wide drift correction)")
    if cmp.probe_cells or cmp.drift:
        lines.append("new/base and its 95% CI are on the corrected scale; the p50 columns are raw medians")
    for label, short in ((cmp.base_label, cmp.short_base), (cmp.new_label, cmp.short_new)):
        if short:
            lines.append(f"WARNING: {len(short)} timed cell(s) of {label} have fewer timing rounds than their run "
                         "asked for (interrupted and not resumed: `convbench run --resume --out DIR` finishes "
                         "them); their verdicts rest on fewer rounds")
    if cmp.only_base:
        lines.append(f"{len(cmp.only_base)} cell(s) only in {cmp.base_label}: " + ", ".join(cmp.only_base))
    if cmp.only_new:
        lines.append(f"{len(cmp.only_new)} cell(s) only in {cmp.new_label}: " + ", ".join(cmp.only_new))
    regs = cmp.regressions
    if regs:
        lines.append(f"FAIL: {len(regs)} regression(s): " + ", ".join(c.key for c in regs))
    elif cmp.failed:
        lines.append("FAIL: run-wide slowdown of " + ", ".join(cmp.drift_regressions))
    else:
        lines.append("OK: no significant slowdown beyond the threshold, no correctness lost")
    return lines


def render(cmp: Comparison, fmt: str = "terminal", show: str = "all") -> str:
    if fmt == "json":
        return json.dumps(to_dict(cmp), indent=1) + "\n"
    if fmt == "html":
        return render_html(cmp, show)
    rows = list(_rows(cmp, show))
    if fmt == "markdown":
        text = ["# convbench compare", "", *[f"- {line}" for line in summary_lines(cmp)], ""]
        if rows:
            text.append(tabulate(rows, headers=HEADERS, tablefmt="github"))
        return "\n".join(text) + "\n"
    if fmt != "terminal":
        raise ValueError(f"format must be terminal, markdown, json or html, got {fmt!r}")
    table = tabulate(rows, headers=HEADERS, tablefmt="simple") + "\n\n" if rows else ""
    return table + "\n".join(summary_lines(cmp)) + "\n"




# ------------------------------------------------------------------------------ HTML
#: at most this many cells in the ratio plot (regressions and the largest changes first)
PLOT_CELLS = 60
_COLOURS = {"SLOWER": "#c0392b", "FASTER": "#1f77b4", "UNSURE": "#e69f00", "SAME": "#555555"}


def ratio_plot_png(cmp: Comparison) -> bytes | None:
    """Per-cell new/base ratio with its 95% interval on a log axis, the threshold band shaded;
    None when no cell was timed on both sides."""
    from .plots import pyplot  # matplotlib is heavy: only when an HTML comparison is drawn
    from matplotlib import ticker  # (after pyplot chose the Agg backend)

    cells = sorted((c for c in cmp.cells if c.ratio is not None and c.ratio > 0),
                   key=lambda c: (not c.regression, -abs(math.log(c.ratio)), c.key))
    if not cells:
        return None
    shown = cells[:PLOT_CELLS]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9.0, 1.6 + 0.24 * len(shown)))
    lo_band, hi_band = 1.0 / (1.0 + cmp.threshold), 1.0 + cmp.threshold
    ax.axvspan(lo_band, hi_band, color="0.9", label=f"threshold ±{cmp.threshold:.0%}")
    ax.axvline(1.0, color="k", lw=0.8)
    for verdict in dict.fromkeys(c.verdict for c in shown):
        pts = [(i, c) for i, c in enumerate(shown) if c.verdict == verdict]
        xs = [c.ratio for _, c in pts]
        err = [[max(c.ratio - (c.ci_lo if c.ci_lo is not None else c.ratio), 0) for _, c in pts],
               [max((c.ci_hi if c.ci_hi is not None else c.ratio) - c.ratio, 0) for _, c in pts]]
        ax.errorbar(xs, [i for i, _ in pts], xerr=err, fmt="o", ms=4, capsize=2, lw=1,
                    color=_COLOURS.get(verdict, "#555555"), label=verdict)
    ax.set_yticks(range(len(shown)))
    ax.set_yticklabels([c.key for c in shown], fontsize=6)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:.3g}x"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel("new / base median time (x, log scale; > 1 slower; 95% interval)")
    ax.set_ylabel("cell")
    more = f" (the {len(shown)} largest changes of {len(cells)})" if len(cells) > len(shown) else ""
    ax.set_title(f"per-cell time ratio new / base{more}", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def render_html(cmp: Comparison, show: str = "all") -> str:
    """One self-contained page: the verdict and summary, the regressions, the ratio plot, the table."""
    e = html.escape
    lines = summary_lines(cmp)
    verdict = lines[-1]
    body = [f"<h1>convbench compare: {e(cmp.base_label)} -> {e(cmp.new_label)}</h1>",
            '<section class="headline" id="headline"><h2>Headline</h2>',
            f'<p class="{"verdict-bad" if cmp.failed else "verdict-ok"}">{e(verdict)}</p><ul>',
            *[f"<li>{e(line)}</li>" for line in lines[:-1]], "</ul></section>"]
    rows = [list(r) for r in _rows(cmp, "all")]
    regressions = [r for r in rows if r[0] == "SLOWER" or r[1]]
    body.append('<section id="regressions"><h2>Regressions and correctness changes</h2>')
    body.append(table_html(Table(f"{len(regressions)} cell(s) slower beyond the threshold or with a correctness "
                                 "change", list(HEADERS), regressions)) if regressions
                else "<p>None: no cell is significantly slower beyond the threshold, no correctness change.</p>")
    body.append("</section>")
    png = ratio_plot_png(cmp)
    body.append('<section id="plots"><h2>Per-cell ratio</h2>')
    body.append(figure_html("data:image/png;base64," + base64.b64encode(png).decode("ascii"),
                            "new/base time ratio per cell, 95% interval, threshold band") if png
                else "<p>No cell was timed on both sides.</p>")
    body.append("</section>")
    table_rows = [list(r) for r in _rows(cmp, show)]
    body.append('<section id="details"><h2>Every cell</h2>')
    body.append(table_html(Table(f"{len(table_rows)} cells ({show})", list(HEADERS), table_rows)))
    body.append("</section>")
    return page(f"convbench compare {cmp.base_label} -> {cmp.new_label}", body)
