"""``convbench static``: compile every kernel spec for sm_80/sm_90 on the CPU
(:mod:`convbench.suites.static`), list the figures or, with ``--compare BASE.json``, flag
regressions (:mod:`convbench.suites.static.baseline`); the GPU-free performance gate."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from .common import EXIT_FAILURES, EXIT_OK, UsageError, csv_list, emit


def register(sub) -> None:
    p = sub.add_parser(
        "static", help="compile every kernel for sm_80/sm_90 on the CPU; registers, spills, smem, MMA",
        description="Compile every kernel spec (convbench.kernels.static_specs()) for the given targets "
                    "without a GPU and report registers, spill bytes, stack, shared memory, SASS instruction count and "
                    "tensor-core instructions. With --compare BASE.json, flag new spills, register growth, "
                    "lost tensor cores and shared memory over the limit (exit status 1 on any flag).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--target", type=csv_list, default=["sm_80", "sm_90"], metavar="LIST",
                   help="comma-separated targets among sm_80, sm_90")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--out", type=Path, help="write the output to FILE instead of stdout")
    p.add_argument("--filter", metavar="SUBSTR", help="only specs whose name contains SUBSTR")
    p.add_argument("--specs", metavar="MODULE:FUNCTION", default="convbench.kernels:static_specs",
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
    # lazily: the parsers need none of the layers (torch alone takes seconds to import)
    from convbench.reports import static_report
    from convbench.suites import static

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
        cmp = static.compare_documents(base, static.to_document(results, targets),
                                               reg_threshold=args.reg_threshold, strict=args.strict,
                                               targets=targets, filter=args.filter)
        text, failed = static_report.render_comparison(cmp, args.format), cmp.failed
    else:
        text = static_report.render_results(results, args.format, targets)
        failed = any(r.error for r in results)
    emit(text, args.out)
    return EXIT_FAILURES if failed else EXIT_OK


def _load_specs(where: str) -> list:
    module, sep, func = where.partition(":")
    if not module or not sep or not func:
        raise UsageError(f"--specs must be MODULE:FUNCTION, got {where!r}")
    try:
        specs = list(getattr(importlib.import_module(module), func)())
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"--specs {where}: {exc}") from None
    return specs
