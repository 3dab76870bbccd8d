"""Measured max relative error of every conv2d algorithm per dtype on ResNet-50 layers.

Channel counts and kernels are the real layers'; batch and spatial size are shrunk (``--hw``)
so the table can be produced in the Triton interpreter on a CPU.  Each input is rounded to the
dtype first and the float64 reference is computed from the rounded values, so the figure is the
kernel's own error (the quantity ``convbench.suites.measure.accuracy`` tolerates).

    .venv/bin/python scripts/accuracy_table.py [--hw 8] [--seed 0]   (sets TRITON_INTERPRET=1 without a GPU)

FFT on the 1x1 layer (K=1024) takes tens of minutes in the interpreter; on a GPU it is quick.
"""

from __future__ import annotations

import argparse
import sys

from convbench.runtime import use_interpreter_without_gpu

if __name__ == "__main__":
    use_interpreter_without_gpu()  # before the kernels are imported (Triton reads it then)

import torch  # noqa: E402

from convbench import kernels  # noqa: E402
from convbench import reference  # noqa: E402
from convbench.suites.measure.accuracy import errors  # noqa: E402

LAYERS = (  # name, C, K, R, stride, pad (from suites/plan/conv_shapes.csv)
    ("l2.3x3", 128, 128, 3, 1, 1),
    ("l3.1x1b", 256, 1024, 1, 1, 0),
    ("l4.3x3", 512, 512, 3, 1, 1),
)
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hw", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator().manual_seed(args.seed)
    print("| layer (shrunk) | algorithm | " + " | ".join(DTYPES) + " |")
    print("|---|---|" + "---|" * len(DTYPES))
    for name, c, k, r, stride, pad in LAYERS:
        x32 = torch.randn(1, c, args.hw, args.hw, generator=gen)
        w32 = torch.randn(k, c, r, r, generator=gen) / (c * r * r) ** 0.5
        for algo in kernels.CONV2D_ALGORITHMS:
            cells = []
            for dt in DTYPES.values():
                x, w = x32.to(dt), w32.to(dt)
                expected = reference.conv2d(x.double(), w.double(), None, stride, pad)
                try:
                    out = kernels.conv2d(x.to(device), w.to(device), None, stride, pad, algorithm=algo)
                except ValueError as exc:
                    cells.append("n/a")
                    reason = str(exc)
                    continue
                cells.append(f"{errors(out.cpu(), expected)[0]:.1e}")
            label = f"{name} c{c}-k{k}-{r}x{r} ({args.hw}x{args.hw})"
            print(f"| {label} | {algo} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
