"""``convbench run``: expand suites into cells, run them, write results and the report.

When it finishes, the run is appended to a history file (``<out>/../history.jsonl`` by default,
``--history FILE`` elsewhere, ``--no-history`` off), which ``convbench report --history FILE``
plots.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import shlex
import warnings
import sys
from pathlib import Path

from .common import EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK, UsageError, csv_list


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
    sel.add_argument("--gpus", metavar="all|0,2,5",
                     help="one worker process per GPU (indices among the visible devices), cells handed out as "
                          "workers free up, every cell timed alone on its device")
    sel.add_argument("--executor", choices=("local", "ray"), default="local",
                     help="local: this process (and --gpus workers); ray: one Ray task per cell on a cluster "
                          "(pip install 'convbench[ray]')")
    sel.add_argument("--address", help="the Ray cluster to join with --executor ray (default: start a local one)")
    sel.add_argument("--shard", metavar="I/N",
                     help="run shard I of N (1-based) of the selection: a cell's shard depends only on its key; "
                          "also from $CONVBENCH_SHARD or a Slurm array job; join the folders with `convbench merge`")
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
    tim.add_argument("--tune", action="store_true",
                     help="autotune every Triton conv2d cell's launch config before timing it (GPU; the "
                          "choices persist in the tuning cache, see `convbench tune`); on a CPU the cells "
                          "run their heuristic config and say 'not tuned: no GPU'")
    tim.add_argument("--graph", action="store_true", default=None,
                     help="time every GPU cell as CUDA-graph replays (default: only cells under 100 us)")
    tim.add_argument("--no-graph", dest="graph", action="store_false",
                     help="time every GPU cell with CUDA events around single calls")
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
    out.add_argument("--history", type=Path, metavar="FILE",
                     help="append this run to FILE (default: history.jsonl next to the run folder)")
    out.add_argument("--no-history", action="store_true", help="do not append this run to a history file")
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


def _check(args) -> None:
    """The options' own limits (UsageError), before anything is built."""
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


