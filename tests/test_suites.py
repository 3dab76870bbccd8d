"""Suites: transcribed shapes, FLOP/byte counts by hand, multiply counts, scaling, cells."""

import csv

import pytest

from convbench.reference.geometry import ConvGeometry
from convbench.suites.plan import backends as B
from convbench.suites.plan.catalog import SHAPES_CSV, SUITE_NAMES, csv_cases, get_suite
from convbench.suites.plan.cells import build_cells
from convbench.suites.plan.shapes import OPS, AdaptivePoolGeometry, Case, scale_case, scale_suite


def _layer(net, label):
    return next(c for c in csv_cases(net) if c.label == label)


def test_every_csv_row_matches_its_geometry():
    """P, Q, GFLOP and fp16 arithmetic intensity columns agree with the geometry rules."""
    with SHAPES_CSV.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 50
    for row in rows:
        case = _layer(row["net"], row["layer"])
        g = case.geom
        assert (g.p, g.q) == (int(row["P"]), int(row["Q"])), row
        assert g.flops / 1e9 == pytest.approx(float(row["GFLOP"]), abs=1e-3, rel=1e-3), row
        assert g.flops / case.min_bytes(2) == pytest.approx(float(row["AI_fp16"]), abs=0.06), row


def test_resnet50_flops_and_bytes_by_hand():
    # conv1: 32x3x224x224 -> 64 filters 7x7/2 pad 3 -> 112x112
    g = _layer("resnet50", "conv1").geom
    assert g.flops == 2 * 32 * 64 * (3 * 7 * 7) * 112 * 112 == 7_552_892_928
    elems = 32 * 3 * 224 * 224 + 64 * 3 * 7 * 7 + 32 * 64 * 112 * 112  # in + weight + out
    assert elems == 30_516_416 and g.min_bytes(2) == 61_032_832
    # layer1 3x3: 32x64x56x56 -> 64 filters 3x3 pad 1
    g = _layer("resnet50", "l1.3x3").geom
    assert g.flops == 2 * 32 * 64 * (64 * 9) * 56 * 56 == 7_398_752_256
    assert g.min_bytes(2) == 2 * (32 * 64 * 56 * 56 + 64 * 64 * 9 + 32 * 64 * 56 * 56) == 25_763_840
    # layer3 1x1 reduce: 32x1024x14x14 -> 256 filters 1x1
    g = _layer("resnet50", "l3.1x1a").geom
    assert g.flops == 2 * 32 * 256 * 1024 * 14 * 14 == 3_288_334_336
    assert g.min_bytes(4) == 4 * (32 * 1024 * 196 + 256 * 1024 + 32 * 256 * 196) == 33_161_216


def test_winograd_multiplies_are_2_25x_and_4x_fewer():
    from convbench import kernels
    algos = {a.name: a for a in kernels.ALGORITHMS}
    g = _layer("resnet50", "l2.3x3").geom  # 28x28: whole 2x2 and 4x4 tiles
    direct = algos["direct"].multiplies(g)
    assert direct == g.flops // 2
    assert direct / algos["winograd_f2"].multiplies(g) == pytest.approx(2.25)
    assert direct / algos["winograd_f4"].multiplies(g) == pytest.approx(4.0)


@pytest.mark.parametrize("name", SUITE_NAMES)
def test_every_suite_builds_and_shrinks(name):
    suite = get_suite(name)
    assert suite.cases and suite.description
    keys = [(c.op, c.shape) for c in suite.cases]
    assert len(keys) == len(set(keys)), "shape strings must be unique per op"
    for factor in (0.5, 0.1, 0.01):
        small = scale_suite(suite, factor)
        assert small.cases
        for c in small.cases:
            assert c.flops > 0 and c.min_bytes(2) > 0  # still a valid, non-empty problem


def test_scaling_rules():
    dw = Case("conv2d", ConvGeometry(32, 144, 56, 56, 144, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 144))
    small = scale_case(dw, 0.25)
    assert small.geom.is_depthwise and small.geom.c == 36 and small.geom.h == 14 and small.geom.n == 8
    assert scale_case(dw, 1.0, batch=2).geom.n == 2
    stem = _layer("resnet50", "conv1")
    tiny = scale_case(stem, 0.01)
    assert tiny.geom.p >= 1 and tiny.geom.r == 7  # kernel kept, input grown to fit it
    with pytest.raises(ValueError, match="scale"):
        scale_case(dw, 0.0)
    gn = next(c for c in get_suite("norm").cases if c.op == "group_norm")
    assert scale_case(gn, 0.1).geom.c % gn.geom.num_groups == 0


def test_case_validation():
    with pytest.raises(ValueError, match="op must be"):
        Case("conv3d", AdaptivePoolGeometry(1, 1, 2, 2))
    with pytest.raises(ValueError, match="needs a ConvGeometry"):
        Case("conv2d", AdaptivePoolGeometry(1, 1, 2, 2))
    with pytest.raises(ValueError, match="training"):
        Case("adaptive_avg_pool2d", AdaptivePoolGeometry(1, 1, 2, 2), training=True)
    with pytest.raises(ValueError, match="suite must be"):
        get_suite("alexnet")


def test_quick_and_seed_cover_every_op():
    # every op but a whole network (the -net suites: even resnet18 at 32x32 takes the interpreter
    # 20-50 s per policy, and quick runs every policy)
    assert set(get_suite("quick").ops()) == set(OPS) - {"network"}
    labels = " ".join(c.label for c in get_suite("seed").cases)
    for variant in ("valid", "same", "strided", "dilated", "1x1", "multi-channel", "transposed",
                    "max pool", "avg pool", "global average", "batch norm", "layer norm", "instance norm"):
        assert variant in labels


def test_quick_suite_exercises_every_conv_algorithm():
    """Each Triton conv algorithm applies to at least one quick case (winograd/fft included)."""
    from convbench import kernels
    import torch

    cases = [c for c in get_suite("quick").cases if c.op == "conv2d"]
    for algo in kernels.ALGORITHMS:
        reasons = [algo.unsupported(c.geom, torch.float32) for c in cases]
        assert any(r is None for r in reasons), f"{algo.name} applies to no quick case: {set(reasons)}"


def test_cells_and_filters():
    backends = [B.TorchBackend("cpu"), B.NumpyBackend()]
    quick = [get_suite("quick")]
    cells = build_cells(quick, backends, ops=["conv2d"], dtypes=["fp32", "fp64"], layouts=["nchw"])
    assert len({c.key for c in cells}) == len(cells)
    assert all(c.dtype == "fp64" and c.layout == "nchw" for c in cells if c.backend == "numpy")
    n_conv = sum(c.op == "conv2d" for c in get_suite("quick").cases)
    n_fwd = sum(c.op == "conv2d" and c.mode == "fwd" for c in get_suite("quick").cases)
    assert sum(c.backend == "torch" for c in cells) == 2 * n_conv  # fp32 and fp64 baselines
    # five reference algorithms per forward case; one float64 reference per backward mode
    assert sum(c.backend == "numpy" for c in cells) == 5 * n_fwd + (n_conv - n_fwd)
    only = build_cells(quick, backends, ops=["conv2d"], algorithms=["fft"], dtypes=["fp64"], layouts=["nchw"],
                       shapes=["1x1"])
    assert sorted(c.algorithm for c in only) == ["fft", "vendor"]  # the baseline stays
    with pytest.raises(ValueError, match="dtypes"):
        build_cells(quick, backends, dtypes=["fp8"])
