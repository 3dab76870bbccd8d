"""Regression commands: ``convbench static``, ``compare``, ``calibrate``, and run history.

* ``static``: compile every kernel spec for sm_80/sm_90 on the CPU (:mod:`suites.static`), list
  the figures or, with ``--compare BASE.json``, flag regressions (:mod:`suites.static_compare`).
* ``compare BASE NEW``: per-cell statistics of two runs (:mod:`reports.compare`).
* ``calibrate``: run one selection twice (A/A) and measure how often ``compare`` cries wolf and
  how wide each cell's run-to-run noise is, to choose ``--threshold`` from data
  (:mod:`suites.calibrate`).
* History: ``convbench run`` appends each run to ``<out>/../history.jsonl`` (``--history FILE``
  elsewhere, ``--no-history`` off) and ``convbench report --history FILE`` plots p50 per cell.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .cli import EXIT_FAILURES, EXIT_OK, UsageError, csv_list


def register(sub) -> None:
    _register_static(sub)
    _register_compare(sub)
    _register_calibrate(sub)
    _extend_run(sub)
    _extend_report(sub)


# -------------------------------------------------------------------------------- static
def _register_static(sub) -> None:
    p = sub.add_parser(
        "static", help="compile every kernel for sm_80/sm_90 on the CPU; registers, spills, smem, MMA",
        description="Compile every kernel spec (kernels.static_specs()) for the given targets without a GPU "
                    "and report registers, spill bytes, stack, shared memory, SASS instruction count and "
                    "tensor-core instructions. With --compare BASE.json, flag new spills, register growth, "
                    "lost tensor cores and shared memory over the limit (exit status 1 on any flag).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--target", type=csv_list, default=["sm_80", "sm_90"], metavar="LIST",
                   help="comma-separated targets among sm_80, sm_90")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--out", type=Path, help="write the output to FILE instead of stdout")
    p.add_argument("--filter", metavar="SUBSTR", help="only specs whose name contains SUBSTR")
    p.add_argument("--specs", metavar="MODULE:FUNCTION", default="kernels:static_specs",
                   help="where the StaticSpec list comes from (your own kernels, or test kernels)")
    p.add_argument("--compare", type=Path, metavar="BASE.json", help="flag regressions against this baseline")
    p.add_argument("--reg-threshold", type=float, default=0.10,
                   help="flag register growth beyond this fraction (0.10 = 10%%)")
    p.add_argument("--strict", action="store_true", help="with --compare, also fail on new or missing specs")
    p.add_argument("--jobs", "-j", type=int, default=None, help="compile processes (default: CPU count)")
    p.add_argument("--no-cache", action="store_true", help="recompile even what the result cache holds")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=static_command)


def static_command(args) -> int:
    from . import static, static_compare

    try:
        targets = [static.target_name(static.parse_target(t)) for t in args.target]
    except ValueError as exc:
        raise UsageError(f"--target: {exc}") from None
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {args.jobs}")
    if args.reg_threshold < 0:
        raise UsageError(f"--reg-threshold must be >= 0, got {args.reg_threshold}")
    base = None
    if args.compare is not None:
        try:
            base = static.load_document(str(args.compare))
        except (OSError, ValueError) as exc:
            raise UsageError(f"--compare: {exc}") from None
    specs = _load_specs(args.specs)
    t0, done = time.perf_counter(), [0]

    def progress(r):
        done[0] += 1
        if not args.quiet:
            what = f"ERROR {r.error.splitlines()[0][:100]}" if r.error else \
                f"regs {r.registers} spill {r.spill_store_bytes}/{r.spill_load_bytes} MMA {sum(r.mma.values())}"
            print(f"[{done[0]}] {r.name} {r.target}: {what}{' (cached)' if r.cached else ''}", file=sys.stderr)

    results = static.analyse_all(targets, specs, filter=args.filter, jobs=args.jobs,
                                 cache=not args.no_cache, progress=progress)
    compiled = sum(not r.cached for r in results)
    print(f"convbench static: {len(results)} kernel/target pairs ({compiled} compiled, "
          f"{len(results) - compiled} cached) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    if base is not None:
        cmp = static_compare.compare_documents(base, static.to_document(results, targets),
                                               reg_threshold=args.reg_threshold, strict=args.strict,
                                               targets=targets, filter=args.filter)
        text, failed = static_compare.render(cmp, args.format), cmp.failed
    else:
        text = static_compare.render_results(results, args.format, targets)
        failed = any(r.error for r in results)
    _emit(text, args.out)
    return EXIT_FAILURES if failed else EXIT_OK


def _load_specs(where: str) -> list:
    import importlib

    module, sep, func = where.partition(":")
    if not module or not sep or not func:
        raise UsageError(f"--specs must be MODULE:FUNCTION, got {where!r}")
    try:
        specs = list(getattr(importlib.import_module(module), func)())
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"--specs {where}: {exc}") from None
    return specs


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}", file=sys.stderr)


# ------------------------------------------------------------------------------- compare
def _add_stat_options(p) -> None:
    p.add_argument("--threshold", type=float, default=0.05,
                   help="minimum slowdown (ratio of medians - 1) to call a cell SLOWER")
    p.add_argument("--alpha", type=float, default=0.05, help="false discovery rate across cells")
    p.add_argument("--normalize", choices=("probe", "backend", "none"), default="probe",
                   help="'probe': put every CPU timing round on the scale of the speed probe timed with it "
                        "(a shared machine's slow phases), then divide each backend's run-wide drift (median "
                        "ratio over its cells) out of the new samples; 'backend': the drift only; 'none': "
                        "raw times")


def _register_compare(sub) -> None:
    p = sub.add_parser(
        "compare", help="compare two runs cell by cell (FASTER/SLOWER/SAME/UNSURE); exit 1 on regression",
        description="Compare two runs (folders or results.jsonl files). Per cell: Mann-Whitney U on the raw "
                    "samples with Benjamini-Hochberg FDR control, plus a minimum effect size (--threshold); "
                    "correctness changes flagged. Exit status 1 when a cell is significantly slower beyond the "
                    "threshold or lost correctness.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("base", type=Path, help="baseline run folder or results.jsonl")
    p.add_argument("new", type=Path, help="new run folder or results.jsonl")
    _add_stat_options(p)
    p.add_argument("--err-growth", type=float, default=10.0, help="flag a max relative error that grew this many times")
    p.add_argument("--fail-on-drift", action="store_true",
                   help="also exit 1 when a whole backend's run slowed beyond the threshold")
    p.add_argument("--format", choices=("terminal", "markdown", "json"), default="terminal")
    p.add_argument("--show", choices=("all", "changed"), default="all",
                   help="list every cell, or only those not SAME/untimed-and-unchanged")
    p.add_argument("--out", type=Path, help="write the report to FILE (e.g. report.md) instead of stdout")
    p.set_defaults(func=compare_command)


def compare_command(args) -> int:
    from reports import compare

    _check_stat_options(args)
    try:
        cmp = compare.compare_paths(args.base, args.new, threshold=args.threshold, alpha=args.alpha,
                                    err_growth=args.err_growth, normalize=args.normalize,
                                    fail_on_drift=args.fail_on_drift)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    _emit(compare.render(cmp, args.format, args.show), args.out)
    if args.out is not None:
        print("\n".join(compare.summary_lines(cmp)), file=sys.stderr)
    return EXIT_FAILURES if cmp.failed else EXIT_OK


def _check_stat_options(args) -> None:
    if not args.threshold >= 0:
        raise UsageError(f"--threshold must be >= 0 (a fraction: 0.05 = 5%), got {args.threshold}")
    if not 0 < args.alpha < 1:
        raise UsageError(f"--alpha must be in (0, 1), got {args.alpha}")


# ----------------------------------------------------------------------------- calibrate
def _register_calibrate(sub) -> None:
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
    _add_stat_options(p)
    p.add_argument("--plant", type=csv_list, default=["0.30", "0.02"], metavar="FRACTIONS",
                   help="also plant each of these slowdowns in one cell at a time of the later run of every "
                        "pair and report how often compare names it (the power at this machine's noise); "
                        "'none' to skip")
    p.add_argument("--out", "-o", type=Path, help="keep the runs in OUT/run0, OUT/run1, ... and write OUT/calibration.md")
    p.add_argument("--existing", type=Path, nargs="+", metavar="RUN",
                   help="judge these finished runs (folders or results.jsonl) instead of running new ones, "
                        "e.g. an earlier calibration's OUT/run* at another --threshold")
    p.set_defaults(func=calibrate_command)


def calibrate_command(args) -> int:
    import tempfile

    _check_stat_options(args)
    if args.runs < 2:
        raise UsageError(f"--runs must be >= 2 (an A/A comparison needs two runs), got {args.runs}")
    from .calibrate import calibration, render_calibration, run_aa

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
        from reports.compare import load_records

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


# ------------------------------------------------------------------------------- history
def _extend_run(sub) -> None:
    """``convbench run`` appends its run to a history file when it finishes."""
    p = sub.choices.get("run")
    if p is None:
        return
    p.add_argument("--history", type=Path, metavar="FILE",
                   help="append this run to FILE (default: history.jsonl next to the run folder)")
    p.add_argument("--no-history", action="store_true", help="do not append this run to a history file")
    inner = p.get_default("func")

    def run_with_history(args):
        if args.out is None:  # fix the folder now, so the history line can name it
            from .cmd_run import default_out_dir
            from .env import device_slug, gpu_info

            args.out = default_out_dir(device_slug(gpu_info()))
        status = inner(args)
        if not args.no_history and (Path(args.out) / "results.jsonl").exists():
            from reports import history

            target = args.history or Path(args.out).parent / "history.jsonl"
            try:
                history.append(target, args.out)
                print(f"appended the run to {target}", file=sys.stderr)
            except (OSError, ValueError) as exc:
                print(f"could not append the run to {target}: {exc}", file=sys.stderr)
        return status

    p.set_defaults(func=run_with_history)


def _extend_report(sub) -> None:
    """``convbench report --history FILE [--plot PNG] [--filter SUBSTR]``: p50 per cell over runs."""
    p = sub.choices.get("report")
    if p is None:
        return
    for action in p._actions:  # the run folder becomes optional when --history is given
        if action.dest == "dir" and not action.option_strings:
            action.nargs, action.default = "?", None
    p.add_argument("--history", type=Path, metavar="FILE", help="plot p50 per cell over the runs in FILE")
    p.add_argument("--plot", type=Path, metavar="PNG", help="with --history: the plot file (default FILE.png)")
    p.add_argument("--filter", metavar="SUBSTR", help="with --history: only cells whose key contains SUBSTR")
    inner = p.get_default("func")

    def report_with_history(args):
        if args.history is None:
            if args.dir is None:
                raise UsageError("give a run folder (DIR) or --history FILE")
            return inner(args)
        status = inner(args) if args.dir is not None else EXIT_OK
        from reports import history

        out = args.plot or args.history.with_suffix(".png")
        try:
            history.plot(args.history, out, filter=args.filter)
            text = history.text_summary(args.history, args.filter)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if not getattr(args, "quiet", False):
            print(text)
        print(f"wrote {out}")
        return status

    p.set_defaults(func=report_with_history)
