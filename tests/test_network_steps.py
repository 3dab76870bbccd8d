"""Network training-step cells (forward in training mode + backward of a seeded logit gradient,
no optimizer): the differentiable float64 reference through the NumPy layer backwards, the
check per part (fp32-probe tolerances, rms bound, structural zeros), what does not apply, and
whole-network gradients through our kernels."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch

from convbench import cli, models
from convbench import nn as cnn
from convbench.suites.measure import accuracy
from convbench.suites.measure.cell import cell_tolerance, check_output
from convbench.suites.measure.inputs import InputCache
from convbench.suites.measure.records import read_jsonl
from convbench.suites.plan import ops
from convbench.suites.plan.backends import TRAIN_STEP_FP32_ONLY, TRAIN_STEP_UNFUSED, make_backend
from convbench.suites.plan.catalog import TRAINING_STEP_NETWORKS, get_suite
from convbench.suites.plan.cells import Cell
from convbench.suites.plan.shapes import Case, NetworkGeometry
from tests._operands import fresh_seed

FAST = ["--min-samples", "3", "--max-time", "0.02", "--threads", "1", "--no-peaks", "--rounds", "1",
        "--processes", "1", "--no-history", "-q"]


def _step_case(model="mobilenet_v2", n=4, res=32) -> Case:
    return Case("network", NetworkGeometry(model, n, res, res), mode="fwd+bwd")


def _torch_step(net, x, dy):
    m = models.layers.training_mode(copy.deepcopy(net))
    y = m(x)
    return (y.detach(), *torch.autograd.grad(y, list(m.parameters()), dy))


@pytest.mark.parametrize("model,n", [("resnet18", 2), ("mobilenet_v2", 4)])
def test_reference_train_step_matches_torch_float64_autograd(model, n):
    """Each NumPy layer's backward (conv input and weight gradients, batch norm with batch
    statistics, pools) composed by autograd equals torch's float64 step, part by part; parts that
    are structurally zero agree to rounding of the step's largest gradient."""
    net = ops.network_model(model, 32, 32, 1000, 11)
    g = torch.Generator().manual_seed(fresh_seed())
    x = torch.randn(n, 3, 32, 32, generator=g, dtype=torch.float64)
    dy = torch.randn(n, 1000, generator=g, dtype=torch.float64)
    ref = models.layers.reference_train_step(net, x, dy)
    expected = _torch_step(net, x, dy)
    assert len(ref) == len(expected) == 1 + len(list(net.parameters()))
    scale = max(float(e.abs().max()) for e in expected[1:])
    for i, (r, e) in enumerate(zip(ref, expected)):
        e = e.numpy()
        own = np.abs(e).max()
        err = np.abs(r - e).max() / (own if own > 1e-10 * scale else scale)
        assert err < 1e-7, (model, i, err)
    assert not net.training and all(not m.training for m in net.modules())  # the cell's model untouched


def test_step_reference_names_parts_marks_structural_zeros_and_probes_fp32():
    case = _step_case()
    tensors, ref, images = InputCache(0, 1e18).get(case, "fp32")
    assert images == 4 and set(tensors) == {"input", "grad_output"} and tensors["grad_output"].shape == (4, 1000)
    net = ops.network_model("mobilenet_v2", 32, 32, 1000, ops.network_seed(case))
    assert ref.names[0] == "y" and len(ref.names) == len(ref.parts) == 1 + len(list(net.parameters()))
    zero = [name for name, z in zip(ref.names, ref.zero) if z]
    # the projection batch norms' shifts, which the next block's batch norm (after a linear 1x1) removes
    assert zero and all(name.endswith(".bias]") for name in zero), zero
    live = [p for p, z in zip(ref.probe_max, ref.zero) if not z]
    assert 0 < np.median(live) < 1e-2 and ref.probe_max[0] < 1e-3  # torch fp32 vs float64 at 4x32x32


def test_step_check_catches_dropped_garbage_and_missing_gradients():
    """The checker itself, on known outputs: the float64 step passes; the reference with one
    live gradient zeroed (a dropped gradient) fails on its part; noise in a structurally zero part
    at 1% of its batch norm's weight gradient fails; a missing part fails."""
    case = _step_case()
    _, ref, _ = InputCache(0, 1e18).get(case, "fp32")
    cell = Cell("s", case, "auto", "triton-interpret", "fp32", "nchw")
    exact = tuple(p.copy() for p in ref.parts)
    assert check_output(cell, exact, ref).passed
    live = next(i for i, z in enumerate(ref.zero) if i > 0 and not z)
    dropped = list(exact)
    dropped[live] = np.zeros_like(dropped[live])
    c = check_output(cell, tuple(dropped), ref)
    assert not c.passed and ref.names[live] in c.message
    zero = ref.zero.index(True)
    noisy = list(exact)
    assert ref.scale[zero] < max(float(np.abs(p).max()) for p in exact[1:])  # its batch norm's weight gradient
    noisy[zero] = np.full_like(noisy[zero], 1e-2 * ref.scale[zero])
    c = check_output(cell, tuple(noisy), ref)
    assert not c.passed and "structurally zero" in c.message
    assert not check_output(cell, exact[:-1], ref).passed


