"""Network suites: whole-network cells for every policy, their layer cells with counts, the float64
reference layer by layer, and the report's network and breakdown tables."""

from __future__ import annotations

import json

import pytest
import torch

from convbench import cli, models
from convbench.reports.networks import breakdown_tables, network_table
from convbench.suites.measure.records import Record, read_jsonl
from convbench.suites.plan import ops
from convbench.suites.plan.catalog import NETWORK_SUITES, get_suite
from convbench.suites.plan.shapes import Case, NetworkGeometry, scale_suite
from tests._compare import as_ref, assert_close, tolerance

FAST = ["--min-samples", "3", "--max-time", "0.02", "--threads", "1", "--no-peaks", "--rounds", "2",
        "--processes", "1", "--no-history", "-q"]


def test_network_geometry_counts_and_validation():
    g = NetworkGeometry("resnet50", 2)
    assert g.flops == 2 * 2 * models.count_macs(models.resnet50(), (1, 3, 224, 224))
    assert g.depth == 53 and g.reduction_length == 512 * 9
    case = Case("network", g)
    assert case.family == "network" and case.flops == g.flops and str(g) == "resnet50-n2-224x224"
    with pytest.raises(ValueError, match="model"):
        NetworkGeometry("vgg11", 1)
    with pytest.raises(ValueError, match="h and w"):
        NetworkGeometry("resnet18", 1, 16, 16)
    with pytest.raises(ValueError, match="count"):
        Case("conv2d", get_suite("resnet18-net").cases[1].geom, count=0)


@pytest.mark.parametrize("name", sorted(NETWORK_SUITES))
def test_network_suites_hold_the_network_and_its_layers_with_counts(name):
    suite = get_suite(name)
    net = suite.cases[0]
    layers = [c for c in suite.cases if c.op != "network"]
    steps = [c for c in suite.cases[1:] if c.op == "network"]  # a training step, for some networks
    assert net.op == "network" and net.mode == "fwd" and net.geom.model == NETWORK_SUITES[name] and net.geom.n == 32
    assert all(s.mode == "fwd+bwd" and s.geom == net.geom for s in steps) and len(steps) <= 1
    assert all(c.op == "conv2d" and c.count >= 1 for c in layers)
    assert sum(c.count for c in layers) == net.geom.depth  # every conv call of the forward, once
    assert len({c.shape for c in layers}) == len(layers)


def test_scaling_a_network_suite_rebuilds_its_layers():
    small = scale_suite(get_suite("resnet18-net"), 0.25)
    net, *layers = small.cases
    assert (net.geom.n, net.geom.h, net.geom.w) == (8, 56, 56)
    assert layers[0].geom.c == 3 and layers[0].geom.k == 64 and layers[0].geom.h == 56  # channels kept
    assert sum(c.count for c in layers) == 20
    assert scale_suite(get_suite("resnet18-net"), 1.0, batch=1).cases[0].geom.n == 1


def test_network_model_is_deterministic_and_calibrated():
    a = ops.network_model("resnet18", 32, 32, 1000, 7)
    assert a is ops.network_model("resnet18", 32, 32, 1000, 7)  # built once per cell
    ops.network_model.cache_clear()
    b = ops.network_model("resnet18", 32, 32, 1000, 7)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.bn1.running_var, torch.ones(64))  # calibrated, not the identity
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        ref = models.reference_forward(a, x)
        assert_close(ref, as_ref(a(x)), 1e-12, "NumPy layer-by-layer vs torch float64")


