"""Transposed convolution (output-phase decomposition) against the float64 reference.

Every dtype x layout on small geometries covering stride 1-3, padding, output_padding,
dilation (including phases that own no tap at all), groups, depthwise, C < 16 (the FMA path)
and C/g, K/g >= 16 (the ``tl.dot`` path), bias, batch 1 and 3; every config; the 64-bit index
path; ``kernels.conv_transpose2d`` and bad arguments.  Inputs are fresh random numbers each run
(the seed is in every failure message), rounded to the kernel's dtype before the reference
sees them; outputs start as NaN (``conftest``), so unwritten elements fail.
"""

from __future__ import annotations


import pytest
import torch

from convbench import kernels
from convbench import reference
from _compare import as_ref, assert_close, tolerance
from _operands import fresh_seed as _seed, operand as _make
from convbench.kernels import _common
from convbench.kernels.conv import transpose
from convbench.reference.geometry import ConvTransposeGeometry

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
LAYOUTS = ("nchw", "channels_last")

#: (input shape, weight shape C x K/g x R x S, conv_transpose2d keyword arguments, has bias)
GEOMETRIES = {
    "c3-s2-op1": ((1, 3, 4, 5), (3, 2, 3, 3), dict(stride=2, padding=1, output_padding=1), True),
    "s3x2-dil-groups2": ((3, 4, 3, 3), (4, 3, 3, 2),
                         dict(stride=(3, 2), padding=(0, 1), dilation=(2, 1), groups=2), False),
    "s2-dil2-empty-phases": ((1, 2, 3, 3), (2, 2, 3, 3), dict(stride=2, dilation=2), True),
    "depthwise-s2": ((1, 3, 3, 4), (3, 1, 3, 3), dict(stride=2, padding=1, output_padding=(1, 0), groups=3), True),
    "c1-s1-asym": ((1, 1, 4, 3), (1, 3, 2, 3), dict(padding=(1, 0)), False),
    "dot-c16-k16-4x4-s2": ((1, 16, 3, 3), (16, 16, 4, 4), dict(stride=2, padding=1), True),
    "dot-groups2-dil2-op1": ((1, 32, 3, 2), (32, 17, 2, 3),
                             dict(stride=2, padding=(1, 2), output_padding=1, dilation=2, groups=2), False),
}


def _case(name, dtype, device, layout, seed):
    xs, ws, kw, has_bias = GEOMETRIES[name]
    groups = kw.get("groups", 1)
    x = _make(xs, dtype, device, seed, layout)
    w = _make(ws, dtype, device, seed + 1)
    b = _make((ws[1] * groups,), dtype, device, seed + 2) if has_bias else None
    geom = ConvTransposeGeometry.from_shapes(xs, ws, kw.get("stride", 1), kw.get("padding", 0),
                                             kw.get("output_padding", 0), groups, kw.get("dilation", 1))
    expected = reference.conv_transpose2d(as_ref(x), as_ref(w), None if b is None else as_ref(b), **kw)
    return x, w, b, geom, expected


def _check(y, x, expected, geom, dtype, what, input_precision="ieee", config=None):
    assert y.dtype == x.dtype, f"{what}: output dtype {y.dtype}"
    fmt = torch.channels_last if _common.is_channels_last(x) else torch.contiguous_format
    assert y.is_contiguous(memory_format=fmt), f"{what}: output is not in the input's memory format"
    return assert_close(y, expected, tolerance(dtype, geom.reduction_length,
                                               input_precision=input_precision), what)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_transpose_matches_reference(name, dtype, layout, device):
    seed = _seed()
    x, w, b, geom, expected = _case(name, dtype, device, layout, seed)
    y = transpose.launch(x, w, b, geom, input_precision="ieee")
    _check(y, x, expected, geom, dtype, f"{name} {geom} {dtype} {layout} seed={seed}")


def test_transpose_tf32(device):
    """fp32 with input_precision='tf32' takes the tl.dot path (tensor cores on the GPU)."""
    seed = _seed()
    x, w, b, geom, expected = _case("dot-c16-k16-4x4-s2", torch.float32, device, "nchw", seed)
    assert transpose.default_config(geom, torch.float32, "tf32").use_dot
    assert not transpose.default_config(geom, torch.float32, "ieee").use_dot
    y = transpose.launch(x, w, b, geom, input_precision="tf32")
    _check(y, x, expected, geom, torch.float32, f"tf32 {geom} seed={seed}", input_precision="tf32")


CONFIG_CASES = [(cfg, "dot-c16-k16-4x4-s2" if i % 2 else "dot-groups2-dil2-op1")
                for i, cfg in enumerate(transpose.CONFIGS)]
CONFIG_CASES += [(cfg, "s3x2-dil-groups2") for cfg in transpose.FMA_CONFIGS]