def test_training_step_cells_in_the_suites_and_what_does_not_apply():
    for name in TRAINING_STEP_NETWORKS:
        suite = get_suite(f"{name}-net")
        steps = [c for c in suite.cases if c.op == "network" and c.mode == "fwd+bwd"]
        assert len(steps) == 1 and steps[0].flops == 3 * suite.cases[0].flops
    assert not any(c.mode == "fwd+bwd" for c in get_suite("resnet18-net").cases if c.op == "network")
    triton, torch_ = make_backend("triton"), make_backend("torch")
    case = _step_case()
    assert triton.unsupported(case, "auto", "fp32", "nchw") is None
    assert triton.unsupported(case, "fused", "fp32", "nchw") == TRAIN_STEP_UNFUSED
    assert torch_.unsupported(case, "vendor", "fp16", "nchw") == TRAIN_STEP_FP32_ONLY
    small = torch_.unsupported(_step_case(n=2), "vendor", "fp32", "nchw")
    assert "2 values per channel" in small and "--batch 4" in small
    assert torch_.unsupported(_step_case(n=1, res=64), "vendor", "fp32", "nchw") is None  # 2x2 at the last stage


def test_training_step_cell_runs_end_to_end_through_the_cli(tmp_path):
    """mobilenet_v2-net's training step at 4 x 32 x 32: torch's fp32 step passes its check (its
    error is the probe's, a quarter of the tolerance), float64 torch within rounding; the
    report lists the cell."""
    out = tmp_path / "run"
    status = cli.main(["run", "--suite", "mobilenet_v2-net", "--scale", str(32 / 224), "--batch", "4",
                       "--ops", "network", "--shapes", "training step", "--backends", "torch",
                       "--dtypes", "fp32,fp64", "--out", str(out), *FAST])
    records = read_jsonl(out / "results.jsonl")
    assert status == 0, [(r.key, r.message) for r in records if r.status in ("fail", "error")]
    done = {r.dtype: r for r in records if r.status == "ok"}
    assert set(done) == {"fp32", "fp64"} and all(r.passed and r.p50_ms for r in done.values())
    assert 0 < done["fp32"].max_rel_err <= done["fp32"].tolerance
    assert done["fp64"].max_rel_err < 1e-9
    assert "training step" in (out / "report.md").read_text()


def test_backward_through_our_kernels_matches_the_float64_reference_with_frozen_norms():
    """MobileNetV2's parameter gradients through our kernels (convbench.nn, algorithm="auto":
    depthwise and 1x1 dgrad/wgrad, eval-mode batch norm backward, pooling, activations, residual
    adds) against the float64 NumPy-layer backward.  Eval-mode batch norm keeps the step well
    conditioned at one image (a training-mode step needs 4 images at 32x32 to be checkable,
    minutes under the interpreter: CONVBENCH_NETWORK_TESTS=1 runs it below)."""
    net = ops.network_model("mobilenet_v2", 32, 32, 1000, 3)
    g = torch.Generator().manual_seed(fresh_seed())
    x = torch.randn(1, 3, 32, 32, generator=g, dtype=torch.float64).float()
    dy = torch.randn(1, 1000, generator=g, dtype=torch.float64).float()
    ours = cnn.convert(copy.deepcopy(net), "auto").float().eval()
    y = ours(x)
    got = (y.detach(), *torch.autograd.grad(y, list(ours.parameters()), dy))
    ref_net = models.reference_network(net)
    y64 = ref_net(x.double())
    ref = (y64.detach(), *torch.autograd.grad(y64, list(ref_net.parameters()), dy.double()))
    case = Case("network", NetworkGeometry("mobilenet_v2", 1, 32, 32), mode="fwd+bwd")
    tol = 2 * cell_tolerance(Cell("s", case, "auto", "triton-interpret", "fp32", "nchw"))
    torch32 = copy.deepcopy(net).float().eval()
    y32 = torch32(x)
    probe = (y32.detach(), *torch.autograd.grad(y32, list(torch32.parameters()), dy))
    names = ["y", *(name for name, _ in net.named_parameters())]
    for name, a, p, r in zip(names, got, probe, ref):
        r = r.numpy()
        assert accuracy.errors(p.double().numpy(), r)[0] < tol / 4, name  # torch fp32: well conditioned
        accuracy.assert_close(a, r, tol, f"{name} (ours)")


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("CONVBENCH_NETWORK_TESTS") != "1",
                    reason="a training-mode step of a whole network takes minutes under the interpreter "
                           "(CONVBENCH_NETWORK_TESTS=1 runs it)")
def test_training_step_through_our_kernels_passes_its_cell_check(tmp_path):
    out = tmp_path / "run"
    status = cli.main(["run", "--suite", "mobilenet_v2-net", "--scale", str(32 / 224), "--batch", "4",
                       "--ops", "network", "--shapes", "training step", "--backends", "triton-interpret",
                       "--dtypes", "fp32", "--algorithms", "auto", "--interpret-max-mflops", "100000",
                       "--out", str(out), *FAST])
    records = read_jsonl(out / "results.jsonl")
    assert status == 0, [(r.key, r.message) for r in records if r.status in ("fail", "error")]
    (rec,) = [r for r in records if r.status == "ok"]
    assert rec.algorithm == "auto" and rec.passed and rec.max_rel_err <= rec.tolerance
