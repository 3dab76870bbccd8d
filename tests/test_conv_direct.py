"""The direct convolution kernel against the float64 reference, and the public API around it.

Every dtype x layout on many small geometries (the general kernel and the depthwise kernel),
every config, the 64-bit index path, ``kernels.conv2d/conv1d(algorithm="direct")`` and bad
arguments.  Inputs are fresh random numbers each run (the seed is in every failure message),
rounded to the kernel's dtype before the reference sees them; outputs start as NaN
(``conftest``), so an element the kernel forgot to write fails.  Shapes are tiny because the
Triton interpreter runs them on the CPU.
"""

from __future__ import annotations


import pytest
import torch

from convbench import kernels
from convbench import reference
from _compare import as_ref, assert_close, tolerance
from _operands import fresh_seed as _seed, operand as _make
from convbench.kernels import _common
from convbench.kernels.conv import direct
from convbench.reference.geometry import ConvGeometry

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
LAYOUTS = ("nchw", "channels_last")

#: (input shape, weight shape, conv2d keyword arguments, has bias)
GEOMETRIES = {
    "stem-c3-s2": ((1, 3, 9, 11), (5, 3, 3, 3), dict(stride=2, padding=1), True),
    "c1-asym-kernel": ((1, 1, 6, 7), (3, 1, 2, 3), dict(padding=(1, 0)), False),
    "groups2-dil2": ((1, 6, 7, 8), (4, 3, 3, 3), dict(padding=2, dilation=2, groups=2), True),
    "depthwise": ((3, 3, 5, 6), (3, 1, 3, 3), dict(padding=1, groups=3), True),
    "depthwise-x2-s2-5x5": ((1, 2, 7, 6), (4, 1, 5, 5), dict(stride=2, padding=2, groups=2), False),
    "same-even-kernel": ((1, 2, 5, 6), (3, 2, 2, 4), dict(padding="same", dilation=(1, 2)), True),
    "stride3-asym": ((1, 3, 8, 10), (2, 3, 3, 2), dict(stride=(3, 2), padding=(0, 1)), False),
    "k17-c20-1x1": ((1, 20, 3, 4), (17, 20, 1, 1), dict(), True),
}


def _case(name, dtype, device, layout, seed):
    xs, ws, kw, has_bias = GEOMETRIES[name]
    x = _make(xs, dtype, device, seed, layout)
    w = _make(ws, dtype, device, seed + 1)
    b = _make((ws[0],), dtype, device, seed + 2) if has_bias else None
    geom = ConvGeometry.from_shapes(xs, ws, kw.get("stride", 1), kw.get("padding", 0),
                                    kw.get("dilation", 1), kw.get("groups", 1))
    expected = reference.conv2d(as_ref(x), as_ref(w), None if b is None else as_ref(b), **kw)
    return x, w, b, geom, expected


def _check(y, x, expected, geom, dtype, what):
    """Dtype, memory format (the input's) and values (fp32 FMA: no operand rounding)."""
    assert y.dtype == x.dtype, f"{what}: output dtype {y.dtype}"
    fmt = torch.channels_last if _common.is_channels_last(x) else torch.contiguous_format
    assert y.is_contiguous(memory_format=fmt), f"{what}: output is not in the input's memory format"
    return assert_close(y, expected, tolerance(dtype, geom.reduction_length), what)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_direct_matches_reference(name, dtype, layout, device):
    seed = _seed()
    x, w, b, geom, expected = _case(name, dtype, device, layout, seed)
    y = direct.launch(x, w, b, geom, input_precision="ieee")
    _check(y, x, expected, geom, dtype, f"{name} {geom} {dtype} {layout} seed={seed}")


#: every config of both kernels, each on a geometry it applies to (layouts and dtypes alternate)
CONFIG_CASES = [(cfg, "stem-c3-s2" if i % 2 else "groups2-dil2") for i, cfg in enumerate(direct.CONFIGS)]
CONFIG_CASES += [(cfg, "depthwise" if i % 2 else "depthwise-x2-s2-5x5")
                 for i, cfg in enumerate(direct.DEPTHWISE_CONFIGS)]


