"""``convbench run``: expand suites into cells, run them, write results and the report."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import shlex
import sys
from pathlib import Path

from .cli import EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK, UsageError, csv_list


def register(sub) -> None:
    p = sub.add_parser(
        "run", help="run benchmark suites (default: the quick suite on this machine)",
        description="Run suites cell by cell (op x algorithm x shape x dtype x layout x backend): check every "
                    "cell against the float64 reference, time it where timing means something, and write "
                    "results.jsonl/results.csv/env.json plus report.md/report.html and plots into --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sel = p.add_argument_group("what to run")
    sel.add_argument("--suite", "-s", type=csv_list, action="extend", metavar="NAMES",
                     help="comma-separated suites (see `convbench list suites`); default: quick")
    sel.add_argument("--backends", "-b", type=csv_list, metavar="NAMES",
                     help="torch, triton, triton-interpret, numpy; default: torch,triton on a GPU, "
                          "torch,triton-interpret,numpy on a CPU")
    sel.add_argument("--ops", type=csv_list, metavar="OPS", help="only these operators (e.g. conv2d,max_pool2d)")
    sel.add_argument("--algorithms", "-a", type=csv_list, metavar="NAMES",
                     help="only these algorithms (the torch baseline is always kept)")
    sel.add_argument("--dtypes", "-d", type=csv_list, metavar="DTYPES",
                     help="fp32, tf32, fp16, bf16, fp64 (numpy backend); default: fp32,tf32,fp16,bf16 on a GPU, "
                          "fp32,fp64 on a CPU")
    sel.add_argument("--layouts", "-l", type=csv_list, metavar="LAYOUTS", help="nchw, nhwc; default: nchw")
    sel.add_argument("--shapes", type=csv_list, metavar="TEXT",
                     help="only cases whose shape or layer name contains TEXT")
    sel.add_argument("--batch", type=int, help="override every case's batch size")
    sel.add_argument("--scale", type=float, default=1.0, help="shrink spatial size, channels and batch by this factor")
    tim = p.add_argument_group("timing")
    tim.add_argument("--min-samples", type=int, default=10, help="samples before the stopping rule may stop")
    tim.add_argument("--max-samples", type=int, default=2000, help="hard cap on samples per cell")
    tim.add_argument("--noise", type=float, default=0.01,
                     help="stop when the 95%% CI half-width of the median is below this fraction of it")
    tim.add_argument("--max-time", type=float, default=None,
                     help="time budget per cell in seconds (default 1.0 on a GPU, 0.3 on a CPU)")
    tim.add_argument("--min-time", type=float, default=0.0, help="minimum measured time per cell in seconds")
    tim.add_argument("--rounds", type=int, default=None,
                     help="sample every cell in this many passes over the selection, so that each median "
                          "spans the whole run's drift; samples and time budget are split between the "
                          "rounds (default 15 on a CPU, 3 on a GPU)")
    tim.add_argument("--processes", type=int, default=None,
                     help="spread the rounds over this many processes (the runner and spawned workers, "
                          "used one at a time), so that one process's memory layout does not decide a "
                          "cell's time (default 3 on a CPU, 1 on a GPU)")
    tim.add_argument("--graph", action="store_true", help="time CUDA-graph replays (launch-bound kernels)")
    tim.add_argument("--no-flush", action="store_true", help="do not flush L2 before each GPU sample")
    tim.add_argument("--no-peaks", action="store_true", help="skip measuring copy/matmul peaks (no roofline %%)")
    out = p.add_argument_group("output")
    out.add_argument("--out", "-o", type=Path, action=_StoreOut, help="output folder (default runs/<date>-<device>/)")
    out.add_argument("--resume", action="store_true",
                     help="keep the cells already in --out/results.jsonl, run the rest")
    out.add_argument("--no-report", action="store_true", help="write results only, no report.md/html")
    out.add_argument("--no-plots", action="store_true", help="no PNG plots")
    out.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no tables on stdout")
    out.add_argument("--seed", type=int, default=0, help="input seed offset")
    tim.add_argument("--threads", type=int, default=None,
                     help="CPU threads for torch (default 1: runs stay comparable, and oversubscribed OpenMP "
                          "threads on a busy machine spin and inflate CPU timings a thousandfold)")
    adv = p.add_argument_group("limits")
    adv.add_argument("--interpret-max-mflops", type=float, default=None,
                     help="skip interpreter cells above this many million operations (default 20)")
    adv.add_argument("--check-max-gflops", type=float, default=2.0,
                     help="above this size, check per-image ops on the first image only")
    p.set_defaults(func=run_command, out_given=False)


class _StoreOut(argparse.Action):
    """``--out DIR``, remembering that it was given (a default folder cannot be resumed)."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.out, namespace.out_given = values, True


