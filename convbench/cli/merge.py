"""``convbench merge OUT RUN...``: join shard folders (``convbench run --shard I/N``) into one run.

Refuses shards of different selections, code versions or devices unless ``--allow-mixed``; lists
the cells no shard ran and those two shards both ran; writes ``OUT`` (records, env with every
shard's env and device, the report) and appends it to the history, like a run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import EXIT_FAILURES, EXIT_OK, UsageError


def register(sub) -> None:
    p = sub.add_parser("merge", help="join shard folders into one run (records, env per shard, report)",
                       description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("out", type=Path, help="the merged run folder to write")
    p.add_argument("runs", type=Path, nargs="+", help="the shard folders")
    p.add_argument("--allow-mixed", action="store_true",
                   help="merge shards of different selections, code versions or devices (and say so)")
    p.add_argument("--no-report", action="store_true", help="write results only")
    p.add_argument("--no-plots", action="store_true", help="no PNG plots")
    p.add_argument("--no-history", action="store_true", help="do not append the merged run to a history file")
    p.set_defaults(func=merge_command)


def merge_command(args) -> int:
    # lazily: the parsers need none of the layers
    from convbench.reports.build import write_report
    from convbench.suites.measure.merge import merge, write_merged

    if args.out.resolve() in {r.resolve() for r in args.runs}:
        raise UsageError(f"OUT {args.out} is one of the shard folders; merge into a new folder")
    try:
        merged = merge(args.runs, allow_mixed=args.allow_mixed)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    write_merged(args.out, merged)
    for line in merged.mixed:
        print(f"mixed: {line}", file=sys.stderr)
    for key in merged.duplicates:
        print(f"duplicate: {key}", file=sys.stderr)
    for key in merged.missing:
        print(f"missing: {key}", file=sys.stderr)
    if not args.no_report:
        write_report(args.out, merged.records, merged.env, with_plots=not args.no_plots)
    if not args.no_history:
        from .run import _append_history  # the same history rule as a run

        _append_history(args.out.parent / "history.jsonl", args.out)
    failures = [r for r in merged.records if r.status in ("fail", "error")]
    print(f"merged {len(args.runs)} shard(s) into {args.out}: {len(merged.records)} cells, "
          f"{len(merged.missing)} missing, {len(merged.duplicates)} duplicate, {len(failures)} failed or errored",
          file=sys.stderr)
    return EXIT_FAILURES if failures or merged.missing else EXIT_OK
