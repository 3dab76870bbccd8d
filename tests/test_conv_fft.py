"""FFT convolution (tiled, overlap-save, DFTs as ``tl.dot``) against the float64 reference.

The DFT tables and the 64 = 16 x 4 Cooley-Tukey plan are checked on the host against
``numpy.fft``; the kernels run on small geometries covering odd sizes, several tiles per image
with a partial last tile, C and K that are not multiples of any block, 3x3 to 7x7 and
rectangular filters, padding 0/1/3/'same' (asymmetric per side for even filters), batch 1 and
3, 1 to 34 channels, every dtype x layout and every config (tiles 16, 32 and 64).  Outputs are
compared with ``reference.conv2d`` (float64, from the dtype-rounded operands) under the shared
tolerance model; outputs start as NaN (``conftest``).
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
from convbench.kernels.conv import fft
from convbench.reference.geometry import ConvGeometry

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
COMBOS = [(d, layout) for d in DTYPES for layout in ("nchw", "channels_last")]

#: name -> (input shape N x C x H x W, K, R x S, padding, bias)
GEOMETRIES = {
    "odd-7x9-3x3-p1": ((1, 5, 7, 9), 6, (3, 3), 1, True),
    "batch3-5x3-p0-c17-k19": ((3, 17, 20, 13), 19, (5, 3), 0, False),
    "same-4x4-asym": ((1, 3, 9, 10), 2, (4, 4), "same", True),
    "c1-k1-7x7-p3": ((1, 1, 12, 11), 1, (7, 7), 3, False),
    "c24-k34-3x3": ((1, 24, 6, 6), 34, (3, 3), 1, True),
    "tiles-3x2-30x20": ((1, 2, 30, 20), 3, (3, 3), 1, False),
}


def _check(y, x, w, b, geom, what, input_precision="ieee"):
    assert y.dtype == x.dtype, f"{what}: output dtype {y.dtype}"
    fmt = torch.channels_last if _common.is_channels_last(x) else torch.contiguous_format
    assert y.is_contiguous(memory_format=fmt), f"{what}: output is not in the input's memory format"
    pads = geom.padding
    xp = np.pad(as_ref(x), ((0, 0), (0, 0), pads[:2], pads[2:]))
    expected = reference.conv2d(xp, as_ref(w), None if b is None else as_ref(b))
    tol = tolerance(x.dtype, geom.reduction_length, algorithm_scale=fft.ERROR_SCALE,
                    operand_dtype=fft.operand_rounding(x.dtype, input_precision))
    return assert_close(y, expected, tol, what)


# --------------------------------------------------------------------------------------------
# tables and the Cooley-Tukey plan, on the host
# --------------------------------------------------------------------------------------------
def _rows_dft(x: np.ndarray, tile: int) -> np.ndarray:
    """NumPy transcription of ``_dft_rows`` (forward, complex) reading ``fft.dft_tables``."""
    t = fft.dft_tables(tile)
    if tile <= 32:
        w = t[: tile * tile].reshape(tile, tile) - 1j * t[tile * tile:].reshape(tile, tile)
        return x @ w
    rows = x.shape[0]
    w16 = t[:256].reshape(16, 16) - 1j * t[256:512].reshape(16, 16)
    kron = t[512:768].reshape(16, 16) - 1j * t[768:1024].reshape(16, 16)
    twiddle = t[1024:1088].reshape(4, 16) - 1j * t[1088:1152].reshape(4, 16)
    a = x.reshape(rows, 16, 4).transpose(0, 2, 1).reshape(rows * 4, 16) @ w16  # [rows, n2, k1]
    a = a.reshape(rows, 4, 16) * twiddle
    a = a.reshape(rows, 4, 4, 4).transpose(0, 2, 3, 1).reshape(rows * 4, 16) @ kron
    return a.reshape(rows, tile)


@pytest.mark.parametrize("tile", fft.TILES)
def test_dft_plan_matches_numpy_fft(tile):
    rng = np.random.default_rng(tile)
    x = rng.standard_normal((3, tile)) + 1j * rng.standard_normal((3, tile))
    got = _rows_dft(x, tile)
    j = np.arange(tile)
    freq = j // 4 + 16 * (j % 4) if tile > 32 else j  # the kernel's _freq_of
    np.testing.assert_allclose(got, np.fft.fft(x, axis=1)[:, freq], atol=1e-12)


def test_multiplies_and_workspace():
    g = ConvGeometry(2, 16, 28, 28, 32, 3, 3, padding=(1, 1, 1, 1))
    cfg = fft.CONFIGS[0]  # tile 16: 14 x 14 outputs per tile, 2 x 2 tiles per image
    tiles, nf = 2 * 2 * 2, 16 * 9
    assert fft.multiplies(g, cfg) == tiles * nf * 4 * 16 * 32
    assert fft.workspace_bytes(g, 2, cfg) == nf * ((2 * tiles * 16 + 4 * 16 * 32) * 2 + 2 * tiles * 32 * 4)
    assert fft.default_config(g).tile in fft.TILES


# --------------------------------------------------------------------------------------------
# kernels against the reference
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("index,name", list(enumerate(GEOMETRIES)))
def test_fft_matches_reference(index, name, device):
    """Each geometry with a different dtype x layout, through ``kernels.conv2d``."""
    dtype, layout = COMBOS[index % len(COMBOS)]
    shape, k, (r, s), padding, has_bias = GEOMETRIES[name]
    seed = _seed()
    x = _make(shape, dtype, device, seed, layout)
    w = _make((k, shape[1], r, s), dtype, device, seed + 1)
    b = _make((k,), dtype, device, seed + 2) if has_bias else None
    geom = ConvGeometry.from_shapes(x.shape, w.shape, 1, padding)
    y = kernels.conv2d(x, w, b, padding=padding, algorithm="fft")
    _check(y, x, w, b, geom, f"fft {name} {geom} {dtype} {layout} seed={seed}")


@pytest.mark.parametrize("config", fft.CONFIGS, ids=str)
def test_every_config(config, device):
    dtype, layout = COMBOS[fft.CONFIGS.index(config) % len(COMBOS)]
    seed = _seed()
    x = _make((1, 6, 9, 7), dtype, device, seed, layout)
    w = _make((5, 6, 3, 3), dtype, device, seed + 1)
    b = _make((5,), dtype, device, seed + 2)
    geom = ConvGeometry.from_shapes(x.shape, w.shape, 1, 1)
    y = fft.launch(x, w, b, geom, config=config)
    _check(y, x, w, b, geom, f"fft {config} {dtype} {layout} seed={seed}")


def test_tf32_and_transformed_filter(device):
    seed = _seed()
    x = _make((1, 8, 10, 10), torch.float32, device, seed)
    w = _make((8, 8, 3, 3), torch.float32, device, seed + 1)
    geom = ConvGeometry.from_shapes(x.shape, w.shape, 1, 1)
    cfg = fft.CONFIGS[0]
    y = fft.launch(x, w, None, geom, input_precision="tf32", config=cfg)
    _check(y, x, w, None, geom, f"tf32 seed={seed}", input_precision="tf32")
    spec = fft.transform_filter(w, cfg.tile)
    assert spec.shape == (16 * 9, 8, 2, 8, 2) and spec.dtype == w.dtype
    y1 = fft.launch(x, w, None, geom, config=cfg, filter_transformed=spec)
    y2 = fft.launch(x, w, None, geom, config=cfg)
    assert torch.equal(y1, y2)
    _check(y1, x, w, None, geom, f"filter_transformed seed={seed}")


def test_int64_offsets(device, monkeypatch):
    """The 64-bit index path (taken where tensors or workspaces pass 2**31 elements), forced on."""
    monkeypatch.setattr(_common, "needs_int64", lambda *tensors: True)
    seed = _seed()
    x = _make((2, 5, 6, 7), torch.float16, device, seed, "channels_last")
    w = _make((6, 5, 3, 3), torch.float16, device, seed + 1)
    b = _make((6,), torch.float16, device, seed + 2)
    geom = ConvGeometry.from_shapes(x.shape, w.shape, 1, 1)
    y = fft.launch(x, w, b, geom, config=fft.CONFIGS[0])
    _check(y, x, w, b, geom, f"fft int64 seed={seed}")


# --------------------------------------------------------------------------------------------
# domain and argument errors (raised before any launch)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("weight_shape,kwargs,match", [
    ((4, 4, 3, 3), dict(stride=2), r"stride 1, got stride=\(2, 2\)"),
    ((4, 4, 3, 3), dict(dilation=2), r"dilation 1, got dilation=\(2, 2\)"),
    ((4, 2, 3, 3), dict(groups=2), "groups=1, got groups=2"),
    ((4, 4, 35, 35), dict(padding=17), "filters up to 33x33"),
], ids=["stride2", "dilation2", "groups2", "35x35"])
def test_out_of_domain_raises(weight_shape, kwargs, match, device):
    x = torch.zeros(1, 4, 36, 36, device=device)
    w = torch.zeros(weight_shape, device=device)
    with pytest.raises(ValueError, match=match):
        kernels.conv2d(x, w, algorithm="fft", **kwargs)


def test_bad_arguments(device):
    x = torch.zeros(1, 4, 20, 20, device=device)
    w = torch.zeros(4, 4, 17, 17, device=device)
    geom = ConvGeometry.from_shapes(x.shape, w.shape, 1, 8)
    with pytest.raises(ValueError, match="too small"):
        fft.launch(x, w, None, geom, config=fft.CONFIGS[0])
    with pytest.raises(TypeError, match="config"):
        fft.launch(x, w, None, geom, config="F16")
    w3 = torch.zeros(4, 4, 3, 3, device=device)
    geom3 = ConvGeometry.from_shapes(x.shape, w3.shape)
    with pytest.raises(ValueError, match="filter_transformed"):
        fft.launch(x, w3, None, geom3, filter_transformed=torch.zeros(3, 4, device=device))
    with pytest.raises(ValueError, match="tile must be"):
        fft.transform_filter(w3, 24)


def test_static_specs_have_exact_signatures():
    specs = fft.static_specs()
    assert_exact_signatures(specs)
    for s in specs:
        # the GEMM on fp16/bf16 operands; the DFTs in 3xTF32 for every dtype
        assert s.expect_tensor_cores == (".gemm/" not in s.name or "fp32" not in s.name), s.name
    assert {s.constexprs["F"] for s in specs if "F" in s.constexprs} == set(fft.TILES)