@pytest.mark.parametrize("config,name", CONFIG_CASES, ids=[f"{c}-{n}" for c, n in CONFIG_CASES])
def test_direct_every_config(config, name, device):
    i = [c for c, _ in CONFIG_CASES].index(config)
    dtype, layout = DTYPES[i % 3], LAYOUTS[i % 2]
    seed = _seed()
    x, w, b, geom, expected = _case(name, dtype, device, layout, seed)
    y = direct.launch(x, w, b, geom, config=config)
    _check(y, x, expected, geom, dtype, f"{config} {geom} {dtype} {layout} seed={seed}")


def test_direct_depthwise_channels_last_default_vectorises_channels(device):
    """Channels-last depthwise with many channels takes a channel-wide tile by default."""
    seed = _seed()
    x = _make((1, 32, 4, 4), torch.float16, device, seed, "channels_last")
    w = _make((32, 1, 3, 3), torch.float16, device, seed + 1)
    geom = ConvGeometry.from_shapes(x.shape, w.shape, 1, 1, 1, 32)
    assert direct.default_config(geom, channels_last=True).block_c >= 32
    y = direct.launch(x, w, None, geom)
    expected = reference.conv2d(as_ref(x), as_ref(w), padding=1, groups=32)
    _check(y, x, expected, geom, torch.float16, f"depthwise channels_last seed={seed}")


def test_depthwise_default_tile_follows_the_layout_on_a_gpu_and_the_program_count_in_the_interpreter():
    """NCHW depthwise rows are contiguous along q (BLOCK_C = 1 on a GPU); the interpreter pays per
    program, so there the channel-wide tile serves both layouts."""
    geom = ConvGeometry.from_shapes((1, 960, 4, 4), (960, 1, 3, 3), 1, 1, 1, 960)
    assert direct.default_config(geom, channels_last=False).block_c == 1
    assert direct.default_config(geom, channels_last=True).block_c == 64
    assert direct.default_config(geom, channels_last=False, interpreter=True).block_c == 64
    small = ConvGeometry.from_shapes((1, 16, 4, 4), (16, 1, 3, 3), 1, 1, 1, 16)
    assert direct.default_config(small, channels_last=False, interpreter=True).block_c == 1  # too few channels


@pytest.mark.parametrize("name", ["groups2-dil2", "depthwise-x2-s2-5x5"])
def test_direct_int64_offsets(name, device):
    """The 64-bit index path (used when a tensor passes 2**31 elements) on a small problem."""
    seed = _seed()
    x, w, b, geom, expected = _case(name, torch.float32, device, "channels_last", seed)
    config = direct.default_config(geom, True)
    y = torch.full(geom.output_shape, float("nan"), device=device).to(memory_format=torch.channels_last)
    kernel, grid, args, meta = direct._launch_args(x, w, b, y, geom, config, int64=True)
    assert meta["INT64"] is True
    kernel[grid](*args, **meta, num_warps=config.num_warps)
    _check(y, x, expected, geom, torch.float32, f"int64 {geom} seed={seed}")


def test_direct_non_contiguous_input(device):
    """Strides, not layouts, drive the kernel: a sliced (non-contiguous) input works too."""
    seed = _seed()
    big = _make((2, 4, 9, 12), torch.float32, device, seed)
    x = big[:, 1:4, 1:8, ::2]
    w = _make((4, 3, 3, 3), torch.float32, device, seed + 1)
    expected = reference.conv2d(as_ref(x), as_ref(w), padding=1)
    y = kernels.conv2d(x, w, padding=1, algorithm="direct")
    geom = ConvGeometry.from_shapes(x.shape, w.shape, padding=1)
    assert_close(y, expected, tolerance(torch.float32, geom.reduction_length), f"sliced seed={seed}")


# ------------------------------------------------------------------------------- public API
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
def test_public_conv2d_direct(dtype, device):
    seed = _seed()
    x = _make((2, 4, 6, 5), dtype, device, seed, "channels_last")
    w = _make((6, 2, 3, 2), dtype, device, seed + 1)
    b = _make((6,), dtype, device, seed + 2)
    y = kernels.conv2d(x, w, b, stride=(1, 2), padding=(2, 1), dilation=(2, 1), groups=2,
                       algorithm="direct")
    expected = reference.conv2d(as_ref(x), as_ref(w), as_ref(b), (1, 2), (2, 1), (2, 1), 2)
    geom = ConvGeometry.from_shapes(x.shape, w.shape, (1, 2), (2, 1), (2, 1), 2)
    _check(y, x, expected, geom, dtype, f"conv2d direct {dtype} seed={seed}")


