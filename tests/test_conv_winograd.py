"""Winograd F(2x2,3x3) and F(4x4,3x3) against the float64 references.

The transform matrices are checked as exact algebra (the 1-D correlation identity, and the same
bilinear algorithm as ``reference.winograd_matrices`` for the same points).  The kernels run on
small geometries covering odd sizes, partial edge tiles, C and K that are not multiples of any
block, padding 0/1/'same'/asymmetric per side, batch 1 and 3, 1 to 48 channels, every dtype x
layout and every config.  Each output is compared with ``reference.conv2d`` (direct, float64,
from the dtype-rounded operands) under the shared tolerance model with the algorithm's
``ERROR_SCALE``, and for fp16/bf16 also with ``reference.conv2d_winograd`` emulating the
kernel's own rounding (transformed operands rounded, fp32 elsewhere), where only output rounding
and fp32 summation order may differ.  Outputs start as NaN (``conftest``).
"""

from __future__ import annotations


import numpy as np
import pytest
import torch

from convbench import kernels
from convbench import reference
from _compare import as_ref, assert_close, tolerance
from _operands import assert_exact_signatures, fresh_seed as _seed, operand as _make
from convbench.kernels import _common
from convbench.kernels.conv import winograd
from convbench.reference.geometry import ConvGeometry

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
COMBOS = [(d, layout) for d in DTYPES for layout in ("nchw", "channels_last")]
SCALE = {2: winograd.ERROR_SCALE_F2, 4: winograd.ERROR_SCALE_F4}

#: name -> (input shape N x C x H x W, K, padding, bias)
GEOMETRIES = {
    "odd-7x9-p1-c5-k6": ((1, 5, 7, 9), 6, 1, True),
    "batch3-11x6-p0-c17-k19": ((3, 17, 11, 6), 19, 0, False),
    "pad-0x2-c3-k2": ((1, 3, 5, 8), 2, (0, 2), True),
    "same-c1-k1": ((1, 1, 6, 5), 1, "same", False),
    "c40-k48-6x6": ((1, 40, 6, 6), 48, 1, True),
    "one-row-3x13": ((2, 4, 3, 13), 3, 1, False),
}


def _tol(dtype, geom, m, input_precision="ieee"):
    operand = "tf32" if (dtype == torch.float32 and input_precision == "tf32") else dtype
    return tolerance(dtype, geom.reduction_length, algorithm_scale=SCALE[m], operand_dtype=operand)


def _check(y, x, w, b, geom, m, what, input_precision="ieee"):
    assert y.dtype == x.dtype, f"{what}: output dtype {y.dtype}"
    fmt = torch.channels_last if _common.is_channels_last(x) else torch.contiguous_format
    assert y.is_contiguous(memory_format=fmt), f"{what}: output is not in the input's memory format"
    bias = None if b is None else as_ref(b)
    pads = geom.padding
    xp = np.pad(as_ref(x), ((0, 0), (0, 0), pads[:2], pads[2:]))  # any per-side padding
    expected = reference.conv2d(xp, as_ref(w), bias)
    err = assert_close(y, expected, _tol(x.dtype, geom, m, input_precision), what)
    if x.dtype != torch.float32:  # the kernel's own rounding model, emulated in NumPy
        emulated = reference.conv2d_winograd(xp, as_ref(w), bias, m=m, points=winograd.POINTS[m],
                                             operand_dtype=x.dtype)
        assert_close(y, emulated, tolerance(x.dtype, geom.reduction_length), what + " vs emulation")
    return err


# --------------------------------------------------------------------------------------------
# matrices and error scale
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("m", [2, 4])
def test_matrices_compute_correlation(m):
    at, g, bt = winograd.MATRICES[m]
    assert at.shape == (m, m + 2) and g.shape == (m + 2, 3) and bt.shape == (m + 2, m + 2)
    rng = np.random.default_rng(m)
    for _ in range(5):
        d, f = rng.standard_normal(m + 2), rng.standard_normal(3)
        expected = np.array([d[i:i + 3] @ f for i in range(m)])
        np.testing.assert_allclose(at @ ((g @ f) * (bt @ d)), expected, rtol=0, atol=1e-13)


