"""Training and attack cells through the runner: modes, the part-by-part check, planted wrong
gradients, the attack check, the train/attack suites and the training-modes table."""

from __future__ import annotations

import numpy as np
import pytest

from convbench.reports.training import training_table
from convbench.suites.measure import runner
from convbench.suites.measure.accuracy import check_steps
from convbench.suites.measure.stats import StopRule
from convbench.suites.plan import backends as B
from convbench.suites.plan.catalog import TRAIN_MODES, get_suite
from convbench.suites.plan.cells import build_cells
from convbench.suites.plan.shapes import MODES, Case, scale_suite
from tests.conftest import needs_interpreter_process

pytestmark = pytest.mark.usefixtures("cpu_torch")

FAST = runner.RunOptions(rule=StopRule(min_samples=3, max_samples=20, max_time_s=0.01), measure_peaks=False,
                         progress=False, threads=1, rounds=1, processes=1)


def _backward_cells(backends, shapes=("dgrad", "wgrad", "fwd+bwd", "3x3 stride 2"), ops=("conv2d",)):
    return build_cells([get_suite("quick")], list(backends.values()), ops=list(ops), dtypes=["fp32", "fp64"],
                       layouts=["nchw"], shapes=list(shapes))


@needs_interpreter_process
def test_backward_mode_cells_pass_on_every_backend():
    backends = {"numpy": B.NumpyBackend(), "torch": B.TorchBackend("cpu"), "triton-interpret": B.TritonInterpretBackend()}
    cells = _backward_cells(backends)
    modes = {c.case.mode for c in cells}
    assert modes == set(MODES)
    triton = {(c.case.mode, c.algorithm) for c in cells if c.backend == "triton-interpret"}
    assert ("dgrad", "phase") in triton and ("wgrad", "implicit_gemm") in triton
    result = runner.run(cells, backends, None, options=FAST)
    bad = [(r.key, r.status, r.message) for r in result.records if r.status not in ("ok", "skipped")]
    assert not bad, bad
    ran = {r.algorithm for r in result.records if r.backend == "triton-interpret" and r.mode == "fwd+bwd"
           and r.status == "ok"}
    assert ran == {"direct", "im2col", "implicit_gemm"}  # every forward that takes stride 2
    by_mode = {}
    for r in result.records:
        by_mode.setdefault(r.mode, []).append(r)
    assert set(by_mode) == set(MODES)
    assert all(r.max_rel_err is not None for r in result.records if r.status == "ok")
    table = training_table(result.records)
    assert table is not None and [h for h in table.headers if h.endswith(" ms")] == \
        ["fprop ms", "dgrad ms", "wgrad ms", "fwd+bwd ms"]
    torch_row = next(row for row in table.rows if row[4] == "torch" and row[2] == "fp32")
    assert all(v not in ("", "✗") for v in torch_row[5:9]), torch_row


@needs_interpreter_process
@pytest.mark.parametrize("name", ["conv2d_weight_grad", "conv2d_input_grad"])
def test_a_wrong_gradient_fails_its_cell(monkeypatch, name):
    from convbench import kernels  # the interpreter process's kernels (set up by conftest)

    real = getattr(kernels, name)
    monkeypatch.setattr(kernels, name, lambda *a, **k: real(*a, **k) * 1.01)
    backends = {"triton-interpret": B.TritonInterpretBackend()}
    mode = "wgrad" if "weight" in name else "dgrad"
    cells = _backward_cells(backends, shapes=(mode,))
    assert cells
    (rec,) = runner.run(cells, backends, None, options=FAST).records
    assert rec.status == "fail" and "max_rel" in rec.message


@needs_interpreter_process
def test_training_step_checks_every_part(monkeypatch):
    """A step whose weight gradient is wrong fails even though y, dX and db are right."""
    from convbench.kernels.conv import grad  # the interpreter process's kernels

    real = grad.weight_grad
    monkeypatch.setattr(grad, "weight_grad", lambda *a, **k: real(*a, **k) * 0.0)
    backends = {"triton-interpret": B.TritonInterpretBackend()}
    cells = [c for c in _backward_cells(backends, shapes=("fwd+bwd",)) if c.algorithm == "implicit_gemm"]
    (rec,) = runner.run(cells, backends, None, options=FAST).records
    assert rec.status == "fail" and " dW" in rec.message


@needs_interpreter_process
def test_attack_cells_pass_and_agree_with_torch():
    backends = {"numpy": B.NumpyBackend(), "torch": B.TorchBackend("cpu"), "triton-interpret": B.TritonInterpretBackend()}
    cells = build_cells([get_suite("quick")], list(backends.values()), ops=["fgsm", "pgd"],
                        dtypes=["fp32", "fp64"], layouts=["nchw"])
    assert {c.op for c in cells} == {"fgsm", "pgd"} and {c.backend for c in cells} == set(backends)
    result = runner.run(cells, backends, None, options=FAST)
    status = {(r.op, r.backend): r for r in result.records if r.dtype == "fp32" or r.backend == "numpy"}
    for op in ("fgsm", "pgd"):
        assert status[(op, "torch")].status == "ok", status[(op, "torch")].message
        assert status[(op, "triton-interpret")].status == "ok", status[(op, "triton-interpret")].message
        assert status[(op, "numpy")].status == "skipped" and "torch autograd in float64" in status[(op, "numpy")].message


def test_check_steps_allows_a_few_flipped_steps_only():
    ref = np.linspace(0, 1, 1000).reshape(10, 100)
    ok = ref.copy()
    ok[0, :5] += 0.2  # 0.5% flipped
    assert check_steps(ok, ref, 1e-6).passed
    bad = ref.copy()
    bad[:, :5] += 0.2  # 5% flipped
    result = check_steps(bad, ref, 1e-6)
    assert not result.passed and "5.0%" in result.message
    assert not check_steps(ref[:5], ref, 1e-6).passed
    assert not check_steps(ref * (1 + 1e-3), ref, 1e-6).passed  # every element off: not flips


def test_train_and_attack_suites():
    train = get_suite("train")
    assert {c.mode for c in train.cases} == set(TRAIN_MODES)
    labels = {c.label.split(" [")[0] for c in train.cases}
    assert any(l.startswith("resnet50.") for l in labels) and any(l.startswith("mobilenet_v2.") for l in labels)
    assert len({c.shape for c in train.cases}) == len(train.cases)
    small = scale_suite(train, 0.125, batch=1)
    assert {c.mode for c in small.cases} == set(TRAIN_MODES)
    attack = get_suite("attack")
    assert {c.op for c in attack.cases} == {"fgsm", "pgd"}
    assert all(c.geom.steps == 10 for c in attack.cases if c.op == "pgd")
    assert scale_suite(attack, 0.25).cases[0].geom.h >= 2


def test_mode_is_validated():
    conv = get_suite("quick").cases[0]
    with pytest.raises(ValueError, match="mode"):
        Case(conv.op, conv.geom, mode="backward")
    pool = next(c for c in get_suite("quick").cases if c.op == "max_pool2d")
    with pytest.raises(ValueError, match="applies to conv2d"):
        Case(pool.op, pool.geom, mode="dgrad")
