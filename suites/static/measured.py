"""Static numbers of the launches a run measured: each Triton conv2d cell's kernels compiled for
the device's target with the cell's own geometry, dtype, layout and config, next to its time.

For the GEMM family (``implicit_gemm``, ``im2col``) the launch is rebuilt on meta tensors, so the
compile is exactly the one the cell ran; for the other algorithms the static spec of the same
config name stands in (compiled for the kernel check's representative layer) and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..plan.backends import input_precision, torch_dtype
from .analysis import analyse

GEMM_FAMILY = ("implicit_gemm", "im2col")


@dataclass
class StaticMeasured:
    cell: str
    algorithm: str
    config: str
    registers: int | None
    spill_bytes: int | None
    shared_kb: float | None
    mma: str
    p50_ms: float | None
    tflops: float | None
    roofline_pct: float | None
    exact: bool
    note: str = ""


def _geometry(record):
    from convbench.reference.geometry import ConvGeometry  # the records' conv geometry

    g = {k: (tuple(v) if isinstance(v, list) else v) for k, v in record.geometry.items() if k != "type"}
    return ConvGeometry(**g)


def _launches(record, geom):
    # lazily: TRITON_INTERPRET must be decided before convbench.kernels is imported
    from convbench.kernels import conv

    return conv.meta_launches(record.algorithm, geom, torch_dtype(record.dtype), record.layout,
                              input_precision(record.dtype), record.config or None)


def _stand_in_specs(record):
    """The kernel check's specs of the record's config (per kernel stage), in the record's dtype
    where the check compiles that config in it, else in the dtype it does."""
    from convbench import kernels  # lazily: TRITON_INTERPRET must be decided first

    family = f"conv.{record.algorithm.split('_')[0]}"
    dt = "fp32" if record.dtype == "tf32" else record.dtype
    same = [s for s in kernels.static_specs() if s.name.startswith(family) and record.config
            and record.config.startswith(s.name.rsplit("/", 1)[-1])]
    stages: dict[str, object] = {}
    for spec in same:  # one spec per kernel stage: the record's dtype first
        stage = spec.name.split("/")[0]
        if stage not in stages or f"/{dt}/" in spec.name:
            stages[stage] = spec
    return list(stages.values())


def static_vs_measured(records, target: str, limit: int | None = None) -> list[StaticMeasured]:
    """One row per timed or checked Triton conv2d record of ``records`` (the first ``limit``)."""
    rows = []
    for r in records:
        if r.op != "conv2d" or getattr(r, "mode", "fwd") != "fwd" or not r.backend.startswith("triton") \
                or r.status == "skipped":
            continue
        if limit is not None and len(rows) >= limit:
            break
        exact = r.algorithm in GEMM_FAMILY
        note = ""
        try:
            if exact:
                launches = _launches(r, _geometry(r))
                specs = [run.static_spec(f"measured/{r.algorithm}/{i}", default=False, expect_tensor_cores=False)
                         for i, run in enumerate(launches)]
            else:
                specs = _stand_in_specs(r)
                note = "static spec of the same config (representative layer)" if specs else "no static spec"
            results = [analyse(s, target) for s in specs]
        except Exception as exc:  # a record this version cannot rebuild: say so, keep the row
            results, note = [], f"not rebuilt: {type(exc).__name__}: {exc}"
        ok = [x for x in results if not x.error]
        rows.append(StaticMeasured(
            cell=f"{r.shape} {r.dtype} {r.layout}", algorithm=r.algorithm, config=r.config,
            registers=max((x.registers for x in ok), default=None),
            spill_bytes=sum(x.spill_store_bytes + x.spill_load_bytes for x in ok) if ok else None,
            shared_kb=max((x.total_shared_bytes / 1024 for x in ok), default=None),
            mma=",".join(sorted({f"{k}x{v}" for x in ok for k, v in x.mma.items()})) or "-",
            p50_ms=r.p50_ms, tflops=r.tflops, roofline_pct=r.roofline_pct, exact=exact, note=note))
    return rows
