"""``report.html``: one self-contained page that leads with the answer.

Order: the headline block (device and versions, geomean speedups per suite and dtype, shapes won,
correctness), then the plots, then the details (every table, in collapsible sections).  The
plots are embedded as PNG data URIs and the CSS and the few lines of script are inline, so the
file alone (attached to a CI run, e-mailed) shows everything and fetches nothing.  Tables scroll
inside their section with sticky headers; a click on a header sorts by that column.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from .markdown import SECTION_TITLES
from .tables import Table

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.2em 2em; color: #222;
       max-width: 1500px; }
h1 { font-size: 1.4em; margin: 0 0 0.2em; } h2 { font-size: 1.15em; margin: 1.2em 0 0.4em; }
h4 { margin: 0.8em 0 0.3em; font-size: 0.95em; }
p.device { color: #444; margin: 0 0 0.8em; font-size: 0.9em; }
section.headline { border: 1px solid #cdd; background: #f6fafb; padding: 0.6em 1em; border-radius: 6px; }
.headline table { margin: 0.3em 0; } .headline p.note { margin: 0.2em 0 0.6em; }
.verdict-ok { color: #165c1e; font-weight: 600; } .verdict-bad { color: #a31515; font-weight: 600; }
.scroll { overflow: auto; max-height: 75vh; max-width: 100%; border: 1px solid #ddd; margin: 0.3em 0 1em; }
table { border-collapse: collapse; font-size: 0.82em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; white-space: nowrap; }
th { background: #eef0f2; position: sticky; top: 0; z-index: 1; cursor: pointer; user-select: none; }
th.sorted-asc::after { content: " ▲"; } th.sorted-desc::after { content: " ▼"; }
td:first-child, td:nth-child(2) { text-align: left; }
td.best { font-weight: bold; background: #e6f4e6; }
p.note { font-size: 0.8em; color: #555; margin: -0.6em 0 0.8em; }
figure { margin: 0.5em 0 1.2em; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.8em; color: #555; }
details { margin: 0.4em 0; } summary { font-size: 1.05em; font-weight: 600; cursor: pointer; padding: 0.2em 0; }
"""

#: click a header to sort its table (numbers by value, text otherwise); no external library
SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.querySelectorAll("th");
  heads.forEach(function (th, col) {
    th.addEventListener("click", function () {
      var asc = !th.classList.contains("sorted-asc");
      heads.forEach(function (h) { h.classList.remove("sorted-asc", "sorted-desc"); });
      th.classList.add(asc ? "sorted-asc" : "sorted-desc");
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var key = function (row) {
        var text = row.cells[col] ? row.cells[col].textContent.trim() : "";
        var num = parseFloat(text.replace(/^[^0-9.+-]+/, ""));
        return isNaN(num) ? [1, text] : [0, num * (/us$/.test(text) ? 1e-3 : 1)];
      };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b), d = x[0] - y[0] || (x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0);
        return asc ? d : -d;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""

#: sections open when the page loads (the rest are collapsed)
OPEN_SECTIONS = ("summary", "algorithms", "training", "networks", "failures")


def table_html(t: Table, *, sortable: bool = True) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in t.headers)
    body = []
    for i, row in enumerate(t.rows):
        cells = "".join(f'<td class="best">{e(v)}</td>' if (i, j) in t.best else f"<td>{e(v)}</td>"
                        for j, v in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    cls = ' class="sortable"' if sortable else ""
    out = [f"<h4>{e(t.title)}</h4>", f'<div class="scroll"><table{cls}><thead><tr>{head}</tr></thead><tbody>',
           *body, "</tbody></table></div>"]
    out += [f'<p class="note">{e(n)}</p>' for n in t.notes]
    return "\n".join(out)


def png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def figure_html(uri: str, caption: str) -> str:
    e = html.escape
    return f'<figure><img src="{uri}" alt="{e(caption)}"><figcaption>{e(caption)}</figcaption></figure>'


def page(title: str, body: list[str]) -> str:
    """A complete page: inline CSS, the body, the sorting script."""
    e = html.escape
    return "\n".join(["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
                      '<meta name="viewport" content="width=device-width, initial-scale=1">',
                      f"<title>{e(title)}</title>", f"<style>{STYLE}</style></head><body>", *body,
                      f"<script>{SORT_SCRIPT}</script>", "</body></html>"]) + "\n"


def headline_html(headline) -> str:
    """The headline block (a :class:`~.headline.Headline`): the speedup table, the correctness line."""
    e = html.escape
    speedups, correctness = headline.speedups, headline.correctness
    out = ['<section class="headline" id="headline">', "<h2>Headline</h2>"]
    if speedups:
        out.append('<table><thead><tr><th>suite</th><th>dtype</th><th>backend</th><th>geomean speedup '
                   '[95% interval]</th><th>shapes</th><th>most often best</th><th>shapes won (all columns)</th>'
                   "</tr></thead><tbody>")
        for s in speedups:
            wins = ", ".join(f"{name} {n}" for name, n in s.wins.most_common()) or "none timed"
            for i, b in enumerate(s.backends):
                value = (f"{b.geomean:.2f}x [{b.lo:.2f}, {b.hi:.2f}]" if b.geomean is not None
                         else f"not timed ({b.untimed} cells: correctness only)")
                first = f'<td rowspan="{len(s.backends)}">{e(wins)}</td>' if i == 0 else ""
                out.append(f"<tr><td>{e(s.suite)}</td><td>{e(s.dtype)}</td><td>{e(b.backend)}</td>"
                           f"<td>{e(value)}</td><td>{b.shapes or ''}</td><td>{e(b.best_algorithm)}</td>{first}</tr>")
        out.append("</tbody></table>")
        out.append('<p class="note">geomean over shapes of each backend\'s best correct algorithm per shape; the '
                   "interval carries each cell's bootstrap interval (delta method), not the choice of shapes.</p>")
    else:
        out.append("<p>No timed cells with a vendor baseline.</p>")
    cls = "verdict-ok" if correctness.ok else "verdict-bad"
    out.append(f'<p class="{cls}">{e(correctness.text())}</p>')
    out.append("</section>")
    return "\n".join(out)


def render_html(sections: dict[str, list[Table]], env_lines: list[str], plots: list[str],
                title: str = "convbench report", *, headline=None, plot_dir: Path | None = None) -> str:
    """The report page.  ``plots``: PNG names under ``plot_dir`` (embedded as data URIs; without
    ``plot_dir`` they are linked by name); ``headline``: a :class:`~.headline.Headline`."""
    e = html.escape
    body = [f"<h1>{e(title)}</h1>"]
    if headline is not None:
        body.append(f'<p class="device">{e(headline.device)}</p>')
        body.append(headline_html(headline))
    if plots:
        body.append('<section id="plots"><h2>Plots</h2>')
        for name in plots:
            uri = png_data_uri(plot_dir / name) if plot_dir is not None else e(name)
            body.append(figure_html(uri, name))
        body.append("</section>")
    body.append('<section id="details"><h2>Details</h2>')
    body.append("<details><summary>Run environment</summary><ul>"
                + "".join(f"<li>{e(line)}</li>" for line in env_lines) + "</ul></details>")
    for name, tables in sections.items():
        if tables:
            opened = " open" if name in OPEN_SECTIONS else ""
            body.append(f'<details id="section-{e(name)}"{opened}><summary>{e(SECTION_TITLES.get(name, name))} '
                        f"({len(tables)} table{'s' if len(tables) != 1 else ''})</summary>")
            body += [table_html(t) for t in tables]
            body.append("</details>")
    body.append("</section>")
    return page(title, body)