def default_out_dir(device_slug: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{device_slug}"


def run_command(args) -> int:
    # lazily: the parsers need none of the layers (torch alone takes seconds to import)
    from convbench.reports.build import write_report
    from convbench.suites.measure.env import device_slug, gpu_info
    from convbench.suites.measure.records import ResultStore
    from convbench.suites.measure.runner import RunOptions, run
    from convbench.suites.measure.stats import StopRule
    from convbench.suites.measure.merge import write_selection
    from convbench.suites.measure.parallel import device_list
    from convbench.suites.plan.select import check_names, select_cells
    from convbench.suites.plan.shard import fingerprint, parse_shard, select_shard, shard_costs, shard_from_env

    try:
        check_names(args.suite, args.backends, ops=args.ops, dtypes=args.dtypes, layouts=args.layouts)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    _check(args)
    try:
        selection = select_cells(args.suite, args.backends, ops=args.ops, algorithms=args.algorithms,
                                 dtypes=args.dtypes, layouts=args.layouts, shapes=args.shapes, scale=args.scale,
                                 batch=args.batch, interpret_max_flops=None if args.interpret_max_mflops is None
                                 else args.interpret_max_mflops * 1e6)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    cells, backends, suites = selection.cells, selection.backends, selection.suites
    full_cells = cells
    try:
        shard = parse_shard(args.shard) if args.shard else shard_from_env()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if shard is not None:
        cells = select_shard(full_cells, shard)
    on_gpu = any(b.device == "cuda" for b in backends.values())
    max_time = args.max_time if args.max_time is not None else (1.0 if on_gpu else 0.3)
    rule = StopRule(args.min_samples, args.max_samples, args.noise, args.min_time, max_time)
    options = RunOptions(rule=rule, flush_l2=not args.no_flush, graph=args.graph, seed=args.seed,
                         check_max_flops=args.check_max_gflops * 1e9, measure_peaks=not args.no_peaks,
                         progress=not args.quiet, threads=args.threads, rounds=args.rounds,
                         processes=args.processes, tune=args.tune)
    out_dir = args.out or default_out_dir(device_slug(gpu_info()))
    store = ResultStore(out_dir)
    if not args.quiet:
        print(f"convbench run: {len(cells)} cells from {', '.join(s.name for s in suites)} "
              f"on {', '.join(backends)} -> {out_dir}", file=sys.stderr)
    info = {"command": shlex.join(["convbench", *getattr(args, "argv", ["run"])]),
            "suites": [s.name for s in suites], "backends": list(backends), "scale": args.scale,
            "batch": args.batch, "stop_rule": dataclasses.asdict(rule), "graph": args.graph,
            "flush_l2": not args.no_flush, "rounds": args.rounds, "processes": args.processes,
            "tune": args.tune,
            "selection": {"fingerprint": fingerprint(full_cells), "cells": len(full_cells)}}
    if shard is not None:
        info["shard"] = {"index": shard.index, "count": shard.count, "source": shard.source,
                         "cost_per_shard": [round(c, 6) for c in shard_costs(full_cells, shard.count)]}
        if not args.quiet:
            print(f"convbench run: shard {shard} ({shard.source}): {len(cells)} of {len(full_cells)} cells",
                  file=sys.stderr)
    write_selection(out_dir, [c.key for c in full_cells], info["selection"]["fingerprint"])
    if args.tune and not on_gpu:
        print("convbench run --tune: not tuned: no GPU (Triton runs in the CPU interpreter); "
              "Triton cells use their heuristic configs", file=sys.stderr)
        warnings.filterwarnings("ignore", message="config='tune'")  # said once, just above
    devices = None
    if args.gpus:
        import os  # for the caller's CUDA_VISIBLE_DEVICES

        import torch  # lazily: only for --gpus

        if not torch.cuda.is_available():
            raise UsageError("--gpus needs CUDA devices; this machine has none")
        try:
            devices = device_list(args.gpus, os.environ.get("CUDA_VISIBLE_DEVICES"), torch.cuda.device_count())
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        info["gpus"] = devices
    if args.executor == "ray":
        if devices:
            raise UsageError("--gpus and --executor ray do not combine (Ray places the cells on the GPUs itself)")
        import importlib.util  # to ask whether the optional extra is installed, without importing it

        if importlib.util.find_spec("ray") is None:
            raise UsageError("--executor ray needs Ray: pip install 'convbench[ray]' (or ray==2.60.0)")
        info.update(executor="ray", ray_address=args.address)
    elif args.address:
        raise UsageError("--address is for --executor ray")
    result = run(cells, backends, store, options=options, resume=args.resume, run_info=info, devices=devices,
                 executor=args.executor, address=args.address)
    if not args.no_report:
        report = write_report(out_dir, result.records, result.env, with_plots=not args.no_plots)
        if not args.quiet:
            print(report.text)
            print(f"wrote {report.markdown}, {report.html}, {store.csv}, {store.jsonl}"
                  + (f" and {len(report.plots)} plots" if report.plots else ""))
            print("\n== headline\n" + "\n".join(report.headline))
    failures = result.failures
    print(f"{len(result.records)} cells in {result.wall_s:.0f} s: {len(failures)} failed or errored"
          + (" (interrupted; rerun with --resume --out " + str(out_dir) + ")" if result.interrupted else ""),
          file=sys.stderr)
    if not args.no_history:
        _append_history(args.history or Path(out_dir).parent / "history.jsonl", out_dir)
    if result.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILURES if failures else EXIT_OK


def _append_history(target: Path, out_dir: Path) -> None:
    # lazily: the parsers need none of the layers (torch alone takes seconds to import)
    from convbench.suites.regress import history

    if not (Path(out_dir) / "results.jsonl").exists():
        return
    try:
        history.append(target, out_dir)
        print(f"appended the run to {target}", file=sys.stderr)
    except (OSError, ValueError) as exc:
        print(f"could not append the run to {target}: {exc}", file=sys.stderr)