@pytest.mark.parametrize("i", range(len(CONFIG_CASES)), ids=[f"{c}-{n}" for c, n in CONFIG_CASES])
def test_transpose_every_config(i, device):
    config, name = CONFIG_CASES[i]
    dtype, layout = DTYPES[i % 3], LAYOUTS[(i // 3) % 2]
    seed = _seed()
    x, w, b, geom, expected = _case(name, dtype, device, layout, seed)
    y = transpose.launch(x, w, b, geom, config=config)
    _check(y, x, expected, geom, dtype, f"{config} {geom} {dtype} {layout} seed={seed}")


@pytest.mark.parametrize("name", ["s3x2-dil-groups2", "dot-c16-k16-4x4-s2"])
def test_transpose_int64_offsets(name, device):
    """The 64-bit index path (used when a tensor passes 2**31 elements) on a small problem."""
    seed = _seed()
    x, w, b, geom, expected = _case(name, torch.float16, device, "channels_last", seed)
    config = transpose.default_config(geom, torch.float16)
    y = torch.full(geom.output_shape, float("nan"), device=device, dtype=torch.float16)
    y = y.to(memory_format=torch.channels_last)
    grid, args, meta = transpose._launch_args(x, w, b, y, geom, config, "ieee", int64=True)
    transpose._phase_kernel[grid](*args, **meta, num_warps=config.num_warps, num_stages=config.num_stages)
    _check(y, x, expected, geom, torch.float16, f"int64 {geom} seed={seed}")


def test_reduction_length_counts_dilated_phase_taps():
    """With stride 2 and dilation 2 one phase owns every tap: the tolerance must know it."""
    geom = ConvTransposeGeometry.from_shapes((1, 2, 3, 3), (2, 2, 3, 3), stride=2, dilation=2)
    assert geom.reduction_length == 2 * 3 * 3
    geom = ConvTransposeGeometry.from_shapes((1, 2, 3, 3), (2, 2, 4, 3), stride=2, padding=1)
    assert geom.reduction_length == 2 * 2 * 2


# ------------------------------------------------------------------------------- public API
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
def test_public_conv_transpose2d(dtype, device):
    seed = _seed()
    x = _make((2, 4, 3, 4), dtype, device, seed, "channels_last")
    w = _make((4, 3, 3, 2), dtype, device, seed + 1)
    b = _make((6,), dtype, device, seed + 2)
    y = kernels.conv_transpose2d(x, w, b, stride=(2, 3), padding=(1, 0), output_padding=(1, 2),
                                 groups=2, dilation=(1, 2))
    expected = reference.conv_transpose2d(as_ref(x), as_ref(w), as_ref(b), (2, 3), (1, 0), (1, 2), 2, (1, 2))
    geom = ConvTransposeGeometry.from_shapes(x.shape, w.shape, (2, 3), (1, 0), (1, 2), 2, (1, 2))
    _check(y, x, expected, geom, dtype, f"conv_transpose2d {dtype} seed={seed}")


def test_workspace_and_multiplies():
    geom = ConvTransposeGeometry.from_shapes((2, 8, 5, 5), (8, 4, 3, 3), stride=2)
    assert transpose.workspace_bytes(geom, 2) == 0
    assert transpose.multiplies(geom) == 2 * 8 * 4 * 3 * 3 * 5 * 5  # no products with zeros


# ------------------------------------------------------------------------- bad arguments
def _bad(**over):
    args = dict(input=torch.zeros(1, 4, 5, 5), weight=torch.zeros(4, 2, 3, 3), bias=None, kw={})
    args.update(over)
    return args


@pytest.mark.parametrize("args,exc,match", [
    (_bad(input=torch.zeros(1, 4, 5, 5, dtype=torch.float64)), TypeError, "input"),
    (_bad(weight=torch.zeros(4, 2, 3, 3, dtype=torch.bfloat16)), TypeError, "weight"),
    (_bad(input=torch.zeros(5, 5)), ValueError, "input"),
    (_bad(weight=torch.zeros(3, 2, 3, 3)), ValueError, "weight"),
    (_bad(bias=torch.zeros(3)), ValueError, "bias"),
    (_bad(kw=dict(stride=2, output_padding=2)), ValueError, "output_padding"),
    (_bad(kw=dict(padding=4)), ValueError, "output size"),
    (_bad(kw=dict(groups=3)), ValueError, "groups"),
    (_bad(weight=torch.zeros(4, 2, 3)), ValueError, "weight"),
], ids=["float64", "weight-dtype", "rank", "channels", "bias-shape", "output-padding", "empty-output",
        "groups", "weight-rank"])
def test_bad_arguments_raise_before_launch(args, exc, match, device):
    def on_device(v):
        return v.to(device) if isinstance(v, torch.Tensor) else v
    with pytest.raises(exc, match=match):
        kernels.conv_transpose2d(on_device(args["input"]), on_device(args["weight"]),
                                 on_device(args["bias"]), **args["kw"])


def test_launch_rejects_foreign_config(device):
    x = torch.zeros(1, 4, 5, 5, device=device)
    w = torch.zeros(4, 2, 3, 3, device=device)
    geom = ConvTransposeGeometry.from_shapes(x.shape, w.shape)
    with pytest.raises(ValueError, match="config"):
        transpose.launch(x, w, None, geom, config=transpose.DOT_CONFIGS[0])


def test_static_specs_cover_every_config_and_dtype():
    specs = transpose.static_specs()
    names = [s.name for s in specs]
    assert len(names) == len(set(names))
    # every config at least once; one default per kernel path in every dtype
    forward = [s for s in specs if s.name.startswith("conv.transpose/")]
    assert {s.name.split("/")[2] for s in forward} == {str(c) for c in transpose.CONFIGS}
    assert sum(s.default for s in forward) == 3 * 2  # fp32: tf32 on tl.dot, "ieee" on the FMA path
    # the same phase kernel as the input gradient of a strided and a 1x1 convolution, every dtype
    dgrad = [s for s in specs if s.name.startswith("conv.dgrad/")]
    assert {tuple(s.name.split("/")[1:3]) for s in dgrad} == {
        (dt, g) for dt in ("tf32", "fp16", "bf16") for g in ("3x3s2", "1x1s1")}
    assert len(forward) + len(dgrad) == len(specs)
    for path, labels in (("dot", {"tf32", "fp16", "bf16"}), ("fma", {"fp32", "fp16", "bf16"})):
        assert {s.name.split("/")[1] for s in forward if s.default and f"/{path}-" in s.name} == labels
    # tensor cores expected exactly where tl.dot runs
    assert all(s.expect_tensor_cores == ("dot" in s.name) for s in specs)
