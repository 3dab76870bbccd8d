"""``convbench compare`` rendered: the per-cell verdict table and the summary lines, as terminal
text, Markdown or JSON.  The verdicts themselves are :mod:`convbench.suites.regress.verdicts`."""

from __future__ import annotations

import json

from tabulate import tabulate

from convbench.suites.regress.verdicts import Comparison, get_field, median_ms, to_dict

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
    rows = list(_rows(cmp, show))
    if fmt == "markdown":
        text = ["# convbench compare", "", *[f"- {line}" for line in summary_lines(cmp)], ""]
        if rows:
            text.append(tabulate(rows, headers=HEADERS, tablefmt="github"))
        return "\n".join(text) + "\n"
    if fmt != "terminal":
        raise ValueError(f"format must be terminal, markdown or json, got {fmt!r}")
    table = tabulate(rows, headers=HEADERS, tablefmt="simple") + "\n\n" if rows else ""
    return table + "\n".join(summary_lines(cmp)) + "\n"


