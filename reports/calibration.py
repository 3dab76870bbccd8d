"""``convbench calibrate`` rendered: the A/A false alarms, the noise band, the planted-slowdown
power and the per-cell noise table, as Markdown (:mod:`convbench.suites.regress.calibration`
computes them)."""

from __future__ import annotations

from tabulate import tabulate


def render_calibration(cal: dict) -> str:
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
