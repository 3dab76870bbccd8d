"""``convbench list``: suites, algorithms, shapes and backends."""

from __future__ import annotations

import argparse

from tabulate import tabulate

from convbench.suites.plan.backends import BACKEND_NAMES, DEFAULT_ALGORITHM, make_backend
from convbench.suites.plan.catalog import SUITE_NAMES, get_suite
from convbench.suites.plan.ops import REFERENCE_ALGORITHMS
from convbench.suites.plan.shapes import NORM_OPS, POOL_OPS, scale_suite

from .common import EXIT_OK, UsageError

WHAT = ("suites", "algorithms", "shapes", "backends")


def register(sub) -> None:
    p = sub.add_parser("list", help="list suites, algorithms, shapes or backends",
                       description="List what convbench can run.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("what", nargs="?", default="suites", choices=WHAT, help="what to list")
    p.add_argument("--suite", "-s", default=None, help="for `shapes`: only this suite (default: all)")
    p.add_argument("--scale", type=float, default=1.0, help="for `shapes`: shrink by this factor")
    p.add_argument("--batch", type=int, default=None, help="for `shapes`: override the batch size")
    p.set_defaults(func=list_command)


def _suites() -> str:
    rows = []
    for name in SUITE_NAMES:
        s = get_suite(name)
        gflop = sum(c.flops for c in s.cases) / 1e9
        rows.append([name, len(s.cases), ", ".join(s.ops()), f"{gflop:.3g}", s.description])
    return tabulate(rows, headers=["suite", "cases", "ops", "GFLOP", "description"], disable_numparse=True)


def _algorithms() -> str:
    rows = []
    try:
        from convbench import kernels  # lazily: TRITON_INTERPRET is decided after the parsers are built

        for a in kernels.ALGORITHMS:
            rows.append(["conv2d", a.name, "triton", f"error scale {a.error_scale:g}"])
        for name in kernels.CONV_TRANSPOSE2D_ALGORITHMS:
            rows.append(["conv_transpose2d", name, "triton", "output-phase (sub-pixel) decomposition"])
    except Exception as exc:  # kernels not importable here: say so
        rows.append(["conv2d", "?", "triton", f"kernels not importable: {exc}"])
    for op in POOL_OPS + NORM_OPS:
        rows.append([op, DEFAULT_ALGORITHM, "triton", f"kernels.{op}"])
    for name, (fn, kw) in REFERENCE_ALGORITHMS.items():
        rows.append(["conv2d", name, "numpy", f"reference.{fn}({', '.join(f'{k}={v}' for k, v in kw.items())})"])
    rows.append(["other ops", "direct", "numpy", "reference.<op>"])
    rows.append(["every op", "vendor", "torch", "torch.nn.functional (cuDNN / oneDNN)"])
    return tabulate(rows, headers=["op", "algorithm", "backend", "notes"], disable_numparse=True)


def _shapes(suite: str | None, scale: float, batch: int | None) -> str:
    names = [suite] if suite else list(SUITE_NAMES)
    rows = []
    for name in names:
        if name not in SUITE_NAMES:
            raise UsageError(f"unknown suite {name!r}; choose from {', '.join(SUITE_NAMES)}")
        for c in scale_suite(get_suite(name), scale, batch).cases:
            rows.append([name, c.op, c.label, c.shape, str(c.count), f"{c.flops / 1e9:.4g}",
                         f"{c.min_bytes(2) / 1e6:.4g}"])
    return tabulate(rows, headers=["suite", "op", "layer", "shape", "count", "GFLOP", "MB (fp16)"],
                    disable_numparse=True)


def _backends() -> str:
    rows = []
    for name in BACKEND_NAMES:
        b = make_backend(name)
        why = b.available()
        rows.append([name, b.device, "yes" if b.timed else "no (correctness only)",
                     ", ".join(b.dtypes), "available" if why is None else f"unavailable: {why}", b.description])
    return tabulate(rows, headers=["backend", "device", "timed", "dtypes", "here", "description"],
                    disable_numparse=True)


def list_command(args) -> int:
    if args.what == "suites":
        print(_suites())
    elif args.what == "algorithms":
        print(_algorithms())
    elif args.what == "shapes":
        if not args.scale > 0:
            raise UsageError(f"--scale must be positive, got {args.scale}")
        print(_shapes(args.suite, args.scale, args.batch))
    else:
        print(_backends())
    return EXIT_OK
