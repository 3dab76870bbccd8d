"""``convbench report DIR``: report.md, report.html and plots from a results folder;
``convbench report --history FILE``: each cell's p50 over the runs of a history file."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import EXIT_OK, UsageError


def register(sub) -> None:
    p = sub.add_parser("report", help="write report.md/report.html/plots for a results folder",
                       description="Rebuild the report of a `convbench run --out DIR` folder from its "
                                   "results.jsonl and env.json, and print its tables. With --history FILE, "
                                   "plot p50 per cell over the runs in FILE (DIR is then optional).",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("dir", type=Path, nargs="?", default=None, help="the folder a run wrote (holds results.jsonl)")
    p.add_argument("--no-plots", action="store_true", help="tables only, no PNG plots")
    p.add_argument("--quiet", "-q", action="store_true", help="do not print the tables")
    p.add_argument("--history", type=Path, metavar="FILE", help="plot p50 per cell over the runs in FILE")
    p.add_argument("--plot", type=Path, metavar="PNG", help="with --history: the plot file (default FILE.png)")
    p.add_argument("--filter", metavar="SUBSTR", help="with --history: only cells whose key contains SUBSTR")
    p.set_defaults(func=report_command)


def report_command(args) -> int:
    if args.dir is None and args.history is None:
        raise UsageError("give a run folder (DIR) or --history FILE")
    if args.dir is not None:
        _run_report(args)
    if args.history is not None:
        _history_report(args)
    return EXIT_OK


def _run_report(args) -> None:
    # lazily, as in every command: the parsers need none of the layers (torch alone takes seconds)
    from convbench.reports.build import write_report
    from convbench.suites.measure.records import load_run

    if not args.dir.is_dir():
        raise UsageError(f"{args.dir} is not a folder")
    try:
        records, env = load_run(args.dir)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    report = write_report(args.dir, records, env, with_plots=not args.no_plots)
    if not args.quiet:
        print(report.text)
    print(f"wrote {report.markdown} and {report.html}" + (f" and {len(report.plots)} plots" if report.plots else ""))


def _history_report(args) -> None:
    # lazily: the parsers need none of the layers (torch alone takes seconds to import)
    from convbench.reports import history

    out = args.plot or args.history.with_suffix(".png")
    try:
        history.plot(args.history, out, filter=args.filter)
        text = history.text_summary(args.history, args.filter)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not args.quiet:
        print(text)
    print(f"wrote {out}")
