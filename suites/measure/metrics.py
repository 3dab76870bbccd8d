"""Derived columns of a record: throughput, % of roofline, speedup against the vendor baseline.

* ``tflops = flops / p50`` with the nominal count of :attr:`convbench.suites.plan.shapes.Case.flops` (the same
  numerator for every algorithm, so algorithms compare);
* ``gbps = min_bytes / p50`` (each input read once, each output written once);
* ``roofline_pct = 100 * max(flops / peak_flops, min_bytes / peak_bw) / p50``: how close the cell
  is to the time the measured peaks allow (peaks from :mod:`convbench.suites.measure.peaks`, same run, same device;
  for fp64 the fp64 matmul peak, for tf32 the tf32 one, ...).  Pooling and normalization are
  judged by bandwidth alone (their operations are not matrix products);
* ``speedup = p50(baseline) / p50(cell)`` with a seeded bootstrap 95% interval from the raw
  samples.  The baseline of a cell is the ``torch`` cell of the same suite, op, shape, dtype and
  layout (fp64 cells of the numpy backend compare with torch's fp64 cell).
"""

from __future__ import annotations

from ..plan.backends import VENDOR
from .peaks import Peaks
from .records import Record, make_key
from .stats import bootstrap_ratio_ci

BASELINE_BACKEND = "torch"


def baseline_key(r: Record) -> str:
    return make_key(r.suite, r.op, VENDOR, BASELINE_BACKEND, r.shape, r.dtype, r.layout)


def fill_throughput(r: Record, peaks: Peaks | None) -> None:
    if r.p50_ms is None or r.p50_ms <= 0:
        r.tflops = r.gbps = r.roofline_pct = None
        return
    seconds = r.p50_ms * 1e-3
    r.tflops = r.flops / seconds / 1e12 if r.flops else None
    r.gbps = r.min_bytes / seconds / 1e9 if r.min_bytes else None
    r.roofline_pct = None
    if peaks is None or not peaks.copy_gbps:
        return
    bound = r.min_bytes / (peaks.copy_gbps * 1e9)
    peak_tflops = peaks.matmul_tflops.get(r.dtype)
    if peak_tflops and r.op in ("conv2d", "conv_transpose2d"):
        bound = max(bound, r.flops / (peak_tflops * 1e12))
    r.roofline_pct = 100.0 * bound / seconds


def fill_speedups(records: list[Record], *, seed: int = 0, n_boot: int = 1000) -> None:
    """Speedup of every timed cell over its baseline cell (None when either is untimed)."""
    by_key = {r.key: r for r in records}
    for r in records:
        r.baseline, r.speedup, r.speedup_lo, r.speedup_hi = "", None, None, None
        base = by_key.get(baseline_key(r))
        if base is None or base is r:
            continue
        r.baseline = base.key
        if not (r.samples_ms and base.samples_ms):
            continue
        r.speedup, r.speedup_lo, r.speedup_hi = bootstrap_ratio_ci(base.samples_ms, r.samples_ms, seed=seed,
                                                                   n_boot=n_boot)


def finalize(records: list[Record], peaks: dict[str, Peaks], *, seed: int = 0) -> list[Record]:
    """Fill every derived column; ``peaks`` maps a device ("cuda", "cpu") to its peaks."""
    for r in records:
        fill_throughput(r, peaks.get(r.device))
    fill_speedups(records, seed=seed)
    return records
