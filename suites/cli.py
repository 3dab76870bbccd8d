"""``convbench``: the command line.

Subcommands come from the modules in :data:`COMMAND_MODULES`, each exposing
``register(subparsers)`` that adds its parser and sets ``func`` (``args -> exit status``).
Adding a command is one edit of that tuple.

Exit status: 0 success, 1 correctness failures (a wrong or crashing cell, or a regression found
by a comparison), 2 usage error (bad arguments, missing files), 130 interrupted (Ctrl-C; finished
cells are kept).

Without a CUDA GPU, ``TRITON_INTERPRET=1`` is set before any command runs (Triton reads it when
``kernels`` is imported), so Triton kernels run in the CPU interpreter.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

#: every subcommand module, in help order
COMMAND_MODULES = ("suites.cmd_run", "suites.cmd_list", "suites.cmd_report", "suites.regress")

EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """Bad arguments found after parsing (unknown suite, missing folder): exit status 2."""


def csv_list(text: str) -> list[str]:
    """``"a,b , c"`` -> ``["a", "b", "c"]`` (argparse ``type=``)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convbench",
        description="Benchmark Triton convolution/pooling/normalization kernels against cuDNN "
                    "and float64 NumPy references.",
        epilog="`convbench run` with no arguments runs the quick suite on this machine "
               "and writes runs/<date>-<device>/.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _prepare_environment() -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a dependency
        has_cuda = False
    if not has_cuda:
        os.environ.setdefault("TRITON_INTERPRET", "1")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 0 for --help, 2 for bad arguments
        return int(exc.code or 0)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    args.argv = list(sys.argv[1:] if argv is None else argv)
    _prepare_environment()
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"convbench {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `convbench list shapes | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error on the final flush
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    # ``python -m suites.cli``: run the main of the module the subcommands import (suites.cli),
    # not of this __main__ copy, whose UsageError they would not raise
    from suites.cli import main as _main

    sys.exit(_main())
