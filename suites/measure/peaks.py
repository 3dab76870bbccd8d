"""Peaks measured on this machine in this run: the roofline every cell is placed under.

* bandwidth: a device-to-device copy (GPU: ``Tensor.copy_`` of 512 MiB; CPU: ``numpy.copyto`` of
  64 MiB), counting the bytes read plus the bytes written;
* compute: a square matrix multiply per dtype the run uses (GPU: ``torch.mm`` with TF32 on only
  for ``tf32``; CPU: ``numpy.matmul`` for fp64, ``torch.mm`` for the others), ``2*n^3`` FLOPs.

Each is the best (minimum-time) of a short adaptive measurement, the usual "achievable peak".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .stats import StopRule
from .timing import first_call, measure

#: matrix size per dtype and device (big enough to saturate, small enough to be quick)
_MM_SIZE = {"cuda": {"fp64": 4096, "fp32": 4096, "tf32": 8192, "fp16": 8192, "bf16": 8192},
            "cpu": {"fp64": 768, "fp32": 768, "tf32": 768, "fp16": 384, "bf16": 384}}
_RULE = StopRule(min_samples=5, max_samples=200, target_noise=0.02, max_time_s=0.5)


@dataclass
class Peaks:
    device: str
    copy_gbps: float | None = None
    #: dtype -> achieved dense matmul TFLOP/s
    matmul_tflops: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Peaks":
        return cls(d.get("device", "cpu"), d.get("copy_gbps"), dict(d.get("matmul_tflops", {})))


def _best_ms(fn, device: str) -> float:
    first_call(fn, device)
    return min(measure(fn, device, _RULE, flush_l2=False).samples_ms)


def copy_bandwidth(device: str) -> float:
    """GB/s of a large copy (bytes read + bytes written)."""
    if device == "cuda":
        nbytes = 512 << 20
        src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
        dst = torch.empty_like(src)
        ms = _best_ms(lambda: dst.copy_(src), device)
    else:
        nbytes = 64 << 20
        src = np.ones(nbytes // 8)
        dst = np.empty_like(src)
        ms = _best_ms(lambda: np.copyto(dst, src), device)
    return 2 * nbytes / (ms * 1e-3) / 1e9


def matmul_tflops(dtype: str, device: str) -> float:
    n = _MM_SIZE[device][dtype]
    if device == "cpu" and dtype in ("fp64", "fp32", "tf32"):
        a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float64 if dtype == "fp64" else np.float32)
        b = a.copy()
        ms = _best_ms(lambda: a @ b, device)
    else:
        tdtype = {"fp64": torch.float64, "fp32": torch.float32, "tf32": torch.float32,
                  "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
        a = torch.randn(n, n, device=device).to(tdtype)
        b = torch.randn(n, n, device=device).to(tdtype)
        if device == "cuda":
            old = torch.backends.cuda.matmul.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = dtype == "tf32"
            try:
                ms = _best_ms(lambda: torch.mm(a, b), device)
            finally:
                torch.backends.cuda.matmul.allow_tf32 = old
        else:
            ms = _best_ms(lambda: torch.mm(a, b), device)
    return 2 * n**3 / (ms * 1e-3) / 1e12


def measure_peaks(device: str, dtypes) -> Peaks:
    """Copy bandwidth and matmul throughput for each of ``dtypes`` on ``device``."""
    peaks = Peaks(device, copy_bandwidth(device))
    for dtype in dtypes:
        if device == "cpu" and dtype == "tf32":
            continue  # no TF32 on the CPU: tf32 cells do not run there
        peaks.matmul_tflops[dtype] = matmul_tflops(dtype, device)
    return peaks