@pytest.mark.parametrize("m", [2, 4])
def test_matrices_agree_with_reference_derivation(m):
    """Same points -> same bilinear algorithm (row signs may move between G and B^T)."""
    at, g, bt = winograd.MATRICES[m]
    rat, rg, rbt = reference.winograd_matrices(m, 3, points=winograd.POINTS[m])
    np.testing.assert_allclose(at, rat, atol=1e-14)
    for p in range(m + 2):
        np.testing.assert_allclose(np.outer(g[p], bt[p]), np.outer(rg[p], rbt[p]), atol=1e-14)


def test_f2_matrices_are_lavins():
    at, g, bt = winograd.MATRICES[2]
    np.testing.assert_array_equal(at, [[1, 1, 1, 0], [0, 1, -1, 1]])
    np.testing.assert_array_equal(np.abs(g), [[1, 0, 0], [.5, .5, .5], [.5, .5, .5], [0, 0, 1]])
    np.testing.assert_array_equal(np.abs(bt), [[1, 0, 1, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 1, 0, 1]])


def test_error_scale_follows_from_the_matrices():
    """The amplification formula reproduces the design notes' measured F(4,3) fp16 ratio for the
    classic points (8.2e-3 / 2.5e-4 = 33), and the points used here amplify ~3x less."""
    classic = winograd.rounding_amplification(*winograd.toom_cook((0, 1, -1, 2, -2), 4))
    assert 31 < classic < 32
    assert abs(winograd.ERROR_SCALE_F2 - 5 / 3) < 1e-12
    assert winograd.ERROR_SCALE_F4 < classic / 3


def test_multiplies_and_workspace():
    g = ConvGeometry(2, 16, 8, 12, 32, 3, 3, padding=(1, 1, 1, 1))  # P, Q divisible by 2 and 4
    direct = g.flops // 2
    assert direct / winograd.multiplies_f2(g) == 2.25
    assert direct / winograd.multiplies_f4(g) == 4.0
    tiles = 2 * 2 * 3  # F(4,3): 2 x 3 tiles per image
    assert winograd.workspace_bytes_f4(g, 2) == 36 * ((tiles * 16 + 16 * 32) * 2 + tiles * 32 * 4)
    odd = ConvGeometry(1, 3, 5, 5, 4, 3, 3)  # 3x3 output: 2x2 tiles of F(2,3)
    assert winograd.multiplies_f2(odd) == 4 * 16 * 3 * 4


# --------------------------------------------------------------------------------------------
# kernels against the references
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("index,name", list(enumerate(GEOMETRIES)))
def test_winograd_matches_reference(m, index, name, device):
    """Each geometry with a different dtype x layout (rotating with m), through ``conv2d``."""
    dtype, layout = COMBOS[(index + 3 * (m == 4)) % len(COMBOS)]
    shape, k, padding, has_bias = GEOMETRIES[name]
    seed = _seed()
    x = _make(shape, dtype, device, seed, layout)
    w = _make((k, shape[1], 3, 3), dtype, device, seed + 1)
    b = _make((k,), dtype, device, seed + 2) if has_bias else None
    geom = ConvGeometry.from_shapes(x.shape, w.shape, 1, padding)
    y = kernels.conv2d(x, w, b, padding=padding, algorithm=f"winograd_f{m}")
    _check(y, x, w, b, geom, m, f"F({m},3) {name} {geom} {dtype} {layout} seed={seed}")


def test_asymmetric_padding_per_side(device):
    """Any (top, bottom, left, right) padding, through the launcher with a geometry."""
    seed = _seed()
    x = _make((1, 6, 7, 5), torch.float32, device, seed, "channels_last")
    w = _make((5, 6, 3, 3), torch.float32, device, seed + 1)
    geom = ConvGeometry(1, 6, 7, 5, 5, 3, 3, padding=(0, 2, 1, 0))
    for m in (2, 4):
        y = winograd.launch(x, w, None, geom, m)
        _check(y, x, w, None, geom, m, f"F({m},3) {geom} seed={seed}")


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("config", winograd.CONFIGS, ids=str)
def test_every_config(m, config, device):
    seed = _seed()
    x = _make((1, 18, 5, 7), torch.float16, device, seed)
    w = _make((20, 18, 3, 3), torch.float16, device, seed + 1)
    b = _make((20,), torch.float16, device, seed + 2)
    geom = ConvGeometry.from_shapes(x.shape, w.shape, 1, 1)
    y = winograd.launch(x, w, b, geom, m, config=config)
    _check(y, x, w, b, geom, m, f"F({m},3) {config} seed={seed}")


