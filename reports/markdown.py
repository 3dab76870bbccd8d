"""Render report tables as Markdown (``report.md``) and as plain text for the terminal."""

from __future__ import annotations

from tabulate import tabulate

from .tables import Table

SECTION_TITLES = {
    "summary": "Summary",
    "timing": "Timings per suite (p50, ms)",
    "speedup": "Speedup over the vendor baseline",
    "algorithms": "Algorithm comparison",
    "training": "Training modes: fprop, dgrad, wgrad",
    "networks": "Whole networks: policies and the per-layer breakdown",
    "throughput": "Throughput and roofline",
    "accuracy": "Accuracy",
    "failures": "Failures",
}


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def table_markdown(t: Table) -> str:
    rows = [[("**" + _md_escape(v) + "**") if (i, j) in t.best and v else _md_escape(v) for j, v in enumerate(row)]
            for i, row in enumerate(t.rows)]
    out = [f"#### {t.title}", ""]
    out.append(tabulate(rows, headers=[_md_escape(h) for h in t.headers], tablefmt="github", disable_numparse=True)
               if rows else "_no cells_")
    out += [""] + [f"_{n}_  " for n in t.notes]
    return "\n".join(out).rstrip() + "\n"


def table_text(t: Table) -> str:
    rows = [[(v + " *") if (i, j) in t.best and v else v for j, v in enumerate(row)] for i, row in enumerate(t.rows)]
    body = tabulate(rows, headers=t.headers, tablefmt="simple", disable_numparse=True) if rows else "(no cells)"
    notes = "".join(f"  note: {n}\n" for n in t.notes)
    return f"== {t.title}\n{body}\n{notes}"


def render_markdown(sections: dict[str, list[Table]], env_lines: list[str], plots: list[str],
                    title: str = "convbench report", *, headline: list[str] | None = None) -> str:
    out = [f"# {title}", ""]
    if headline:  # the answer first, then the plots, then the details
        out += ["## Headline", "", *[f"- {line}" for line in headline], ""]
    if plots:
        out += ["## Plots", ""]
        out += [f"![{p}]({p})" for p in plots]
        out.append("")
    out += ["## Run environment", "", *[f"- {line}" for line in env_lines], ""]
    for name, tables in sections.items():
        if not tables:
            continue
        out += [f"## {SECTION_TITLES.get(name, name)}", ""]
        for t in tables:
            out += [table_markdown(t), ""]
    return "\n".join(out)


def render_text(sections: dict[str, list[Table]], env_lines: list[str],
                include=("summary", "timing", "algorithms", "training", "networks", "accuracy", "failures")) -> str:
    out = [*env_lines, ""]
    for name in include:
        for t in sections.get(name, []):
            out += [table_text(t)]
    return "\n".join(out)
