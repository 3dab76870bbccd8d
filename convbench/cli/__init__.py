"""``convbench``: the command line, one module per command.

Subcommands come from the modules in :data:`COMMAND_MODULES`, each exposing
``register(subparsers)`` that adds its parser and sets ``func`` (``args -> exit status``).
Adding a command is one edit of that tuple.  Exit codes, :class:`~.common.UsageError` and the
options several commands share live in :mod:`convbench.cli.common`.

Exit status: 0 success, 1 correctness failures (a wrong or crashing cell, or a regression found
by a comparison), 2 usage error (bad arguments, missing files), 130 interrupted (Ctrl-C; finished
cells are kept).

Without a CUDA GPU, ``TRITON_INTERPRET=1`` is set before any command runs
(:func:`convbench.runtime.use_interpreter_without_gpu`: Triton reads it when the kernels are
imported), so Triton kernels run in the CPU interpreter.

The CLI is the only layer that wires the others together (suites and reports); it is imported
by nothing of convbench.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from convbench.runtime import use_interpreter_without_gpu

from .common import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError

#: every subcommand module, in help order (``listing`` is ``convbench list``: a submodule named
#: ``list`` would shadow the builtin in this package's namespace)
COMMAND_MODULES = ("convbench.cli.run", "convbench.cli.listing", "convbench.cli.report", "convbench.cli.tune",
                   "convbench.cli.static", "convbench.cli.compare", "convbench.cli.calibrate",
                   "convbench.cli.merge", "convbench.cli.gpu_check", "convbench.cli.attack_demo")


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
    use_interpreter_without_gpu()
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
