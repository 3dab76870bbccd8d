"""``convbench calibrate``: run one selection several times (A/A) and measure how often
``compare`` cries wolf, how wide each cell's run-to-run noise is, and how often a planted
slowdown is named, to choose ``--threshold`` from data (:mod:`convbench.suites.regress.calibration`,
rendered by :mod:`convbench.reports.calibration`)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from .common import EXIT_OK, UsageError, add_stat_options, check_stat_options, csv_list


def register(sub) -> None:
    p = sub.add_parser(
        "calibrate", help="run a selection twice (A/A): false-alarm rate and per-cell noise band",
        description="Run the same cells --runs times and compare every pair of runs as if one were a change: "
                    "any FASTER/SLOWER call is a false alarm. Reports the false-alarm rate, the per-cell "
                    "|median ratio - 1| quantiles, and a --threshold that would have raised no alarm.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--suite", "-s", type=csv_list, default=["quick"], metavar="NAMES")
    p.add_argument("--backends", "--backend", "-b", type=csv_list, metavar="NAMES",
                   help="default: torch,triton on a GPU, numpy,torch on a CPU (interpreter cells are not timed)")
    p.add_argument("--ops", type=csv_list, metavar="OPS")
    p.add_argument("--dtypes", "-d", type=csv_list, metavar="DTYPES",
                   help="default: fp32,tf32,fp16,bf16 on a GPU, fp32,fp64 on a CPU (numpy runs fp64 only)")
    p.add_argument("--layouts", "-l", type=csv_list, metavar="LAYOUTS", help="nchw, nhwc; default: nchw")
    p.add_argument("--shapes", type=csv_list, metavar="TEXT")
    p.add_argument("--runs", type=int, default=2, help="how many identical runs (every pair is compared)")
    p.add_argument("--interleave", action="store_true",
                   help="alternate the runs cell by cell (measurement noise only) instead of one run after "
                        "the other (which includes the machine's drift between runs, as real comparisons do); "
                        "interleaved cells are timed in one round each, so compare falls back to its "
                        "sample-level test, which takes the samples as independent")
    p.add_argument("--min-samples", type=int, default=10)
    p.add_argument("--max-time", type=float, default=None, help="time budget per cell (s); default 1.0 GPU, 0.3 CPU")
    add_stat_options(p)
    p.add_argument("--plant", type=csv_list, default=["0.30", "0.02"], metavar="FRACTIONS",
                   help="also plant each of these slowdowns in one cell at a time of the later run of every "
                        "pair and report how often compare names it (the power at this machine's noise); "
                        "'none' to skip")
    p.add_argument("--out", "-o", type=Path,
                   help="keep the runs in OUT/run0, OUT/run1, ... and write OUT/calibration.md")
    p.add_argument("--existing", type=Path, nargs="+", metavar="RUN",
                   help="judge these finished runs (folders or results.jsonl) instead of running new ones, "
                        "e.g. an earlier calibration's OUT/run* at another --threshold")
    p.set_defaults(func=calibrate_command)


def calibrate_command(args) -> int:
    check_stat_options(args)
    if args.runs < 2:
        raise UsageError(f"--runs must be >= 2 (an A/A comparison needs two runs), got {args.runs}")
    # lazily: the parsers need none of the layers (torch alone takes seconds to import)
    from convbench.reports.calibration import render_calibration
    from convbench.suites.measure.records import load_records
    from convbench.suites.regress.calibration import calibration, run_aa

    plant = []
    for text in args.plant:
        if text == "none":
            continue
        try:
            plant.append(float(text))
        except ValueError:
            raise UsageError(f"--plant takes fractions such as 0.3,0.02, got {text!r}") from None
        if not plant[-1] > 0:
            raise UsageError(f"--plant fractions must be positive, got {text}")
    if args.existing:
        if len(args.existing) < 2:
            raise UsageError(f"--existing needs at least two runs, got {len(args.existing)}")
        try:
            records = [load_records(path) for path in args.existing]
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        root = args.out
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
    else:
        root = args.out or Path(tempfile.mkdtemp(prefix="convbench-calibrate-"))
        dirs = [root / f"run{i}" for i in range(args.runs)]
        print(f"convbench calibrate: {args.runs} {'interleaved' if args.interleave else 'sequential'} runs "
              f"-> {root}/run*", file=sys.stderr)
        try:
            records = run_aa(dirs, interleave=args.interleave, suites=args.suite, backends=args.backends,
                             ops=args.ops, dtypes=args.dtypes, layouts=args.layouts, shapes=args.shapes,
                             min_samples=args.min_samples, max_time=args.max_time,
                             progress=sys.stderr.isatty())
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    text = render_calibration(calibration(records, threshold=args.threshold, alpha=args.alpha,
                                          normalize=args.normalize, plant=plant))
    sys.stdout.write(text)
    if args.out is not None:
        (root / "calibration.md").write_text(text)
        print(f"wrote {root / 'calibration.md'}", file=sys.stderr)
    return EXIT_OK


