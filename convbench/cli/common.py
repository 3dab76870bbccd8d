"""What every command shares: exit codes, the usage error, list options, output to a file."""

from __future__ import annotations

import sys
from pathlib import Path

EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """Bad arguments found after parsing (unknown suite, missing folder): exit status 2."""


def csv_list(text: str) -> list[str]:
    """``"a,b , c"`` -> ``["a", "b", "c"]`` (argparse ``type=``)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def emit(text: str, out: Path | None) -> None:
    """``text`` to stdout, or to the file ``out`` (its folder created)."""
    if out is None:
        sys.stdout.write(text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}", file=sys.stderr)


def add_stat_options(p) -> None:
    """The statistics options of ``compare`` and ``calibrate``."""
    p.add_argument("--threshold", type=float, default=0.05,
                   help="minimum slowdown (ratio of medians - 1) to call a cell SLOWER")
    p.add_argument("--alpha", type=float, default=0.05, help="false discovery rate across cells")
    p.add_argument("--normalize", choices=("probe", "backend", "none"), default="probe",
                   help="'probe': put every CPU timing round on the scale of the speed probe timed with it "
                        "(a shared machine's slow phases), then divide each backend's run-wide drift (median "
                        "ratio over its cells) out of the new samples; 'backend': the drift only; 'none': "
                        "raw times")


def check_stat_options(args) -> None:
    if not args.threshold >= 0:
        raise UsageError(f"--threshold must be >= 0 (a fraction: 0.05 = 5%), got {args.threshold}")
    if not 0 < args.alpha < 1:
        raise UsageError(f"--alpha must be in (0, 1), got {args.alpha}")
