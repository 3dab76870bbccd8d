"""``convbench tune``: fill the tuning cache for a suite's Triton conv2d cells ahead of a run.

Each cell's candidates (the algorithm's configs that can run it) are pruned by the static
analysis for the GPU's target and timed with the suite's timer; the winner goes into the
persistent cache (``--cache FILE`` or ``$CONVBENCH_TUNE_CACHE``, default
``~/.cache/convbench/tune.json``) that ``conv2d(..., config="tune")``, ``convbench run --tune``
and ``algorithm="auto"`` read.  Without a GPU nothing is tuned: the command says
"not tuned: no GPU" and exits 0, so scripts run unchanged on a CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .common import EXIT_FAILURES, EXIT_OK, UsageError, csv_list


def register(sub) -> None:
    p = sub.add_parser(
        "tune", help="autotune Triton conv2d launch configs for a suite (fills the tuning cache)",
        description="Tune the launch config of every Triton conv2d cell of the selected suites: candidates "
                    "pruned by the static analysis for the GPU's target (spills, shared memory), timed "
                    "with the suite's timer (warm-up, L2 flush), the fastest stored in the tuning cache.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--suite", "-s", type=csv_list, action="extend", metavar="NAMES",
                   help="comma-separated suites (default: quick)")
    p.add_argument("--algorithms", "-a", type=csv_list, metavar="NAMES", help="only these conv2d algorithms")
    p.add_argument("--dtypes", "-d", type=csv_list, metavar="DTYPES", help="fp32, tf32, fp16, bf16")
    p.add_argument("--layouts", "-l", type=csv_list, metavar="LAYOUTS", help="nchw, nhwc")
    p.add_argument("--shapes", type=csv_list, metavar="TEXT", help="only cases whose shape contains TEXT")
    p.add_argument("--batch", type=int, help="override every case's batch size")
    p.add_argument("--scale", type=float, default=1.0, help="shrink the cases by this factor")
    p.add_argument("--cache", type=Path, metavar="FILE", help="the tuning cache file ($CONVBENCH_TUNE_CACHE)")
    p.add_argument("--force", action="store_true", help="re-tune cells the cache already holds")
    p.add_argument("--max-time", type=float, default=0.2, help="timing budget per candidate in seconds")
    p.add_argument("--quiet", "-q", action="store_true", help="only the summary line")
    p.set_defaults(func=tune_command)


def tune_command(args) -> int:
    # lazily: the parsers need none of the layers (torch alone takes seconds to import)
    from convbench.suites.measure.inputs import InputCache
    from convbench.suites.measure.stats import StopRule
    from convbench.suites.measure.tune import tune_cell
    from convbench.runtime import cuda_available
    from convbench.suites.plan.backends import to_device
    from convbench.suites.plan.select import check_names, select_cells

    backend = "triton" if cuda_available() else "triton-interpret"
    try:
        check_names(args.suite, [backend], ops=["conv2d"], dtypes=args.dtypes, layouts=args.layouts)
        selection = select_cells(args.suite, [backend], ops=["conv2d"], algorithms=args.algorithms,
                                 dtypes=args.dtypes, layouts=args.layouts, shapes=args.shapes, scale=args.scale,
                                 batch=args.batch, interpret_max_flops=float("inf"))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.cache is not None:
        os.environ["CONVBENCH_TUNE_CACHE"] = str(args.cache)
    cells = [c for c in selection.cells if c.backend == backend]
    if backend != "triton":
        print(f"convbench tune: not tuned: no GPU ({len(cells)} Triton conv2d cells would be tuned on a GPU; "
              "on this machine they run their heuristic configs)", file=sys.stderr)
        return EXIT_OK
    # lazily: the cache path follows --cache
    from convbench.kernels import tuning

    rule = StopRule(min_samples=5, max_samples=200, target_noise=0.02, max_time_s=args.max_time)
    inputs = InputCache(0, 0.0)
    counts: dict[str, int] = {}
    spent = 0.0
    b = selection.backends[backend]
    for cell in cells:
        if b.unsupported(cell.case, cell.algorithm, cell.dtype, cell.layout):
            counts["skipped"] = counts.get("skipped", 0) + 1
            continue
        tensors, _, _ = inputs.get(cell.case, cell.dtype, reference=False)
        outcome = tune_cell(cell, to_device(tensors, "cuda", cell.layout), rule, force=args.force)
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
        spent += outcome.tuning_s
        if not args.quiet:
            detail = outcome.message if outcome.status == "error" else \
                f"{outcome.config} {outcome.ms:.4f} ms ({outcome.pruned}/{outcome.candidates} pruned)"
            print(f"{outcome.status:7s} {cell}  {detail}")
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    print(f"convbench tune: {len(cells)} cells: {summary}; {spent:.1f} s tuning -> {tuning.cache_path()}",
          file=sys.stderr)
    return EXIT_FAILURES if counts.get("error") else EXIT_OK
