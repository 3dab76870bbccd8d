"""The runner and its records: round trips, atomic writes, resume after an interruption, error cells."""

import json
import os

import numpy as np
import pytest
import torch

from convbench.suites.plan import backends as B
from convbench.suites.measure import records as R
from convbench.suites.measure import runner
from convbench.suites.measure.accuracy import check, tolerance
from convbench.suites.plan.catalog import get_suite
from convbench.suites.plan.cells import Cell, build_cells
from convbench.suites.measure.metrics import fill_speedups, fill_throughput
from convbench.suites.measure.peaks import Peaks
from convbench.suites.measure.stats import StopRule
from convbench.suites.measure.timing import first_call, measure

pytestmark = pytest.mark.usefixtures("cpu_torch")  # CPU round counts, probes and plot names

FAST = runner.RunOptions(rule=StopRule(min_samples=3, max_samples=50, max_time_s=0.01), measure_peaks=False,
                         progress=False, threads=1, rounds=2, processes=1)


def _cells(ops=("max_pool2d", "avg_pool2d", "adaptive_avg_pool2d")):
    backends = {"numpy": B.NumpyBackend(), "torch": B.TorchBackend("cpu")}
    cells = build_cells([get_suite("quick")], list(backends.values()), ops=list(ops), dtypes=["fp64"],
                        layouts=["nchw"])
    return cells, backends


def _record(**over):
    r = R.Record(suite="quick", op="conv2d", algorithm="direct", backend="numpy", shape="n1-c3-8x8-k4-3x3-s1-p1",
                 dtype="fp64", layout="nchw", label="a, \"quoted\" label", device="cpu",
                 geometry={"type": "ConvGeometry", "n": 1, "c": 3, "h": 8, "w": 8, "k": 4, "r": 3, "s": 3,
                           "stride": [1, 1], "padding": [1, 1, 1, 1], "dilation": [1, 1], "groups": 1},
                 status="ok", max_rel_err=1.5e-16, rms_rel_err=3.25e-17, tolerance=2e-15, passed=True,
                 checked_images=1, timed=True, timer="perf_counter", p50_ms=0.125, p20_ms=0.1, p80_ms=0.2,
                 mean_ms=0.15, cv=0.1, noise=0.01, n_samples=3, stop_reason="converged", compile_ms=1.0,
                 flops=1728, multiplies=864, min_bytes=1000, workspace_bytes=None, tflops=1.3824e-05,
                 gbps=8.0, roofline_pct=12.5, baseline="k", speedup=1.5, speedup_lo=1.25, speedup_hi=1.75,
                 samples_ms=[0.1, 0.125, 0.2])
    for k, v in over.items():
        setattr(r, k, v)
    return r


def test_records_round_trip_jsonl_and_csv(tmp_path):
    recs = [_record(), _record(algorithm="im2col", status="skipped", message="n/a, with a comma", timed=False,
                               p50_ms=None, samples_ms=[], passed=None, speedup=None)]
    store = R.ResultStore(tmp_path)
    store.rewrite(recs)
    assert R.read_jsonl(store.jsonl) == recs  # lossless, samples included
    back = R.read_csv(store.csv)
    for a, b in zip(back, recs):
        b = R.Record.from_dict({**b.to_dict(), "samples_ms": []})
        assert a == b
    assert R.cell_key(recs[0]) == "quick|conv2d|direct|numpy|n1-c3-8x8-k4-3x3-s1-p1|fp64|nchw"
    assert R.cell_key(recs[0].to_dict()) == recs[0].key
    untimed = json.loads(store.jsonl.read_text().splitlines()[1])
    assert untimed["samples_ms"] == [] and untimed["p50_ms"] is None


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "results.csv"
    R.atomic_write_text(path, "old\n")

    def boom(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        R.atomic_write_text(path, "new\n")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]  # no temp file left


