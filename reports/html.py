"""Render report tables as one self-contained HTML page (``report.html``; plots linked beside it)."""

from __future__ import annotations

import html

from .markdown import SECTION_TITLES
from .tables import Table

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; white-space: nowrap; }
th { background: #f2f2f2; } td:first-child, td:nth-child(2) { text-align: left; }
td.best { font-weight: bold; background: #e6f4e6; }
p.note { font-size: 0.8em; color: #555; margin-top: -1em; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
"""


def table_html(t: Table) -> str:
    e = html.escape
    out = [f"<h4>{e(t.title)}</h4>", "<table>", "<tr>" + "".join(f"<th>{e(h)}</th>" for h in t.headers) + "</tr>"]
    for i, row in enumerate(t.rows):
        cells = "".join(f'<td class="best">{e(v)}</td>' if (i, j) in t.best else f"<td>{e(v)}</td>"
                        for j, v in enumerate(row))
        out.append(f"<tr>{cells}</tr>")
    out.append("</table>")
    out += [f'<p class="note">{e(n)}</p>' for n in t.notes]
    return "\n".join(out)


def render_html(sections: dict[str, list[Table]], env_lines: list[str], plots: list[str],
                title: str = "convbench report") -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{e(title)}</title>",
           f"<style>{_STYLE}</style></head><body>", f"<h1>{e(title)}</h1>", "<ul>"]
    out += [f"<li>{e(line)}</li>" for line in env_lines]
    out.append("</ul>")
    for name, tables in sections.items():
        if tables:
            out.append(f"<h2>{e(SECTION_TITLES.get(name, name))}</h2>")
            out += [table_html(t) for t in tables]
    if plots:
        out.append("<h2>Plots</h2>")
        out += [f'<div><img src="{e(p)}" alt="{e(p)}"></div>' for p in plots]
    out.append("</body></html>")
    return "\n".join(out) + "\n"
