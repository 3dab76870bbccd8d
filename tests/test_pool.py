"""The pooling kernels against the float64 references.

Odd sizes, ceil_mode edge windows (kept and dropped), padding, dilation, NaN / -inf and ties for
max pooling, batch 1, every dtype and both layouts on the default config, then every config,
the global-average fast path, 1-D and unbatched pools, and every bad-input case.  Inputs are
fresh random numbers each run (seed in every message), rounded to the kernel's dtype before the
reference sees them; outputs start as NaN (``conftest``), so an unwritten element fails.
"""

from __future__ import annotations


import numpy as np
import pytest
import torch

from convbench import kernels
from convbench import reference
from _compare import as_ref, assert_close, tolerance
from _operands import fresh_seed as _seed
from convbench.kernels import _common
from convbench.kernels import pool as kpool
from convbench.reference.geometry import PoolGeometry

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
LAYOUTS = ("nchw", "channels_last")
DTYPE_IDS = lambda d: str(d).replace("torch.", "")  # noqa: E731


def _make(shape, dtype, device, seed, layout="nchw", kind="normal"):
    """Normal data, ties (small integers) or normal data with NaN/-inf/+inf sprinkled in."""
    g = torch.Generator().manual_seed(seed)
    if kind == "ties":
        t = torch.randint(-2, 3, shape, generator=g).float()
    else:
        t = torch.randn(shape, generator=g)
    if kind == "special":
        flat = t.view(-1)
        picks = torch.randperm(flat.numel(), generator=g)[: max(2, flat.numel() // 8)]
        flat[picks[0::3]] = float("nan")
        flat[picks[1::3]] = float("-inf")
        flat[picks[2::3]] = float("inf")
    if kind == "all-neg-inf":
        t = torch.full(shape, float("-inf"))
    t = t.to(dtype).to(device)
    return t.to(memory_format=torch.channels_last) if layout == "channels_last" and t.dim() == 4 else t


def _check_format(y, x, what):
    assert y.dtype == x.dtype, f"{what}: output dtype {y.dtype}"
    fmt = torch.channels_last if _common.is_channels_last(x) else torch.contiguous_format
    assert y.is_contiguous(memory_format=fmt), f"{what}: output is not in the input's memory format"


# (input shape, kernel, stride, padding, dilation, ceil_mode, data: normal, ties or special)
MAX_CASES = {
    "odd-3x3-s2-p1-ceil": ((2, 3, 11, 9), 3, 2, 1, 1, True, "special"),
    "odd-3x3-s2-p1-ties": ((1, 3, 11, 9), 3, 2, 1, 1, False, "ties"),
    "dilated-asym": ((1, 2, 10, 9), (3, 2), (2, 1), (1, 1), (2, 3), True, "ties"),
    "ceil-drops-last": ((1, 2, 5, 7), 2, 2, 1, 1, True, "special"),  # the window starting in the padding goes
    "batch1-c1-1x1-s2": ((1, 1, 7, 6), 1, 2, 0, 1, False, "normal"),
    "all-padding-window": ((1, 2, 2, 2), 2, 1, 1, 3, False, "special"),  # a window with no in-bounds tap
    "k4-s3-floor": ((2, 2, 13, 8), (4, 3), 3, (2, 1), 1, False, "normal"),
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", list(MAX_CASES))
def test_max_pool2d_matches_reference(name, dtype, layout, device):
    shape, k, s, p, d, ceil, kind = MAX_CASES[name]
    seed = _seed()
    x = _make(shape, dtype, device, seed, layout, kind)
    what = f"max_pool2d {name} {kind} {dtype} {layout} seed={seed}"
    y, idx = kernels.max_pool2d(x, k, s, p, d, ceil, return_indices=True)
    ref, ref_idx = reference.max_pool2d(as_ref(x), k, s, p, d, ceil, return_indices=True)
    _check_format(y, x, what)
    assert idx.dtype == torch.int64 and idx.stride() == y.stride(), f"{what}: indices dtype/layout"
    assert_close(y, ref, 0.0, what)  # max pooling is exact in every dtype
    np.testing.assert_array_equal(idx.cpu().numpy(), ref_idx, err_msg=what)
    if name == "odd-3x3-s2-p1-ceil":  # the variant without indices
        assert_close(kernels.max_pool2d(x, k, s, p, d, ceil), ref, 0.0, what + " without indices")


def test_max_pool2d_all_neg_inf_keeps_first_in_bounds_index(device):
    x = _make((1, 1, 5, 5), torch.float32, device, 0, kind="all-neg-inf")
    y, idx = kernels.max_pool2d(x, 3, 2, 1, return_indices=True)
    ref, ref_idx = reference.max_pool2d(as_ref(x), 3, 2, 1, return_indices=True)
    assert_close(y, ref, 0.0, "all -inf")
    np.testing.assert_array_equal(idx.cpu().numpy(), ref_idx)


# (input shape, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
AVG_CASES = {
    "3x3-s2-p1-ceil-include-pad": ((2, 3, 11, 9), 3, 2, 1, True, True, None),
    "3x3-s2-p1-ceil-exclude-pad": ((2, 3, 11, 9), 3, 2, 1, True, False, None),
    "asym-divisor-override": ((1, 2, 10, 7), (3, 2), (2, 1), (1, 1), False, True, 5),
    "ceil-edge-exclude-pad": ((1, 2, 6, 6), 4, 3, 2, True, False, None),
    "ceil-edge-include-pad": ((1, 2, 6, 6), 4, 3, 2, True, True, None),
    "batch1-2x2": ((1, 1, 7, 5), 2, None, 0, False, True, None),
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", list(AVG_CASES))
def test_avg_pool2d_matches_reference(name, dtype, layout, device):
    shape, k, s, p, ceil, cip, div = AVG_CASES[name]
    seed = _seed()
    x = _make(shape, dtype, device, seed, layout)
    what = f"avg_pool2d {name} {dtype} {layout} seed={seed}"
    y = kernels.avg_pool2d(x, k, s, p, ceil, cip, div)
    _check_format(y, x, what)
    kh, kw = (k, k) if isinstance(k, int) else k
    assert_close(y, reference.avg_pool2d(as_ref(x), k, s, p, ceil, cip, div), tolerance(dtype, kh * kw), what)


# inf + -inf in a window is meant to give NaN; the interpreter's NumPy says so with a warning
@pytest.mark.filterwarnings("ignore:invalid value encountered in add:RuntimeWarning")
def test_avg_pool2d_propagates_nan_and_inf(device):
    x = _make((1, 2, 9, 8), torch.float32, device, _seed(), kind="special")
    assert_close(kernels.avg_pool2d(x, 3, 2, 1), reference.avg_pool2d(as_ref(x), 3, 2, 1),
                 tolerance(torch.float32, 9), "avg_pool2d with NaN/inf")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("output_size", [(4, 3), (None, 5), 1, (1, 1), (11, 2)], ids=str)
def test_adaptive_avg_pool2d_matches_reference(output_size, dtype, layout, device):
    seed = _seed()
    x = _make((2, 5, 11, 9), dtype, device, seed, layout)
    what = f"adaptive_avg_pool2d {output_size} {dtype} {layout} seed={seed}"
    y = kernels.adaptive_avg_pool2d(x, output_size)
    _check_format(y, x, what)
    assert_close(y, reference.adaptive_avg_pool2d(as_ref(x), output_size), tolerance(dtype, 11 * 9), what)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("config", kpool.CONFIGS, ids=str)
def test_every_window_config(config, layout, device):
    seed = _seed()
    x = _make((2, 3, 12, 11), torch.float16, device, seed, layout, "ties")
    what = f"{config} {layout} seed={seed}"
    y, idx = kernels.max_pool2d(x, 3, 2, 1, 2, True, True, config=config)
    ref, ref_idx = reference.max_pool2d(as_ref(x), 3, 2, 1, 2, True, True)
    assert_close(y, ref, 0.0, "max " + what)
    np.testing.assert_array_equal(idx.cpu().numpy(), ref_idx, err_msg=what)
    for cip, div in ((True, None), (False, None), (True, 4)):
        y = kernels.avg_pool2d(x, (3, 2), 2, 1, True, cip, div, config=config)
        assert_close(y, reference.avg_pool2d(as_ref(x), (3, 2), 2, 1, True, cip, div),
                     tolerance(torch.float16, 6), f"avg {cip} {div} " + what)
    y = kernels.adaptive_avg_pool2d(x, (5, 4), config=config)
    assert_close(y, reference.adaptive_avg_pool2d(as_ref(x), (5, 4)), tolerance(torch.float16, 9), "adaptive " + what)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("config", kpool.GLOBAL_CONFIGS, ids=str)
def test_every_global_average_config(config, layout, device):
    seed = _seed()
    x = _make((1, 2 * config.block_c + 3, 5, 7), torch.bfloat16, device, seed, layout)  # 3 channel blocks
    y = kernels.adaptive_avg_pool2d(x, 1, config=config)
    assert_close(y, reference.adaptive_avg_pool2d(as_ref(x), 1), tolerance(torch.bfloat16, 35),
                 f"global average {config} {layout} seed={seed}")


def test_global_average_of_a_large_plane_and_a_strided_view(device):
    seed = _seed()
    x = _make((1, 2, 40, 33), torch.float32, device, seed)  # plane longer than BLOCK_HW=1024
    assert_close(kernels.adaptive_avg_pool2d(x, 1), reference.adaptive_avg_pool2d(as_ref(x), 1),
                 tolerance(torch.float32, 40 * 33), f"large plane seed={seed}")
    view = x[:, :, ::2, ::3]  # not flattenable: the launcher copies it
    assert_close(kernels.adaptive_avg_pool2d(view, 1), reference.adaptive_avg_pool2d(as_ref(view), 1),
                 tolerance(torch.float32, 20 * 11), f"strided view seed={seed}")
    assert_close(kernels.max_pool2d(view, 2), reference.max_pool2d(as_ref(view), 2), 0.0, "strided max")
    column = x[:, :, :, :1]  # W == 1: the plane runs along H
    assert_close(kernels.adaptive_avg_pool2d(column, 1), reference.adaptive_avg_pool2d(as_ref(column), 1),
                 tolerance(torch.float32, 40), f"column seed={seed}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_1d_pools_match_reference(dtype, device):
    seed = _seed()
    x = _make((2, 3, 17), dtype, device, seed, kind="special")
    what = f"1-D {dtype} seed={seed}"
    y, idx = kernels.max_pool1d(x, 3, 2, 1, 2, True, True)
    ref, ref_idx = reference.max_pool1d(as_ref(x), 3, 2, 1, 2, True, True)
    assert_close(y, ref, 0.0, "max_pool1d " + what)
    np.testing.assert_array_equal(idx.cpu().numpy(), ref_idx, err_msg=what)
    x = _make((2, 3, 17), dtype, device, seed)
    for cip in (True, False):
        assert_close(kernels.avg_pool1d(x, 4, 3, 2, True, cip), reference.avg_pool1d(as_ref(x), 4, 3, 2, True, cip),
                     tolerance(dtype, 4), f"avg_pool1d cip={cip} " + what)
    for size in (5, 1):
        assert_close(kernels.adaptive_avg_pool1d(x, size), reference.adaptive_avg_pool1d(as_ref(x), size),
                     tolerance(dtype, 17), f"adaptive_avg_pool1d {size} " + what)


def test_unbatched_inputs(device):
    seed = _seed()
    x = _make((3, 8, 7), torch.float32, device, seed)
    y, idx = kernels.max_pool2d(x, 2, return_indices=True)
    ref, ref_idx = reference.max_pool2d(as_ref(x), 2, return_indices=True)
    assert_close(y, ref, 0.0, "unbatched max_pool2d")
    np.testing.assert_array_equal(idx.cpu().numpy(), ref_idx)
    assert_close(kernels.avg_pool2d(x, 3, 1, 1), reference.avg_pool2d(as_ref(x), 3, 1, 1), tolerance(torch.float32, 9),
                 "unbatched avg")
    assert_close(kernels.adaptive_avg_pool2d(x, 1), reference.adaptive_avg_pool2d(as_ref(x), 1),
                 tolerance(torch.float32, 56), "unbatched global")
    assert_close(kernels.max_pool1d(x, 3), reference.max_pool1d(as_ref(x), 3), 0.0, "unbatched max_pool1d")


def test_int64_index_path_matches(device, monkeypatch):
    """The 64-bit offset variant (normally only for >2**31 elements) computes the same result."""
    monkeypatch.setattr(_common, "needs_int64", lambda *ts: True)
    seed = _seed()
    x = _make((1, 3, 9, 8), torch.float32, device, seed, "channels_last", "ties")
    y, idx = kernels.max_pool2d(x, 3, 2, 1, 1, True, True)
    ref, ref_idx = reference.max_pool2d(as_ref(x), 3, 2, 1, 1, True, True)
    assert_close(y, ref, 0.0, "int64 max")
    np.testing.assert_array_equal(idx.cpu().numpy(), ref_idx)
    assert_close(kernels.avg_pool2d(x, 2), reference.avg_pool2d(as_ref(x), 2), tolerance(torch.float32, 4), "int64 avg")
    assert_close(kernels.adaptive_avg_pool2d(x, 1), reference.adaptive_avg_pool2d(as_ref(x), 1),
                 tolerance(torch.float32, 72), "int64 global")


def test_min_bytes():
    g = PoolGeometry.from_args((2, 3, 11, 9), 3, 2, 1, 1, True)
    assert kpool.min_bytes("max_pool2d", g, 2) == (2 * 3 * 11 * 9 + 2 * 3 * g.p * g.q) * 2
    assert kpool.min_bytes("max_pool2d", g, 2, indices=True) == g.min_bytes(2) + 8 * 2 * 3 * g.p * g.q
    assert kpool.min_bytes("avg_pool2d", g, 4, indices=True) == g.min_bytes(4)
    assert kpool.adaptive_min_bytes((2, 64, 7, 7), 1, 2) == (2 * 64 * 49 + 2 * 64) * 2
    with pytest.raises(ValueError, match="op"):
        kpool.min_bytes("conv2d", g, 2)


def test_static_specs_cover_every_config():
    names = [s.name for s in kpool.static_specs()]
    assert len(names) == len(set(names))
    for cfg in kpool.CONFIGS:
        assert any(f"pool.max/fp16/{cfg}" == n for n in names)
    for cfg in kpool.GLOBAL_CONFIGS:
        assert any(f"pool.global_avg/bf16/{cfg}" == n for n in names)


@pytest.mark.parametrize("call, error, match", [
    (lambda x: kernels.max_pool2d(x[0, 0], 2), ValueError, "input"),
    (lambda x: kernels.max_pool2d(x[None], 2), ValueError, "input"),
    (lambda x: kernels.max_pool1d(x, 2), ValueError, "input"),
    (lambda x: kernels.max_pool2d(x, 7), ValueError, "larger than the padded input"),
    (lambda x: kernels.avg_pool2d(x, (2, 9), padding=1), ValueError, "larger than the padded input"),
    (lambda x: kernels.max_pool2d(x, 3, padding=2), ValueError, "padding"),
    (lambda x: kernels.avg_pool1d(x[0], 2, padding=2), ValueError, "padding"),
    (lambda x: kernels.max_pool2d(x, 2, stride=0), ValueError, "stride"),
    (lambda x: kernels.max_pool2d(x, 2, dilation=(1, 0)), ValueError, "dilation"),
    (lambda x: kernels.max_pool2d(x, (2, 2, 2)), ValueError, "kernel_size"),
    (lambda x: kernels.avg_pool2d(x, 2, divisor_override=0), ValueError, "divisor_override"),
    (lambda x: kernels.adaptive_avg_pool2d(x, 0), ValueError, "output_size"),
    (lambda x: kernels.adaptive_avg_pool2d(x, (2, -1)), ValueError, "output_size"),
    (lambda x: kernels.max_pool2d(x.int(), 2), TypeError, "input"),
    (lambda x: kernels.max_pool2d(x.double(), 2), TypeError, "input"),
    (lambda x: kernels.max_pool2d(np.zeros((1, 1, 4, 4)), 2), TypeError, "input"),
    (lambda x: kernels.max_pool2d(x, 2, config=kpool.GLOBAL_CONFIGS[0]), ValueError, "config"),
])
def test_bad_input_raises_before_launch(call, error, match, device, monkeypatch):
    def no_launch(*args, **kwargs):  # pragma: no cover - reached only on a bug
        raise AssertionError("a kernel was launched for invalid input")

    for name in ("_max_pool_kernel", "_avg_pool_kernel", "_adaptive_avg_kernel", "_global_avg_kernel"):
        monkeypatch.setattr(kpool, name, type("NoLaunch", (), {"__getitem__": lambda self, grid: no_launch})())
    x = torch.zeros(2, 4, 6, 6, device=device)
    with pytest.raises(error, match=match):
        call(x)