def test_public_conv2d_auto_picks_direct_for_depthwise(device):
    seed = _seed()
    x = _make((1, 3, 5, 5), torch.float16, device, seed)
    w = _make((3, 1, 3, 3), torch.float16, device, seed + 1)
    geom = ConvGeometry.from_shapes(x.shape, w.shape, 1, 1, 1, 3)
    assert kernels.choose_algorithm(geom, torch.float16) == "direct"
    y = kernels.conv2d(x, w, padding=1, groups=3)
    expected = reference.conv2d(as_ref(x), as_ref(w), padding=1, groups=3)
    _check(y, x, expected, geom, torch.float16, f"auto depthwise seed={seed}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_public_conv1d_direct(dtype, device):
    seed = _seed()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 13, generator=g).to(dtype).to(device)
    w = torch.randn(6, 2, 3, generator=g).to(dtype).to(device)
    b = torch.randn(6, generator=g).to(dtype).to(device)
    y = kernels.conv1d(x, w, b, stride=2, padding=2, dilation=2, groups=2, algorithm="direct")
    expected = reference.conv1d(as_ref(x), as_ref(w), as_ref(b), 2, 2, 2, 2)
    assert y.shape == expected.shape
    assert_close(y, expected, tolerance(dtype, 2 * 3), f"conv1d direct {dtype} seed={seed}")


def test_unsupported_never_refuses():
    assert direct.unsupported(ConvGeometry(1, 3, 5, 5, 7, 5, 1, (2, 3), (0, 1, 2, 0), (1, 1), 1), torch.float16) is None
    assert direct.workspace_bytes(ConvGeometry(1, 4, 5, 5, 4, 3, 3, groups=4), 2) == 0


# ------------------------------------------------------------------------- bad arguments
def _bad(**over):
    args = dict(input=torch.zeros(1, 4, 5, 5), weight=torch.zeros(2, 4, 3, 3), bias=None)
    args.update(over)
    return args


@pytest.mark.parametrize("args,exc,match", [
    (_bad(input=torch.zeros(1, 4, 5, 5, dtype=torch.float64)), TypeError, "input"),
    (_bad(input=torch.zeros(1, 4, 5, 5, dtype=torch.int32)), TypeError, "input"),
    (_bad(weight=torch.zeros(2, 4, 3, 3, dtype=torch.float16)), TypeError, "weight"),
    (_bad(input=torch.zeros(5, 5)), ValueError, "input"),
    (_bad(weight=torch.zeros(2, 3, 3, 3)), ValueError, "weight"),
    (_bad(weight=torch.zeros(2, 4, 7, 7)), ValueError, "output size"),
    (_bad(bias=torch.zeros(3)), ValueError, "bias"),
    (_bad(input=[[1.0]]), TypeError, "input"),
], ids=["float64", "int32", "weight-dtype", "rank", "channels", "empty-output", "bias-shape", "not-tensor"])
def test_bad_arguments_raise_before_launch(args, exc, match, device):
    def on_device(v):
        return v.to(device) if isinstance(v, torch.Tensor) else v
    with pytest.raises(exc, match=match):
        kernels.conv2d(on_device(args["input"]), on_device(args["weight"]), on_device(args["bias"]),
                       algorithm="direct")


def test_launch_rejects_foreign_config(device):
    x = torch.zeros(1, 4, 5, 5, device=device)
    w = torch.zeros(4, 1, 3, 3, device=device)
    geom = ConvGeometry.from_shapes(x.shape, w.shape, 1, 1, 1, 4)
    with pytest.raises(ValueError, match="config"):
        direct.launch(x, w, None, geom, config=direct.CONFIGS[0])
    with pytest.raises(ValueError, match="input_precision"):
        direct.launch(x, w, None, geom, input_precision="fp64")


def test_static_specs_cover_every_config_and_dtype():
    specs = direct.static_specs()
    names = [s.name for s in specs]
    assert len(names) == len(set(names))
    # every config at least once; the defaults (one per kernel path and layout) in every dtype
    assert {n.split("/")[2] for n in names} == {str(c) for c in direct.CONFIGS + direct.DEPTHWISE_CONFIGS}
    defaults = {tuple(s.name.split("/")[1:]) for s in specs if s.default}
    assert len(defaults) == 3 * 3
    assert defaults == {(dt, cfg) for dt in ("fp32", "fp16", "bf16") for _, cfg in defaults}
    # and no tensor cores expected from an FMA kernel
    assert not any(s.expect_tensor_cores for s in specs)