def test_tf32_and_transformed_filter(device):
    """``input_precision="tf32"`` (exact under the interpreter, TF32 on a GPU) and a filter
    transformed once and reused: the same result as transforming it inside the call."""
    seed = _seed()
    x = _make((1, 16, 6, 6), torch.float32, device, seed)
    w = _make((16, 16, 3, 3), torch.float32, device, seed + 1)
    geom = ConvGeometry.from_shapes(x.shape, w.shape, 1, 1)
    y = winograd.launch_f2(x, w, None, geom, input_precision="tf32")
    _check(y, x, w, None, geom, 2, f"tf32 seed={seed}", input_precision="tf32")
    u = winograd.transform_filter(w, 4)
    assert u.shape == (36, 16, 16) and u.dtype == w.dtype
    y1 = winograd.launch_f4(x, w, None, geom, filter_transformed=u)
    y2 = winograd.launch_f4(x, w, None, geom)
    assert torch.equal(y1, y2)
    _check(y1, x, w, None, geom, 4, f"filter_transformed seed={seed}")


def test_int64_offsets(device, monkeypatch):
    """The 64-bit index path (taken where tensors or workspaces pass 2**31 elements), forced on."""
    monkeypatch.setattr(_common, "needs_int64", lambda *tensors: True)
    seed = _seed()
    x = _make((2, 5, 6, 7), torch.bfloat16, device, seed, "channels_last")
    w = _make((6, 5, 3, 3), torch.bfloat16, device, seed + 1)
    b = _make((6,), torch.bfloat16, device, seed + 2)
    geom = ConvGeometry.from_shapes(x.shape, w.shape, 1, 1)
    for m in (2, 4):
        _check(winograd.launch(x, w, b, geom, m), x, w, b, geom, m, f"F({m},3) int64 seed={seed}")


# --------------------------------------------------------------------------------------------
# domain and argument errors (raised before any launch)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("weight_shape,kwargs,match", [
    ((4, 4, 3, 3), dict(stride=2), r"stride 1, got stride=\(2, 2\)"),
    ((4, 4, 5, 5), dict(padding=2), "3x3 filter, got 5x5"),
    ((4, 2, 3, 3), dict(groups=2), "groups=1, got groups=2"),
    ((4, 4, 3, 3), dict(dilation=2), r"dilation 1, got dilation=\(2, 2\)"),
], ids=["stride2", "5x5", "groups2", "dilation2"])
def test_out_of_domain_raises(m, weight_shape, kwargs, match, device):
    x = torch.zeros(1, 4, 9, 9, device=device)
    w = torch.zeros(weight_shape, device=device)
    with pytest.raises(ValueError, match=match):
        kernels.conv2d(x, w, algorithm=f"winograd_f{m}", **kwargs)


def test_bad_arguments(device):
    x = torch.zeros(1, 4, 6, 6, device=device)
    w = torch.zeros(4, 4, 3, 3, device=device)
    geom = ConvGeometry.from_shapes(x.shape, w.shape)
    with pytest.raises(ValueError, match="filter_transformed"):
        winograd.launch_f2(x, w, None, geom, filter_transformed=torch.zeros(16, 4, 5, device=device))
    with pytest.raises(TypeError, match="config"):
        winograd.launch_f2(x, w, None, geom, config=(64, 64, 32))
    with pytest.raises(ValueError, match="m must be"):
        winograd.transform_filter(w, 3)
    with pytest.raises(TypeError, match="input"):
        winograd.launch_f2(x.double(), w, None, geom)


def test_static_specs_have_exact_signatures():
    specs = winograd.static_specs()
    assert_exact_signatures(specs)
    for s in specs:
        assert s.expect_tensor_cores == (".gemm/" in s.name and "fp32" not in s.name), s.name
    assert any(s.default for s in specs if ".gemm/" in s.name)