def test_torn_last_line_is_ignored(tmp_path):
    store = R.ResultStore(tmp_path)
    store.start([_record()])
    with store.jsonl.open("a") as f:
        f.write('{"suite": "quick", "op": "con')  # a write cut by the interruption
    assert R.read_jsonl(store.jsonl) == [_record()]


def test_interrupted_run_resumes_without_losing_cells(tmp_path, monkeypatch):
    cells, backends = _cells()
    assert len(cells) >= 6
    store = R.ResultStore(tmp_path)
    real, calls = runner.run_cell, []

    def interrupt_at_four(cell, *args):
        if len(calls) == 4:
            raise KeyboardInterrupt
        calls.append(cell.key)
        return real(cell, *args)

    monkeypatch.setattr(runner, "run_cell", interrupt_at_four)
    first = runner.run(cells, backends, store, options=FAST)
    assert first.interrupted and len(first.records) == 4
    assert [r.key for r in R.read_jsonl(store.jsonl)] == calls  # finished cells are on disk
    assert len(R.read_csv(store.csv)) == 4

    calls.clear()
    monkeypatch.setattr(runner, "run_cell", lambda cell, *a: (calls.append(cell.key), real(cell, *a))[1])
    second = runner.run(cells, backends, store, options=FAST, resume=True)
    assert not second.interrupted
    assert len(calls) == len(cells) - 4  # only the missing cells ran
    assert sorted(r.key for r in R.read_jsonl(store.jsonl)) == sorted(c.key for c in cells)
    assert all(r.status == "ok" and r.passed for r in second.records)
    numpy_cells = [r for r in second.records if r.backend == "numpy"]
    assert numpy_cells and all(r.speedup > 0 and r.speedup_lo <= r.speedup_hi for r in numpy_cells)
    assert all(r.baseline.endswith(f"|vendor|torch|{r.shape}|fp64|nchw") for r in numpy_cells)


class _Unfinished(B.Backend):
    name, device, dtypes, layouts = "triton-interpret", "cpu", ("fp32",), ("nchw",)
    timed = False

    def algorithms(self, op):
        return ("direct",)

    def unsupported(self, case, algorithm, dtype, layout):
        return "too big" if case.geom.h > 12 else None

    def prepare(self, case, algorithm, dtype, layout, tensors):
        if case.op == "conv2d" and case.geom.r == 1:
            return B.Prepared(lambda: torch.full(case.geom.output_shape, float("nan")), B._to_numpy)
        raise NotImplementedError("kernel is not written yet")


def test_errors_skips_and_wrong_results_become_records():
    backend = _Unfinished()
    quick = get_suite("quick")
    cells = [Cell("quick", c, "direct", backend.name, "fp32", "nchw") for c in quick.cases if c.op == "conv2d"]
    result = runner.run(cells, {backend.name: backend}, None, options=FAST)
    by_status = {}
    for r in result.records:
        by_status.setdefault(r.status, []).append(r)
        assert r.samples_ms == [] and r.p50_ms is None and r.compile_ms is None  # never interpreter seconds
    assert {r.message for r in by_status["error"]} == {"NotImplementedError: kernel is not written yet"}
    assert all(r.message == "too big" for r in by_status["skipped"])
    (wrong,) = by_status["fail"]
    assert "NaN mismatch" in wrong.message and wrong.passed is False
    assert len(result.failures) == len(by_status["error"]) + 1


def test_untimed_interpreter_cell(tmp_path):
    """A real Triton cell in the interpreter: checked, and its timing recorded as not measured."""
    backend = B.TritonInterpretBackend()
    if backend.available():
        pytest.skip(f"interpreter unavailable: {backend.available()}")
    case = next(c for c in get_suite("quick").cases if c.label == "1x1")
    cell = Cell("quick", case, "implicit_gemm", backend.name, "fp32", "nchw")
    (rec,) = runner.run([cell], {backend.name: backend}, R.ResultStore(tmp_path), options=FAST).records
    assert rec.timed is False and rec.samples_ms == [] and rec.p50_ms is None
    assert rec.timing_note.startswith("not measured")
    assert rec.status in ("ok", "fail", "error")
    if rec.status != "error":
        assert rec.max_rel_err is not None and rec.passed == (rec.status == "ok")