@pytest.mark.slow
def test_network_suite_runs_end_to_end(tmp_path):
    """resnet18-net at 32x32, batch 1: the whole network fused through our kernels under the
    interpreter and torch eager, each checked against the NumPy layer-by-layer float64 forward
    (two input sets); the report's network table.  (The layer cells and the breakdown table are
    tested below on known records; a full CPU run of the suite is in the closing note.)"""
    out = tmp_path / "run"
    status = cli.main(["run", "--suite", "resnet18-net", "--scale", str(32 / 224), "--batch", "1", "--ops", "network",
                       "--backends", "torch,triton-interpret", "--dtypes", "fp32", "--algorithms", "fused",
                       "--interpret-max-mflops", "200", "--out", str(out), *FAST])
    records = read_jsonl(out / "results.jsonl")
    assert status == 0, [(r.key, r.message) for r in records if r.status in ("fail", "error")]
    nets = {(r.backend, r.algorithm): r for r in records}
    assert set(nets) == {("torch", "vendor"), ("triton-interpret", "fused")}
    fused = nets[("triton-interpret", "fused")]
    assert fused.status == "ok" and fused.passed and 0 < fused.max_rel_err < fused.tolerance
    assert nets[("torch", "vendor")].p50_ms and nets[("torch", "vendor")].passed
    report = (out / "report.md").read_text()
    assert "Whole networks" in report and "interp:fused" in report


def test_numpy_backend_times_the_reference_network_and_forced_policies_say_what_fell_back():
    from convbench.suites.plan.backends import make_backend

    case = Case("network", NetworkGeometry("resnet18", 1, 32, 32))
    assert make_backend("numpy").algorithms_for(case) == ("im2col",)
    assert make_backend("torch").algorithms_for(case) == ("vendor", "compile")
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    from convbench import reference

    y = ops.network_runner(reference, case, {"input": x.numpy()})()
    net = ops.network_model("resnet18", 32, 32, 1000, ops.network_seed(case))
    with torch.no_grad():
        assert_close(y, as_ref(net(x)), 1e-12)
    note = ops.fallback_note(case, "winograd_f2", torch.float32)
    assert note.startswith("7 of 20 conv layers fell back to auto") and "layer2.0.downsample.0" in note  # 7x7 stem, strided 3x3s, 1x1 downsamples
    assert ops.fallback_note(case, "implicit_gemm", torch.float32) == ""


def _rec(backend, algorithm, op, shape, p50, count=1, dtype="fp64", label=""):
    return Record(suite="r-net", op=op, algorithm=algorithm, backend=backend, shape=shape, dtype=dtype,
                  layout="nchw", label=label or shape, count=count, status="ok", passed=True, p50_ms=p50,
                  timed=p50 is not None, samples_ms=[p50] * 3 if p50 else [])


def test_breakdown_and_network_tables_from_known_records():
    recs = [_rec("torch", "vendor", "network", "net", 10.0), _rec("numpy", "direct", "network", "net", 40.0),
            _rec("numpy", "im2col", "conv2d", "a", 2.0, count=3), _rec("numpy", "fft", "conv2d", "a", 1.0, count=3),
            _rec("numpy", "im2col", "conv2d", "b", 4.0, count=1), _rec("numpy", "fft", "conv2d", "b", 8.0, count=1)]
    (b,) = breakdown_tables(recs)
    # oracle = 3 x 1.0 (fft) + 1 x 4.0 (im2col) = 7 ms; shares 3/7 and 4/7, the larger first
    assert [row[0] for row in b.rows] == ["b", "a"] and [row[6] for row in b.rows] == ["57%", "43%"]
    assert [row[3] for row in b.rows] == ["im2col", "fft"]
    assert "oracle (every layer at its best algorithm): 7 ms" in b.notes[0] and "numpy:direct 40 ms" in b.notes[0]
    t = network_table(recs)
    speed = {row[4]: row[6] for row in t.rows}
    assert speed["numpy:direct"] == "0.25x" and speed["torch (baseline)"] == ""


def test_layer_suites_carry_their_network_counts():
    counts = {c.label: c.count for c in get_suite("resnet50").cases}
    assert (counts["conv1"], counts["l1.3x3"], counts["l1.1x1b"], counts["l3.3x3"], counts["l4.1x1a"]) == (1, 3, 4, 5, 2)
    assert {c.label: c.count for c in get_suite("mobilenet_v2").cases}["b5.dw"] == 4
    assert all(c.count == 1 for c in get_suite("vgg16").cases)  # no convbench.models twin: not counted