def _resolve(args):
    """Validated selections (UsageError on anything unknown) -> (suites, backends, filters)."""
    from . import backends as B
    from .catalog import DEFAULT_SUITE, SUITE_NAMES, get_suite
    from .shapes import OPS, scale_suite

    suite_names = args.suite or [DEFAULT_SUITE]
    for name in suite_names:
        if name not in SUITE_NAMES:
            raise UsageError(f"unknown suite {name!r}; choose from {', '.join(SUITE_NAMES)}")
    backend_names = args.backends or list(B.default_backends())
    for name in backend_names:
        if name not in B.BACKEND_NAMES:
            raise UsageError(f"unknown backend {name!r}; choose from {', '.join(B.BACKEND_NAMES)}")
    for values, allowed, what in ((args.ops, OPS, "op"), (args.dtypes, B.DTYPES, "dtype"),
                                  (args.layouts, B.LAYOUTS, "layout")):
        for v in values or ():
            if v not in allowed:
                raise UsageError(f"unknown {what} {v!r}; choose from {', '.join(allowed)}")
    if args.resume and not args.out_given:
        raise UsageError("--resume needs --out DIR (the folder of the run to resume)")
    if args.batch is not None and args.batch <= 0:
        raise UsageError(f"--batch must be positive, got {args.batch}")
    if not args.scale > 0:
        raise UsageError(f"--scale must be positive, got {args.scale}")
    if args.threads is not None and args.threads <= 0:
        raise UsageError(f"--threads must be positive, got {args.threads}")
    if args.rounds is not None and args.rounds < 1:
        raise UsageError(f"--rounds must be >= 1, got {args.rounds}")
    if args.processes is not None and args.processes < 1:
        raise UsageError(f"--processes must be >= 1, got {args.processes}")
    if args.min_samples < 3 or args.max_samples < args.min_samples or not args.noise > 0:
        raise UsageError("need --min-samples >= 3, --max-samples >= --min-samples and --noise > 0")
    try:
        B.configure_interpreter(backend_names)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    backends = {name: B.make_backend(name) for name in backend_names}
    if args.interpret_max_mflops is not None and "triton-interpret" in backends:
        backends["triton-interpret"].max_flops = args.interpret_max_mflops * 1e6
    for name, b in backends.items():
        why = b.available()
        if why:
            raise UsageError(f"backend {name!r} cannot run here: {why}")
    suites = [scale_suite(get_suite(n), args.scale, args.batch) for n in suite_names]
    return suites, backends


def default_out_dir(device_slug: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{device_slug}"


def run_command(args) -> int:
    from . import backends as B
    from .cells import build_cells
    from .env import device_slug, gpu_info
    from .records import ResultStore
    from .runner import RunOptions, run
    from .stats import StopRule

    suites, backends = _resolve(args)
    algorithms = args.algorithms
    if algorithms:
        ops_present = {c.op for s in suites for c in s.cases}
        known = {a for b in backends.values() for op in ops_present for a in b.algorithms(op)}
        unknown = [a for a in algorithms if a not in known]
        if unknown:
            raise UsageError(f"unknown algorithm(s) {unknown}; these backends know {sorted(known)}")
    dtypes = args.dtypes or list(B.default_dtypes())
    cells = build_cells(suites, list(backends.values()), ops=args.ops, algorithms=algorithms, dtypes=dtypes,
                        layouts=args.layouts or list(B.default_layouts()), shapes=args.shapes)
    if not cells:
        raise UsageError("the selection contains no cells (check --ops/--algorithms/--dtypes/--layouts/--shapes)")
    on_gpu = any(b.device == "cuda" for b in backends.values())
    max_time = args.max_time if args.max_time is not None else (1.0 if on_gpu else 0.3)
    rule = StopRule(args.min_samples, args.max_samples, args.noise, args.min_time, max_time)
    options = RunOptions(rule=rule, flush_l2=not args.no_flush, graph=args.graph, seed=args.seed,
                         check_max_flops=args.check_max_gflops * 1e9, measure_peaks=not args.no_peaks,
                         progress=not args.quiet, threads=args.threads, rounds=args.rounds,
                         processes=args.processes)
    out_dir = args.out or default_out_dir(device_slug(gpu_info()))
    args.out = out_dir  # commands that wrap this one learn where the run went
    store = ResultStore(out_dir)
    if not args.quiet:
        print(f"convbench run: {len(cells)} cells from {', '.join(s.name for s in suites)} "
              f"on {', '.join(backends)} -> {out_dir}", file=sys.stderr)
    info = {"command": shlex.join(["convbench", *getattr(args, "argv", ["run"])]),
            "suites": [s.name for s in suites], "backends": list(backends), "scale": args.scale,
            "batch": args.batch, "stop_rule": dataclasses.asdict(rule), "graph": args.graph,
            "flush_l2": not args.no_flush, "rounds": args.rounds, "processes": args.processes}
    result = run(cells, backends, store, options=options, resume=args.resume, run_info=info)
    if not args.no_report:
        from reports.build import write_report

        report = write_report(out_dir, result.records, result.env, with_plots=not args.no_plots)
        if not args.quiet:
            print(report.text)
            print(f"wrote {report.markdown}, {report.html}, {store.csv}, {store.jsonl}"
                  + (f" and {len(report.plots)} plots" if report.plots else ""))
    failures = result.failures
    print(f"{len(result.records)} cells in {result.wall_s:.0f} s: {len(failures)} failed or errored"
          + (" (interrupted; rerun with --resume --out " + str(out_dir) + ")" if result.interrupted else ""),
          file=sys.stderr)
    if result.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILURES if failures else EXIT_OK