def test_cell_tolerance_follows_algorithm_and_dtype():
    case = next(c for c in get_suite("quick").cases if c.op == "conv2d")
    L = case.reduction_length
    direct = runner.cell_tolerance(Cell("q", case, "direct", "triton", "fp16", "nchw"))
    assert direct == tolerance(torch.float16, L)
    wino = runner.cell_tolerance(Cell("q", case, "winograd_f4", "triton", "fp16", "nchw"))
    scale = runner.algorithm_error_scale("winograd_f4")
    assert wino == tolerance(torch.float16, L, algorithm_scale=scale, operand_dtype=torch.float16)
    tf32 = runner.cell_tolerance(Cell("q", case, "direct", "triton", "tf32", "nchw"))
    assert tf32 == tolerance(torch.float32, L, input_precision="tf32")
    f64 = runner.cell_tolerance(Cell("q", case, "direct", "numpy", "fp64", "nchw"))
    assert f64 == tolerance(torch.float64, L, accumulate_dtype=torch.float64) < 1e-13


def test_check_verdicts():
    ref = np.array([[1.0, np.nan], [np.inf, 2.0]])
    assert check(ref.copy(), ref, 1e-9).passed
    bad = ref.copy()
    bad[1, 1] = np.nan
    assert "NaN mismatch" in check(bad, ref, 1e-9).message
    assert "shape" in check(ref[:1], ref, 1e-9).message
    off = ref.copy()
    off[1, 1] = 2.2
    result = check(off, ref, 1e-3)
    assert not result.passed and result.max_rel == pytest.approx(0.1)


def test_throughput_and_speedup_columns():
    r = _record(flops=2_000_000_000, min_bytes=1_000_000, p50_ms=1.0, device="cpu")
    fill_throughput(r, Peaks("cpu", copy_gbps=10.0, matmul_tflops={"fp64": 4.0}))
    assert r.tflops == pytest.approx(2.0) and r.gbps == pytest.approx(1.0)
    assert r.roofline_pct == pytest.approx(50.0)  # compute bound: 0.5 ms at 4 TFLOP/s
    base = _record(backend="torch", algorithm="vendor", samples_ms=[2.0, 2.1, 1.9, 2.0])
    new = _record(samples_ms=[1.0, 1.05, 0.95, 1.0])
    fill_speedups([base, new])
    assert new.baseline == base.key and new.speedup == pytest.approx(2.0)
    assert new.speedup_lo <= 2.0 <= new.speedup_hi and base.speedup is None


def test_cpu_timing_takes_enough_samples():
    calls = []
    out, ms = first_call(lambda: calls.append(1) or 7, "cpu")
    assert out == 7 and ms >= 0
    m = measure(lambda: sum(range(100)), "cpu", StopRule(min_samples=5, max_time_s=0.05))
    assert len(m.samples_ms) >= 5 and m.timer == "perf_counter" and m.stop_reason
    assert all(s > 0 for s in m.samples_ms)


def test_broken_kernels_package_errors_cells_not_the_run(monkeypatch):
    def broken():
        raise ImportError("kernels/conv/fft.py: SyntaxError (simulated)")

    monkeypatch.setattr(B, "_kernels", broken)
    backend = B.TritonInterpretBackend()
    cells = build_cells([get_suite("quick")], [backend], ops=["conv2d"], dtypes=["fp32"], layouts=["nchw"],
                        shapes=["1x1"])
    assert [c.algorithm for c in cells] == list(B.CONTRACT_CONV2D_ALGORITHMS)
    result = runner.run(cells[:2], {backend.name: backend}, None, options=FAST)
    assert [r.status for r in result.records] == ["error", "error"]
    assert all("SyntaxError (simulated)" in r.message for r in result.records)