def test_timing_table_shows_counts_and_the_weighted_total():
    from convbench.reports.tables import timing_tables

    recs = [_rec("torch", "vendor", "conv2d", "a", 2.0, count=3), _rec("numpy", "im2col", "conv2d", "a", 4.0, count=3),
            _rec("torch", "vendor", "conv2d", "b", 1.0), _rec("numpy", "im2col", "conv2d", "b", None)]
    recs[-1].status = "ok"
    (t,) = timing_tables(recs)
    assert t.headers[:3] == ["layer", "shape", "count"]
    assert [row[2] for row in t.rows[:2]] == ["3", "1"]
    assert t.rows[-1][:2] == ["weighted total", "sum of count x p50"]
    assert t.rows[-1][3:] == ["7", ""]  # torch: 3 x 2 + 1 x 1; numpy has an untimed layer


@pytest.mark.parametrize("model", sorted(models.ZOO))
def test_calibrated_networks_are_well_conditioned_at_small_resolutions(model):
    """Batch norms calibrated on enough values per channel (64 images at 32x32, whose last stage
    is 1x1): torch's own fp32 forward then sits far inside the cell tolerance (with 2 calibration
    images mobilenet_v2 at 32x32 failed it even for torch)."""
    from convbench.suites.measure import accuracy
    from convbench.suites.measure.cell import cell_tolerance
    from convbench.suites.plan.cells import Cell

    assert ops.calibration_images(32, 32) == 64 and ops.calibration_images(224, 224) == 2
    case = Case("network", NetworkGeometry(model, 4, 32, 32))
    net = ops.network_model(model, 32, 32, 1000, ops.network_seed(case))
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    ref = models.reference_forward(net, x).numpy()
    fp32 = ops.network_runner(torch.nn.functional, case, {"input": x.float()}, "vendor")()
    err = accuracy.errors(fp32.double().numpy(), ref)[0]
    tol = cell_tolerance(Cell("s", case, "vendor", "torch", "fp32", "nchw"))
    assert err < tol / 8, (err, tol)


@pytest.mark.parametrize("policy,dtype", [("tuned", "fp32"), ("auto", "tf32"), ("fused", "tf32")])
def test_tuned_and_tf32_policies_reach_every_conv_call(policy, dtype, monkeypatch):
    """``tuned`` runs every conv with algorithm="auto", config="tune" (on a CPU: the heuristic, and
    the note says so); tf32 cells pass input_precision="tf32" to every conv, fused ones included."""
    import torch.nn.functional as F

    from convbench import kernels
    from convbench.kernels.conv import TORCH_ACTIVATIONS
    from convbench.suites.plan.backends import make_backend

    seen = []

    def spy(x, w, b, stride, padding, dilation, groups, *, algorithm, input_precision, config,
            activation=None, residual=None):
        seen.append((algorithm, input_precision, config))
        y = F.conv2d(x, w, b, stride, padding, dilation, groups)
        return TORCH_ACTIVATIONS[activation](y if residual is None else y + residual)

    monkeypatch.setattr(kernels, "conv2d", spy)
    case = Case("network", NetworkGeometry("resnet18", 1, 32, 32))
    backend = make_backend("triton-interpret")
    assert make_backend("triton").unsupported(case, policy, dtype, "nchw") is None  # tf32 networks run
    x = torch.randn(1, 3, 32, 32)
    prepared = backend.prepare(case, policy, dtype, "nchw", {"input": x})
    y = prepared.run()
    assert y.shape == (1, 1000) and len(seen) == 20
    precision = "tf32" if dtype == "tf32" else "ieee"
    expect = ("auto", precision, "tune" if policy == "tuned" else None)
    assert set(seen) == {expect}, set(seen)
    if policy == "tuned":
        assert "not tuned: no GPU" in prepared.info["note"]
    assert ops.NETWORK_POLICIES == ("auto", "tuned", "fused")
