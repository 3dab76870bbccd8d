"""The normalization kernels against the float64 references.

Batch norm over several training steps (outputs and in-place running statistics after each
step, then evaluation with fused ReLU), instance, group and layer norm, every dtype and both
layouts, odd sizes and batch 1, a 1e4 offset with small variance (shown to break the naive
E[x^2] - E[x]^2 formula), every config, the split of the statistics reduction, the 64-bit index
path and every bad-input case.  Inputs are fresh random numbers (seed in every message), rounded
to the kernel's dtype before the reference sees them; outputs start as NaN (``conftest``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from convbench import kernels
from convbench import reference
from _compare import UNIT_ROUNDOFF, as_ref, assert_close, tolerance
from _operands import fresh_seed as _seed
from convbench.kernels import _common
from convbench.kernels import norm as knorm
from convbench.reference.geometry import NormGeometry

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
DTYPE_IDS = lambda d: str(d).replace("torch.", "")  # noqa: E731
LAYOUTS = ("nchw", "channels_last")


def _make(shape, dtype, device, seed, layout="nchw", offset=0.0, std=1.0):
    g = torch.Generator().manual_seed(seed)
    t = (torch.randn(shape, generator=g, dtype=torch.float64) * std + offset).to(dtype).to(device)
    return t.to(memory_format=torch.channels_last) if layout == "channels_last" else t


def _vec(n, seed, device, dtype=torch.float32, positive=False):
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(n, generator=g) + 0.5 if positive else torch.randn(n, generator=g)
    return t.to(dtype).to(device)


def _check(y, x, expected, length, what, relu=False):
    assert y.dtype == x.dtype, f"{what}: output dtype {y.dtype}"
    fmt = torch.channels_last if _common.is_channels_last(x) else torch.contiguous_format
    assert y.is_contiguous(memory_format=fmt), f"{what}: output is not in the input's memory format"
    if relu:
        expected = np.maximum(expected, 0.0)
    return assert_close(y, expected, tolerance(x.dtype, length), what)


# ---------------------------------------------------------------------------------------------
# batch norm
# ---------------------------------------------------------------------------------------------
BN_CASES = [  # (name, shape, layout)
    ("odd-4d", (3, 6, 5, 7), "nchw"), ("odd-4d", (3, 6, 5, 7), "channels_last"),
    ("batch1", (1, 4, 3, 5), "nchw"), ("batch1", (1, 4, 3, 5), "channels_last"),
    ("2d", (9, 5), "nchw"), ("3d", (4, 3, 10), "nchw"),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name, shape, layout", BN_CASES, ids=[f"{n}-{lay}" for n, _, lay in BN_CASES])
def test_batch_norm_training_steps_then_eval(name, shape, layout, dtype, device):
    """Two training steps (running stats checked after each), then evaluation with ReLU."""
    seed = _seed()
    c = shape[1]
    length = math.prod(shape) // c
    # fp16/bf16: fp32 running stats and affine parameters (mixed precision), fp32: all fp32
    w, b = _vec(c, seed + 1, device), _vec(c, seed + 2, device)
    rm, rv = _vec(c, seed + 3, device), _vec(c, seed + 4, device, positive=True)
    rm64, rv64 = as_ref(rm).copy(), as_ref(rv).copy()
    for step in range(2):
        x = _make(shape, dtype, device, seed + 10 * step, layout if len(shape) == 4 else "nchw", 0.5, 2.0)
        what = f"batch_norm {name} {layout} {dtype} step {step} seed={seed}"
        y = kernels.batch_norm(x, rm, rv, w, b, training=True, momentum=0.3, eps=1e-4)
        expected = reference.batch_norm(as_ref(x), rm64, rv64, as_ref(w), as_ref(b), True, 0.3, 1e-4)
        _check(y, x, expected, length, what)
        assert_close(rm, rm64, tolerance(torch.float32, length), what + " running_mean")
        assert_close(rv, rv64, tolerance(torch.float32, length), what + " running_var")
    x = _make(shape, dtype, device, seed + 99, layout if len(shape) == 4 else "nchw")
    y = kernels.batch_norm(x, rm, rv, w, b, training=False, eps=1e-4, relu=True)
    _check(y, x, reference.batch_norm(as_ref(x), rm64, rv64, as_ref(w), as_ref(b), False, 0.3, 1e-4), 1,
           f"batch_norm eval+relu {name} {layout} {dtype} seed={seed}", relu=True)


def test_batch_norm_running_stats_in_input_dtype_and_no_affine(device):
    seed = _seed()
    x = _make((2, 3, 4, 5), torch.bfloat16, device, seed)
    rm, rv = torch.zeros(3, dtype=torch.bfloat16, device=device), torch.ones(3, dtype=torch.bfloat16, device=device)
    rm64, rv64 = np.zeros(3), np.ones(3)
    y = kernels.batch_norm(x, rm, rv, training=True)
    _check(y, x, reference.batch_norm(as_ref(x), rm64, rv64, training=True), 40, f"bf16 stats seed={seed}")
    assert_close(rm, rm64, tolerance(torch.bfloat16, 40), "bf16 running_mean")
    assert_close(rv, rv64, tolerance(torch.bfloat16, 40), "bf16 running_var")
    y = kernels.batch_norm(x, None, None, training=True, relu=True)  # no running statistics at all
    _check(y, x, reference.batch_norm(as_ref(x), None, None, training=True), 40, "no running stats", relu=True)


def _naive_fp32_variance_error(x: torch.Tensor, axes) -> float:
    """Relative error of E[x^2] - E[x]^2 computed in fp32 (what this test's data must break)."""
    x32 = x.float().cpu()
    naive = (x32 * x32).mean(axes) - x32.mean(axes) ** 2
    exact = x.double().cpu().var(axes, unbiased=False)
    return float(((naive.double() - exact).abs() / exact).max())


@pytest.mark.parametrize("op", ["batch", "instance", "group", "layer"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_large_offset_small_variance(op, dtype, device):
    """x = 1e4 + small noise: shifted Welford statistics keep full accuracy."""
    seed = _seed()
    std = max(1.0, 1e4 * UNIT_ROUNDOFF[dtype] * 16)  # >= 16 representable steps of spread
    layout = "channels_last" if op in ("batch", "group") else "nchw"
    x = _make((2, 4, 6, 7), dtype, device, seed, layout, offset=1e4, std=std)
    what = f"{op} offset 1e4 std {std} {dtype} seed={seed}"
    x64 = as_ref(x)
    if op == "batch":
        rm, rv = torch.zeros(4, device=device), torch.ones(4, device=device)
        rm64, rv64 = np.zeros(4), np.ones(4)
        y = kernels.batch_norm(x, rm, rv, training=True)
        expected, axes, length = reference.batch_norm(x64, rm64, rv64, training=True), (0, 2, 3), 84
        assert_close(rv, rv64, tolerance(torch.float32, length), what + " running_var")
    elif op == "instance":
        y, expected, axes, length = kernels.instance_norm(x), reference.instance_norm(x64), (2, 3), 42
    elif op == "group":
        y, expected, axes, length = kernels.group_norm(x, 2), reference.group_norm(x64, 2), None, 84
    else:
        y, expected, axes, length = kernels.layer_norm(x, (6, 7)), reference.layer_norm(x64, (6, 7)), (2, 3), 42
    tol = tolerance(dtype, length)
    _check(y, x, expected, length, what)
    if dtype == torch.float32 and axes is not None:  # the data really do defeat the naive formula
        assert _naive_fp32_variance_error(x, axes) > 100 * tol, "test data too easy"


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("config", knorm.CONFIGS, ids=str)
def test_every_config(config, layout, device):
    seed = _seed()
    shape = (2, 4, 3, 5)
    x = _make(shape, torch.float16, device, seed, layout, 3.0)
    w, b = _vec(4, seed + 1, device), _vec(4, seed + 2, device)
    what = f"{config} {layout} seed={seed}"
    rm, rv = torch.zeros(4, device=device), torch.ones(4, device=device)
    rm64, rv64 = np.zeros(4), np.ones(4)
    for step in range(2):
        xs = x if step == 0 else _make(shape, torch.float16, device, seed + 5, layout)
        y = kernels.batch_norm(xs, rm, rv, w, b, True, 0.5, relu=step == 1, config=config)
        _check(y, xs, reference.batch_norm(as_ref(xs), rm64, rv64, as_ref(w), as_ref(b), True, 0.5), 30,
               f"batch_norm step {step} " + what, relu=step == 1)
        assert_close(rv, rv64, tolerance(torch.float32, 30), "running_var " + what)
    y = kernels.batch_norm(x, rm, rv, w, b, False, config=config)
    _check(y, x, reference.batch_norm(as_ref(x), rm64, rv64, as_ref(w), as_ref(b)), 1, "batch_norm eval " + what)
    irm, irv = torch.zeros(4, device=device), torch.ones(4, device=device)
    irm64, irv64 = np.zeros(4), np.ones(4)
    y = kernels.instance_norm(x, irm, irv, w, b, config=config)
    _check(y, x, reference.instance_norm(as_ref(x), irm64, irv64, as_ref(w), as_ref(b)), 15, "instance_norm " + what)
    assert_close(irv, irv64, tolerance(torch.float32, 15), "instance running_var " + what)
    y = kernels.group_norm(x, 2, w, b, config=config)
    _check(y, x, reference.group_norm(as_ref(x), 2, as_ref(w), as_ref(b)), 30, "group_norm " + what)
    for normalized in ((4, 3, 5), (3, 5)):
        lw, lb = _vec(normalized, seed + 3, device), _vec(normalized, seed + 4, device)
        y = kernels.layer_norm(x, normalized, lw, lb, config=config)
        _check(y, x, reference.layer_norm(as_ref(x), normalized, as_ref(lw), as_ref(lb)), math.prod(normalized),
               f"layer_norm {normalized} " + what)


def test_small_tiles_split_the_statistics(device):
    """The configs with short element tiles give several splits per row on the test shapes, so
    the combine of partial statistics above really runs."""
    x = torch.zeros(2, 4, 3, 5, device=device)
    view = knorm._row_view(x, [1], [0, 2, 3], merge_rows=False, affine_b=1, affine="none")
    assert max(knorm.plan_splits(view, cfg)[0] for cfg in knorm.CONFIGS) > 1


@pytest.mark.parametrize("layout", LAYOUTS)
def test_batch_norm_reduction_is_split_on_a_gpu_sized_problem(layout, monkeypatch):
    """ResNet-50's first batch norm (N=32, C=64, 112x112): many programs per channel, not C."""
    monkeypatch.setattr(knorm, "TARGET_PROGRAMS", 1024)
    x = torch.empty(32, 64, 112, 112, device="meta")
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    view = knorm._row_view(x, [1], [0, 2, 3], merge_rows=False, affine_b=1, affine="none")
    cfg = knorm.default_config(view)
    splits, chunk = knorm.plan_splits(view, cfg)
    programs = triton_cdiv(64, cfg.block_b) * splits
    assert splits > 1 and programs >= 8 * 64 // cfg.block_b and programs >= 512, (cfg, splits, programs)
    assert splits * chunk >= 32 * 112 * 112


def triton_cdiv(a, b):
    return -(-a // b)


# ---------------------------------------------------------------------------------------------
# instance, group and layer norm
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_instance_norm(dtype, layout, device):
    seed = _seed()
    shape = (3, 5, 4, 7)
    w, b = _vec(5, seed + 1, device, dtype), _vec(5, seed + 2, device, dtype)
    rm, rv = torch.zeros(5, device=device), torch.ones(5, device=device)
    rm64, rv64 = np.zeros(5), np.ones(5)
    for step in range(2):
        x = _make(shape, dtype, device, seed + step, layout, -1.0, 3.0)
        what = f"instance_norm {dtype} {layout} step {step} seed={seed}"
        y = kernels.instance_norm(x, rm, rv, w, b, True, 0.2, relu=step == 1)
        _check(y, x, reference.instance_norm(as_ref(x), rm64, rv64, as_ref(w), as_ref(b), True, 0.2), 28, what,
               relu=step == 1)
        assert_close(rm, rm64, tolerance(torch.float32, 28), what + " running_mean")
        assert_close(rv, rv64, tolerance(torch.float32, 28), what + " running_var")
    y = kernels.instance_norm(x, rm, rv, None, b, use_input_stats=False)
    _check(y, x, reference.instance_norm(as_ref(x), rm64, rv64, None, as_ref(b), False), 1,
           f"instance_norm running stats {dtype} {layout}")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_group_norm(dtype, layout, device):
    seed = _seed()
    shape = (2, 6, 3, 5)
    x = _make(shape, dtype, device, seed, layout, 2.0)
    w, b = _vec(6, seed + 1, device), _vec(6, seed + 2, device)
    for groups, affine, relu in ((1, True, False), (3, True, True), (6, False, False)):
        ww, bb = (w, b) if affine else (None, None)
        y = kernels.group_norm(x, groups, ww, bb, relu=relu)
        expected = reference.group_norm(as_ref(x), groups, *((as_ref(w), as_ref(b)) if affine else (None, None)))
        _check(y, x, expected, 90 // groups, f"group_norm G={groups} {dtype} {layout} seed={seed}", relu=relu)


@pytest.mark.parametrize("shape, groups", [((5, 6), 2), ((2, 4, 9), 4), ((1, 2, 3, 1, 4), 1)], ids=str)
def test_group_norm_other_ranks(shape, groups, device):
    seed = _seed()
    x = _make(shape, torch.float32, device, seed)
    w, b = _vec(shape[1], seed + 1, device), _vec(shape[1], seed + 2, device)
    _check(kernels.group_norm(x, groups, w, b), x, reference.group_norm(as_ref(x), groups, as_ref(w), as_ref(b)),
           math.prod(shape) // shape[0] // groups, f"group_norm {shape} seed={seed}")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_layer_norm(dtype, layout, device):
    seed = _seed()
    x = _make((2, 3, 5, 7), dtype, device, seed, layout, -3.0, 0.5)
    for normalized, affine in (((3, 5, 7), True), ((5, 7), False), ((7,), True)):
        lw = _vec(normalized, seed + 1, device, dtype) if affine else None
        lb = _vec(normalized, seed + 2, device, dtype) if affine else None
        y = kernels.layer_norm(x, normalized, lw, lb)
        expected = reference.layer_norm(as_ref(x), normalized, *((as_ref(lw), as_ref(lb)) if affine else (None, None)))
        _check(y, x, expected, math.prod(normalized), f"layer_norm {normalized} {dtype} {layout} seed={seed}")


@pytest.mark.parametrize("shape, normalized", [((6, 33), 33), ((2, 3, 40), (3, 40)), ((4, 1), (1,))], ids=str)
def test_layer_norm_other_ranks(shape, normalized, device):
    seed = _seed()
    x = _make(shape, torch.float32, device, seed)
    _check(kernels.layer_norm(x, normalized, eps=1e-3), x, reference.layer_norm(as_ref(x), normalized, eps=1e-3),
           shape[-1], f"layer_norm {shape} seed={seed}")


def test_strided_input_and_int64_path(device, monkeypatch):
    """A non-dense view is copied first; the 64-bit index variant gives the same results."""
    seed = _seed()
    base = _make((3, 8, 6, 10), torch.float32, device, seed)
    x = base[:, ::2, :, 1::2]
    w = _vec(8, seed + 1, device)[::2]  # strided affine parameters too
    _check(kernels.group_norm(x, 2, w, w), x, reference.group_norm(as_ref(x), 2, as_ref(w), as_ref(w)), 30,
           f"strided view seed={seed}")
    monkeypatch.setattr(_common, "needs_int64", lambda *ts: True)
    xc = x.contiguous(memory_format=torch.channels_last)
    rm, rv = torch.zeros(4, device=device), torch.ones(4, device=device)
    rm64, rv64 = np.zeros(4), np.ones(4)
    _check(kernels.batch_norm(xc, rm, rv, training=True), xc, reference.batch_norm(as_ref(xc), rm64, rv64, training=True),
           90, "int64 batch_norm")
    assert_close(rv, rv64, tolerance(torch.float32, 90), "int64 running_var")
    _check(kernels.layer_norm(xc, (6, 5)), xc, reference.layer_norm(as_ref(xc), (6, 5)), 30, "int64 layer_norm")


def test_min_bytes():
    g = NormGeometry("batch", 32, 64, 56, 56)
    assert knorm.min_bytes("batch_norm", g, 2) == 2 * 32 * 64 * 56 * 56 * 2
    with pytest.raises(ValueError, match="op"):
        knorm.min_bytes("layer_norm", g, 2)


def test_static_specs_cover_every_config():
    specs = knorm.static_specs()
    names = [s.name for s in specs]
    assert len(names) == len(set(names))
    # every config at least once (fp16), the default configs in every dtype
    for cfg in knorm.CONFIGS:
        assert f"norm.stats/fp16/{cfg}" in names and f"norm.normalize/fp16/{cfg}" in names
    forward = ("norm.stats/", "norm.normalize/")
    defaults = {s.name.split("/")[2] for s in specs if s.default and s.name.startswith(forward)}
    assert len(defaults) == 2
    for cfg in defaults:
        for dt in ("fp32", "fp16", "bf16"):
            assert f"norm.stats/{dt}/{cfg}" in names and f"norm.normalize/{dt}/{cfg}" in names


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------
def _v(n, x, dtype=torch.float32):
    return torch.ones(n, dtype=dtype, device=x.device)


@pytest.mark.parametrize("call, error, match", [
    (lambda x: kernels.batch_norm(x[0, 0, 0], None, None, training=True), ValueError, "input"),
    (lambda x: kernels.batch_norm(x, _v(3, x), _v(4, x), training=True), ValueError, "running_mean"),
    (lambda x: kernels.batch_norm(x, _v(4, x), _v(5, x)), ValueError, "running_var"),
    (lambda x: kernels.batch_norm(x, _v(4, x), None, training=True), ValueError, "both"),
    (lambda x: kernels.batch_norm(x, _v(4, x, torch.int32), _v(4, x, torch.int32)), TypeError, "running_mean"),
    (lambda x: kernels.batch_norm(x, None, None), ValueError, "evaluation mode"),
    (lambda x: kernels.batch_norm(x[:1, :, :1, :1], None, None, training=True), ValueError,
     "more than 1 value per channel"),
    (lambda x: kernels.batch_norm(x, None, None, _v(3, x), training=True), ValueError, "weight"),
    (lambda x: kernels.batch_norm(x, None, None, None, _v(4, x, torch.float64), training=True), TypeError, "bias"),
    (lambda x: kernels.batch_norm(x, None, None, training=True, eps=-1.0), ValueError, "eps"),
    (lambda x: kernels.batch_norm(x, None, None, training=True, config=knorm.NormConfig(2, 2)), ValueError, "config"),
    (lambda x: kernels.batch_norm(x.int(), None, None, training=True), TypeError, "input"),
    (lambda x: kernels.instance_norm(x[:, :, 0, 0]), ValueError, "input"),
    (lambda x: kernels.instance_norm(x[:, :, :1, :1]), ValueError, "spatial"),
    (lambda x: kernels.instance_norm(x, use_input_stats=False), ValueError, "running_mean"),
    (lambda x: kernels.group_norm(x, 3), ValueError, "num_groups"),
    (lambda x: kernels.group_norm(x, 0), ValueError, "num_groups"),
    (lambda x: kernels.group_norm(x[:1, :, :1, :1], 4), ValueError, "more than 1 value per group"),
    (lambda x: kernels.group_norm(x, 2, _v(2, x)), ValueError, "weight"),
    (lambda x: kernels.layer_norm(x, (4, 6)), ValueError, "normalized_shape"),
    (lambda x: kernels.layer_norm(x, ()), ValueError, "normalized_shape"),
    (lambda x: kernels.layer_norm(x, (5, 6), weight=_v(6, x)), ValueError, "weight"),
    (lambda x: kernels.layer_norm(x.numpy(force=True), (6,)), TypeError, "input"),
])
def test_bad_input_raises_before_launch(call, error, match, device, monkeypatch):
    def no_launch(*args, **kwargs):  # pragma: no cover - reached only on a bug
        raise AssertionError("a kernel was launched for invalid input")

    for name in ("_stats_kernel", "_finalize_kernel", "_normalize_kernel"):
        monkeypatch.setattr(knorm, name, type("NoLaunch", (), {"__getitem__": lambda self, grid: no_launch})())
    x = torch.zeros(2, 4, 5, 6, device=device)
    with pytest.raises(error, match=match):
        call(x)
