"""``convbench report DIR``: report.md, report.html and plots from a results folder.

Other command modules may extend this command: ``sub.choices["report"]`` is its parser (add
arguments there) and wrapping ``parser.get_default("func")`` with ``set_defaults(func=...)``
lets them act on the new arguments.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .cli import EXIT_OK, UsageError


def register(sub) -> None:
    p = sub.add_parser("report", help="write report.md/report.html/plots for a results folder",
                       description="Rebuild the report of a `convbench run --out DIR` folder from its "
                                   "results.jsonl and env.json, and print its tables.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("dir", type=Path, help="the folder a run wrote (holds results.jsonl)")
    p.add_argument("--no-plots", action="store_true", help="tables only, no PNG plots")
    p.add_argument("--quiet", "-q", action="store_true", help="do not print the tables")
    p.set_defaults(func=report_command)


def report_command(args) -> int:
    from reports.build import load, write_report

    if not args.dir.is_dir():
        raise UsageError(f"{args.dir} is not a folder")
    try:
        records, env = load(args.dir)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    report = write_report(args.dir, records, env, with_plots=not args.no_plots)
    if not args.quiet:
        print(report.text)
    print(f"wrote {report.markdown} and {report.html}" + (f" and {len(report.plots)} plots" if report.plots else ""))
    return EXIT_OK
