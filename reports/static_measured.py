"""The static-vs-measured table (``convbench gpu-check``): static numbers of each Triton conv2d
cell's launch next to its achieved throughput."""

from __future__ import annotations

from convbench.suites.static.measured import static_vs_measured

from .tables import Table, fmt_ms


def static_vs_measured_table(records, target: str, limit: int | None = None) -> Table:
    t = Table(f"static ({target}) vs measured: Triton conv2d cells", [
        "cell", "algorithm", "config", "regs", "spill B", "smem KB", "MMA", "p50 ms", "TFLOP/s", "% of peak"])
    for row in static_vs_measured(records, target, limit=limit):
        t.rows.append([row.cell, row.algorithm, row.config or "heuristic",
                       "-" if row.registers is None else str(row.registers),
                       "-" if row.spill_bytes is None else str(row.spill_bytes),
                       "-" if row.shared_kb is None else f"{row.shared_kb:.1f}", row.mma, fmt_ms(row.p50_ms),
                       "-" if row.tflops is None else f"{row.tflops:.1f}",
                       "-" if row.roofline_pct is None else f"{row.roofline_pct:.0f}%"])
    t.notes.append("GEMM-family rows are compiled for the cell's own geometry, dtype, layout and config; "
                   "direct/Winograd/FFT rows use the static spec of the same config (representative layer). "
                   "% of peak is the cell's roofline percentage (attainable from the measured peaks).")
    return t
