"""``convbench compare BASE NEW``: per-cell verdicts on two runs (:mod:`convbench.suites.regress.verdicts`),
rendered by :mod:`convbench.reports.compare`; exit status 1 on a regression."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import EXIT_FAILURES, EXIT_OK, UsageError, add_stat_options, check_stat_options, emit


def register(sub) -> None:
    p = sub.add_parser(
        "compare", help="compare two runs cell by cell (FASTER/SLOWER/SAME/UNSURE); exit 1 on regression",
        description="Compare two runs (folders or results.jsonl files). Per cell, with the timing round as "
                    "the unit: Welch's t on the logs of the round medians (a Mann-Whitney U test on the raw "
                    "samples only when a side has fewer than 3 rounds), Benjamini-Hochberg FDR control over "
                    "cells, plus a minimum effect size (--threshold); CPU rounds are first put on the speed "
                    "probe's scale and each backend's run-wide drift is divided out (--normalize). "
                    "Correctness changes are flagged. Exit status 1 when a cell is significantly slower "
                    "beyond the threshold or lost correctness.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("base", type=Path, help="baseline run folder or results.jsonl")
    p.add_argument("new", type=Path, help="new run folder or results.jsonl")
    add_stat_options(p)
    p.add_argument("--err-growth", type=float, default=10.0, help="flag a max relative error that grew this many times")
    p.add_argument("--fail-on-drift", action="store_true",
                   help="also exit 1 when a whole backend's run slowed beyond the threshold")
    p.add_argument("--format", choices=("terminal", "markdown", "json", "html"), default="terminal",
                   help="html: one self-contained page (regressions, ratio plot, table); use with --out")
    p.add_argument("--show", choices=("all", "changed"), default="all",
                   help="list every cell, or only those not SAME/untimed-and-unchanged")
    p.add_argument("--out", type=Path, help="write the report to FILE (e.g. report.md) instead of stdout")
    p.set_defaults(func=compare_command)


def compare_command(args) -> int:
    # lazily: the parsers need none of the layers (torch alone takes seconds to import)
    from convbench.reports import compare as render
    from convbench.suites.regress import verdicts

    check_stat_options(args)
    try:
        cmp = verdicts.compare_paths(args.base, args.new, threshold=args.threshold, alpha=args.alpha,
                                     err_growth=args.err_growth, normalize=args.normalize,
                                     fail_on_drift=args.fail_on_drift)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    emit(render.render(cmp, args.format, args.show), args.out)
    if args.out is not None:
        print("\n".join(render.summary_lines(cmp)), file=sys.stderr)
    return EXIT_FAILURES if cmp.failed else EXIT_OK
