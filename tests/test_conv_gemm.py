"""GEMM-family convolutions (implicit_gemm, im2col) against the float64 reference.

Every algorithm x dtype (fp32 ieee, fp32 tf32, fp16, bf16) x layout (NCHW, channels_last) runs
on fresh random inputs over geometries covering odd sizes, C and K that are not multiples of
any block, stride 2 and 3, dilation 2, asymmetric kernels and per-side padding (including
padding='same' with even kernels), groups 1 and 2, bias and no bias, batch 1 and 3 and the 1x1
fast path; every tile config runs at least once per algorithm; outputs are NaN-poisoned
(conftest), so an unwritten element fails.  The reference is computed in float64 from the
operands as rounded to the kernel's dtype.  Shapes are tiny: this runs in the interpreter.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convbench import kernels
from convbench import reference
from convbench.kernels import _common
from convbench.kernels.conv import _gemm, im2col, implicit_gemm
from convbench.reference.conv import direct
from convbench.reference.geometry import ConvGeometry
from tests._compare import as_ref, assert_close, tolerance

MODULES = {"implicit_gemm": implicit_gemm, "im2col": im2col}
DTYPES = {  # name -> (dtype, input_precision)
    "fp32": (torch.float32, "ieee"),
    "tf32": (torch.float32, "tf32"),
    "fp16": (torch.float16, "ieee"),
    "bf16": (torch.bfloat16, "ieee"),
}

G = ConvGeometry
#: (geometry, with bias); C/g and K/g are never multiples of 32 except where a case needs it
GEOMETRIES = [
    # asymmetric kernel and padding, stride 2 x 1, dilation 1 x 2, groups 2, batch 3
    (G(3, 36, 8, 9, 40, 3, 2, stride=(2, 1), padding=(1, 0, 2, 1), dilation=(1, 2), groups=2), True),
    # 1x1 fast path (stride 1, no padding)
    (G(1, 32, 8, 9, 16, 1, 1), False),
    # odd C and K, 3x3 pad 1, batch 2
    (G(2, 17, 7, 6, 33, 3, 3, padding=(1, 1, 1, 1)), True),
    # padding='same' with even kernels: (top, bottom, left, right) = (0, 1, 1, 2)
    (G.from_shapes((1, 20, 9, 8), (24, 20, 2, 4), padding="same"), False),
    # stride 3, batch 3
    (G(3, 16, 9, 9, 16, 3, 3, stride=(3, 3), padding=(1, 1, 1, 1)), True),
    # 1x1 fast path with groups and a K/g that is not a power of two
    (G(1, 64, 5, 7, 48, 1, 1, groups=2), True),
    # 1x1 with stride 2: not the fast path, goes through the gather
    (G(2, 24, 8, 9, 32, 1, 1, stride=(2, 2)), False),
    # dilation 2, 3x3, odd image
    (G(1, 16, 9, 10, 19, 3, 3, padding=(2, 2, 2, 2), dilation=(2, 2)), True),
]


def _inputs(geom: ConvGeometry, dtype, channels_last: bool, bias: bool, device):
    """Fresh random operands already in ``dtype`` (the reference uses exactly these values)."""
    x = torch.randn(geom.input_shape).to(dtype)
    w = (torch.randn(geom.weight_shape) / np.sqrt(geom.reduction_length)).to(dtype)
    b = torch.randn(geom.k).to(dtype) if bias else None
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x, w = x.to(device), w.to(device)
    return x, w, (b.to(device) if b is not None else None)


def _reference(x, w, b, geom: ConvGeometry) -> np.ndarray:
    out = direct(as_ref(x), as_ref(w), geom)
    return out if b is None else out + as_ref(b)[None, :, None, None]


def _check(module, geom, bias, dtype_name, channels_last, device, config=None) -> float:
    dtype, precision = DTYPES[dtype_name]
    x, w, b = _inputs(geom, dtype, channels_last, bias, device)
    out = module.launch(x, w, b, geom, input_precision=precision, config=config)
    assert out.dtype == dtype and out.shape == geom.output_shape
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert out.is_contiguous(memory_format=fmt), f"output not in the input's memory format ({fmt})"
    tol = tolerance(dtype, geom.reduction_length, input_precision=precision)
    what = f"{module.__name__} {dtype_name} {'nhwc' if channels_last else 'nchw'} {geom} bias={bias} " \
           f"config={config.name if config else 'default'}"
    return assert_close(out, _reference(x, w, b, geom), tol, what)


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("algorithm", list(MODULES))
def test_matches_reference(algorithm, dtype_name, layout, device):
    # tf32 only changes anything on a GPU (the interpreter's dot is exact): fewer geometries
    cases = GEOMETRIES[::3] if dtype_name == "tf32" else GEOMETRIES
    for geom, bias in cases:
        _check(MODULES[algorithm], geom, bias, dtype_name, layout == "nhwc", device)


@pytest.mark.parametrize("algorithm", list(MODULES))
def test_every_config(algorithm, device):
    """Each tile config (pitfall 1: check them all, not only the winner), rotating dtype/layout."""
    module = MODULES[algorithm]
    geom = G(2, 40, 7, 9, 36, 3, 3, stride=(1, 2), padding=(1, 2, 0, 1))
    for i, cfg in enumerate(_gemm.CONFIGS):
        fitting = [name for name in ("fp16", "bf16", "fp32") if cfg.fits(DTYPES[name][0])]
        _check(module, geom, i % 2 == 0, fitting[i % len(fitting)], i % 2 == 1, device, config=cfg)
    # a 1x1 fast-path launch per config too (implicit_gemm routes it to the shared GEMM)
    one = G(1, 48, 5, 6, 40, 1, 1)
    for i, cfg in enumerate(_gemm.CONFIGS):
        _check(module, one, i % 2 == 1, "fp32" if cfg.fits(torch.float32) else "fp16", i % 2 == 0,
               device, config=cfg)


def test_every_config_fits_some_dtype_and_default_is_listed():
    for cfg in _gemm.CONFIGS:
        assert cfg.fits(torch.float16), cfg.name
        assert min(cfg.block_m, cfg.block_n, cfg.block_k) >= 16, cfg.name
    for geom, _ in GEOMETRIES + [(implicit_gemm.TYPICAL_LAYER, False)]:
        for dtype in _common.FLOAT_DTYPES:
            assert implicit_gemm.default_config(geom, dtype) in implicit_gemm.configs(dtype)


@pytest.mark.parametrize("algorithm", list(MODULES))
def test_int64_offsets_path(algorithm, device, monkeypatch):
    """The 64-bit index variant (used past 2**31 elements) computes the same thing."""
    monkeypatch.setattr(_common, "needs_int64", lambda *tensors: True)
    for geom, bias in (GEOMETRIES[0], GEOMETRIES[1]):
        _check(MODULES[algorithm], geom, bias, "fp16", True, device)


@pytest.mark.parametrize("algorithm", list(MODULES))
def test_public_api(algorithm, device):
    """conv2d with torch-style arguments (incl. padding='same') and conv1d, by algorithm name."""
    x = torch.randn(2, 32, 7, 10, device=device)
    w = torch.randn(32, 16, 2, 3, device=device)
    b = torch.randn(32, device=device)
    out = kernels.conv2d(x, w, b, padding="same", groups=2, algorithm=algorithm)
    expected = reference.conv2d(as_ref(x), as_ref(w), as_ref(b), padding="same", groups=2)
    assert_close(out, expected, tolerance(torch.float32, 16 * 6), f"{algorithm} conv2d same")

    x1 = torch.randn(3, 20, 23, device=device).half()
    w1 = torch.randn(18, 20, 4, device=device).half()
    out1 = kernels.conv1d(x1, w1, None, stride=2, padding=3, dilation=2, algorithm=algorithm)
    expected1 = reference.conv1d(as_ref(x1), as_ref(w1), None, stride=2, padding=3, dilation=2)
    assert out1.shape == expected1.shape
    assert_close(out1, expected1, tolerance(torch.float16, 20 * 4), f"{algorithm} conv1d")


def test_workspace_bytes():
    geom = G(2, 32, 8, 9, 16, 3, 3, padding=(1, 1, 1, 1))
    assert im2col.workspace_bytes(geom, 2) == 2 * 8 * 9 * 32 * 9 * 2
    assert implicit_gemm.workspace_bytes(geom, 2) == 0


def _no_launch(monkeypatch):
    def refuse(self):
        raise AssertionError("a kernel was launched before the bad argument was rejected")
    monkeypatch.setattr(_gemm.Launch, "__call__", refuse)


@pytest.mark.parametrize("algorithm", list(MODULES))
def test_bad_arguments_raise_before_launch(algorithm, device, monkeypatch):
    _no_launch(monkeypatch)
    x = torch.randn(1, 32, 6, 6, device=device)
    w = torch.randn(16, 32, 3, 3, device=device)
    conv = kernels.conv2d
    with pytest.raises(TypeError, match="input"):
        conv(x.double(), w.double(), algorithm=algorithm)
    with pytest.raises(TypeError, match="input"):
        conv(x.to(torch.int32), w, algorithm=algorithm)
    with pytest.raises(TypeError, match="weight"):
        conv(x, w.half(), algorithm=algorithm)
    with pytest.raises(ValueError, match="input"):
        conv(x[0, 0], w, algorithm=algorithm)
    with pytest.raises(ValueError, match="weight"):
        conv(x, w[0], algorithm=algorithm)
    with pytest.raises(ValueError, match="weight"):
        conv(x, torch.randn(16, 31, 3, 3, device=device), algorithm=algorithm)
    with pytest.raises(ValueError, match="bias"):
        conv(x, w, torch.randn(15, device=device), algorithm=algorithm)
    with pytest.raises(ValueError, match="device"):
        conv(x.to("meta"), w.to("meta"), algorithm=algorithm)
    with pytest.raises(ValueError, match="output size"):
        conv(torch.randn(1, 32, 2, 2, device=device), w, algorithm=algorithm)
    with pytest.raises(ValueError, match="input_precision"):
        conv(x, w, algorithm=algorithm, input_precision="fp8")
    # configs: an unknown name, a tile below tl.dot's 16, shared memory over the limit for fp32
    with pytest.raises(ValueError, match="not a config of"):
        conv(x, w, algorithm=algorithm, config="BM1-BN1")
    with pytest.raises(ValueError, match="block dimension"):
        conv(x, w, algorithm=algorithm, config=_gemm.GemmConfig(64, 64, 8, 4, 2))
    with pytest.raises(ValueError, match="BM128-BN128-BK64.*shared memory"):
        conv(x, w, algorithm=algorithm, config="BM128-BN128-BK64-w8-s3-g8")
    # the module launcher checks too, including the config
    module, geom = MODULES[algorithm], G(1, 32, 6, 6, 16, 3, 3)
    with pytest.raises(ValueError, match="weight shape"):
        module.launch(x, torch.randn(16, 32, 1, 3, device=device), None, geom)
    with pytest.raises(ValueError, match="block dimension"):
        module.launch(x, w, None, geom, config=_gemm.GemmConfig(64, 64, 8, 4, 2))
    with pytest.raises(ValueError, match="shared memory"):
        module.launch(x, w, None, geom, config=_gemm.GemmConfig(128, 128, 64, 8, 3))  # fp32: 192 KB
    with pytest.raises(TypeError, match="config"):
        module.launch(x, w, None, geom, config=(64, 64, 32))


@pytest.mark.parametrize("algorithm", list(MODULES))
def test_unsupported_keeps_only_real_limits(algorithm):
    """Every geometry applies (stems, depthwise, small K); only the dtype is a limit."""
    module = MODULES[algorithm]
    for geom in (G(1, 32, 6, 6, 16, 3, 3), G(1, 16, 6, 6, 32, 3, 3, groups=2), G(1, 32, 6, 6, 15, 3, 3),
                 G(1, 3, 9, 9, 8, 7, 7, stride=(2, 2), padding=(3, 3, 3, 3)), G(1, 8, 5, 5, 8, 3, 3, groups=8)):
        assert module.unsupported(geom, torch.float16) is None, geom
    assert module.unsupported(G(1, 32, 6, 6, 16, 3, 3), torch.float64) is not None


def test_static_specs_cover_every_config():
    """Specs: every config once, in the dtype it is meant for; the default configs in every dtype
    and precision; one default per kernel/dtype/precision/layout; tensor cores expected exactly
    for fp16/bf16 and tf32.  (Compiling them is the static check's job: ``convbench static``.)"""
    specs = implicit_gemm.static_specs() + im2col.static_specs()
    names = [s.name for s in specs]
    assert len(names) == len(set(names))
    for cfg in _gemm.CONFIGS:
        dtype = _gemm.static_dtype(cfg)
        assert cfg.fits(dtype) and (cfg.fits(torch.float32) or dtype == torch.float16), cfg.name
        dname = _gemm.DTYPE_NAME[dtype]
        assert f"conv.implicit_gemm.gather/{dname}/nhwc/{cfg.name}" in names
        assert f"conv.im2col.gemm/{dname}/nhwc/{cfg.name}" in names
    # the fp32 heuristic's large tile is an fp32 config (compiled in fp32), 16-bit-only ones in fp16
    assert _gemm.static_dtype(implicit_gemm.default_config(implicit_gemm.TYPICAL_LAYER, torch.float32)) == torch.float32
    for dtype in _common.FLOAT_DTYPES:
        for precision in _gemm.precisions_for(dtype):
            pname = _gemm.DTYPE_NAME[dtype] + ("-tf32" if precision == "tf32" else "")
            for kernel, geom in (("conv.implicit_gemm.gather", implicit_gemm.TYPICAL_LAYER),
                                 ("conv.implicit_gemm.1x1", implicit_gemm.TYPICAL_1X1),
                                 ("conv.im2col.gemm", implicit_gemm.TYPICAL_LAYER)):
                assert f"{kernel}/{pname}/nhwc/{implicit_gemm.default_config(geom, dtype).name}" in names
    defaults = {}
    for s in specs:
        kernel, variant, layout = s.name.split("/")[:3]
        if kernel == "conv.im2col.columns":
            assert not s.expect_tensor_cores, s.name
        else:
            assert s.expect_tensor_cores == (variant != "fp32"), s.name
        if s.default:
            defaults.setdefault((kernel, variant, layout), []).append(s.name)
        assert s.constexprs.get("UPCAST") in (None, False)
    assert all(len(v) == 1 for v in defaults.values()), defaults
    assert ("conv.implicit_gemm.gather", "fp16", "nhwc") in defaults
    assert ("conv.im2col.gemm", "bf16", "nhwc") in defaults and ("conv.im2col.gemm", "fp16", "nchw") in defaults
