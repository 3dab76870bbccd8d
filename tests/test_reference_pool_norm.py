"""The pooling and normalization references against PyTorch's float64 CPU operators.

PyTorch is an independent implementation: geometry (kernel, stride, padding, dilation,
ceil_mode, count_include_pad, divisor_override), data (NaN, -inf, ties) and normalization shapes
are drawn by hypothesis, and the references must agree to 1e-12 (indices exactly).  Running
statistics are compared after several training steps.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from convbench import reference as R
from convbench.reference.geometry import PoolGeometry
from _compare import assert_close

TOL = 1e-12


def _data(rng: np.random.Generator, shape, kind: str) -> np.ndarray:
    """Normal data, data full of ties (small integers), or data with NaN and +-inf sprinkled in."""
    if kind == "ties":
        return rng.integers(-2, 3, size=shape).astype(np.float64)
    x = rng.standard_normal(shape)
    if kind == "special":
        flat = x.reshape(-1)
        picks = rng.choice(flat.size, size=max(1, flat.size // 8), replace=False)
        flat[picks] = rng.choice([np.nan, -np.inf, np.inf, -np.inf], size=picks.size)
    return x


@st.composite
def pool_case(draw, one_d: bool = False, dilated: bool = True):
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h = 1 if one_d else draw(st.integers(1, 11))
    w = draw(st.integers(1, 11))
    kh = 1 if one_d else draw(st.integers(1, 4))
    kw = draw(st.integers(1, 4))
    stride = (1 if one_d else draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (0 if one_d else draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)))
    dil = (1 if one_d or not dilated else draw(st.integers(1, 3)), draw(st.integers(1, 3)) if dilated else 1)
    return dict(shape=(n, c, h, w), kernel=(kh, kw), stride=stride, padding=padding, dilation=dil,
                ceil_mode=draw(st.booleans()), kind=draw(st.sampled_from(["normal", "ties", "special"])),
                seed=draw(st.integers(0, 2**31 - 1)))


def _geometry_or_torch_error(case, torch_call):
    """The geometry is valid exactly when PyTorch accepts it; returns whether it is valid."""
    try:
        PoolGeometry(*case["shape"], case["kernel"], case["stride"], case["padding"], case["dilation"], case["ceil_mode"])
    except ValueError:
        with pytest.raises(RuntimeError):
            torch_call()
        return False
    return True


@given(pool_case())
def test_max_pool2d_matches_torch(case):
    x = _data(np.random.default_rng(case["seed"]), case["shape"], case["kind"])
    args = (case["kernel"], case["stride"], case["padding"], case["dilation"], case["ceil_mode"])
    xt = torch.from_numpy(x)
    if not _geometry_or_torch_error(case, lambda: F.max_pool2d(xt, *args)):
        return
    out, idx = R.max_pool2d(x, *args, return_indices=True)
    tout, tidx = F.max_pool2d(xt, *args, return_indices=True)
    assert_close(tout, out, TOL, f"max_pool2d {case}")
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(idx, tidx.numpy(), err_msg=f"indices {case}")


@given(pool_case(dilated=False), st.booleans(), st.sampled_from([None, 1, 3, -2, 7]))
def test_avg_pool2d_matches_torch(case, count_include_pad, divisor_override):
    x = _data(np.random.default_rng(case["seed"]), case["shape"], "normal")
    args = (case["kernel"], case["stride"], case["padding"], case["ceil_mode"], count_include_pad, divisor_override)
    xt = torch.from_numpy(x)
    if not _geometry_or_torch_error(case, lambda: F.avg_pool2d(xt, *args)):
        return
    assert_close(F.avg_pool2d(xt, *args), R.avg_pool2d(x, *args), TOL, f"avg_pool2d {case}")


@given(pool_case(one_d=True))
def test_1d_pools_match_torch(case):
    n, c, _, length = case["shape"]
    x = _data(np.random.default_rng(case["seed"]), (n, c, length), case["kind"])
    k, s, p, d, cm = case["kernel"][1], case["stride"][1], case["padding"][1], case["dilation"][1], case["ceil_mode"]
    xt = torch.from_numpy(x)
    if not _geometry_or_torch_error(case, lambda: F.max_pool1d(xt, k, s, p, d, cm)):
        return
    out, idx = R.max_pool1d(x, k, s, p, d, cm, return_indices=True)
    tout, tidx = F.max_pool1d(xt, k, s, p, d, cm, return_indices=True)
    assert_close(tout, out, TOL, f"max_pool1d {case}")
    np.testing.assert_array_equal(idx, tidx.numpy())
    xn = np.nan_to_num(x, nan=0.5, posinf=2.0, neginf=-2.0)
    for cip in (True, False):
        assert_close(F.avg_pool1d(torch.from_numpy(xn), k, s, p, cm, cip), R.avg_pool1d(xn, k, s, p, cm, cip),
                     TOL, f"avg_pool1d {case} count_include_pad={cip}")
    assert_close(F.adaptive_avg_pool1d(torch.from_numpy(xn), max(1, length // 2)),
                 R.adaptive_avg_pool1d(xn, max(1, length // 2)), TOL, "adaptive_avg_pool1d")


@given(st.integers(1, 2), st.integers(1, 3), st.integers(1, 13), st.integers(1, 13),
       st.one_of(st.integers(1, 6), st.tuples(st.one_of(st.none(), st.integers(1, 8)), st.integers(1, 8))),
       st.booleans(), st.integers(0, 2**31 - 1))
def test_adaptive_avg_pool2d_matches_torch(n, c, h, w, output_size, special, seed):
    x = _data(np.random.default_rng(seed), (n, c, h, w), "special" if special else "normal")
    assert_close(F.adaptive_avg_pool2d(torch.from_numpy(x), output_size), R.adaptive_avg_pool2d(x, output_size),
                 TOL, f"adaptive_avg_pool2d {(n, c, h, w)} -> {output_size}")


def test_unbatched_pools_match_torch():
    x = np.random.default_rng(0).standard_normal((3, 7, 6))
    xt = torch.from_numpy(x)
    out, idx = R.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True)
    tout, tidx = F.max_pool2d(xt, 3, 2, 1, ceil_mode=True, return_indices=True)
    assert_close(tout, out, TOL, "unbatched max_pool2d")
    np.testing.assert_array_equal(idx, tidx.numpy())
    assert_close(F.avg_pool2d(xt, 2), R.avg_pool2d(x, 2), TOL, "unbatched avg_pool2d")
    assert_close(F.adaptive_avg_pool2d(xt, 2), R.adaptive_avg_pool2d(x, 2), TOL, "unbatched adaptive")
    assert_close(F.max_pool1d(xt, 2), R.max_pool1d(x, 2), TOL, "unbatched max_pool1d")


# ---------------------------------------------------------------------------------------------
# normalization
# ---------------------------------------------------------------------------------------------
@st.composite
def norm_shape(draw, min_rank=2):
    rank = draw(st.integers(min_rank, 4))
    return tuple(draw(st.integers(1, 5)) for _ in range(rank))


def _conditioned_tol(x: np.ndarray, axes, eps: float = 1e-5) -> float:
    """1e-12, or more when the data sit on a large offset: float64 rounding of the mean alone
    moves ``(x - mean) / sqrt(var + eps)`` by about u64 * max|x| / sqrt(var + eps)."""
    std = np.sqrt(np.var(x, axis=axes) + eps).min()
    cond = np.abs(x).max() / std
    return max(TOL, 32 * 2.0**-53 * cond)


def _affine(rng, c, affine):
    return (rng.standard_normal(c), rng.standard_normal(c)) if affine else (None, None)


def _t(a):
    return None if a is None else torch.from_numpy(np.array(a))


@given(norm_shape(), st.booleans(), st.floats(0.0, 1.0), st.sampled_from([1e-5, 1e-3, 0.0]),
       st.integers(1, 3), st.booleans(), st.integers(0, 2**31 - 1))
@settings(max_examples=25)
def test_batch_norm_training_steps_match_torch(shape, affine, momentum, eps, steps, offset, seed):
    """Several training steps: outputs and in-place running statistics after each one."""
    c = shape[1]
    assume(np.prod(shape) // c > 1)
    rng = np.random.default_rng(seed)
    w, b = _affine(rng, c, affine)
    rm, rv = rng.standard_normal(c), rng.uniform(0.5, 2.0, c)
    trm, trv = torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy())
    for step in range(steps):
        x = rng.standard_normal(shape) * 0.01 + (1e4 if offset else 0.0)
        out = R.batch_norm(x, rm, rv, w, b, True, momentum, eps + 1e-9)
        ref = F.batch_norm(torch.from_numpy(x), trm, trv, _t(w), _t(b), True, momentum, eps + 1e-9)
        tol = _conditioned_tol(x, (0,) + tuple(range(2, len(shape))), eps + 1e-9)
        assert_close(ref, out, tol, f"batch_norm training step {step} {shape}")
        assert_close(trm, rm, TOL, f"running_mean after step {step}")
        assert_close(trv, rv, tol, f"running_var after step {step}")
    x = rng.standard_normal(shape)
    assert_close(F.batch_norm(torch.from_numpy(x), trm, trv, _t(w), _t(b), False, momentum, 1e-5),
                 R.batch_norm(x, rm, rv, w, b, False, momentum, 1e-5), TOL, "batch_norm eval")


def test_batch_norm_updates_torch_tensors_in_place():
    x = np.random.default_rng(1).standard_normal((4, 3, 5))
    rm, rv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    R.batch_norm(x, rm, rv, training=True, momentum=0.5)
    np.testing.assert_allclose(rm.numpy(), 0.5 * x.mean((0, 2)), rtol=1e-12)
    np.testing.assert_allclose(rv.numpy(), 0.5 + 0.5 * x.var((0, 2), ddof=1), rtol=1e-12)


@given(norm_shape(min_rank=3), st.booleans(), st.booleans(), st.integers(0, 2**31 - 1))
@settings(max_examples=25)
def test_instance_norm_matches_torch(shape, affine, running, seed):
    assume(np.prod(shape[2:]) > 1)
    rng = np.random.default_rng(seed)
    c = shape[1]
    w, b = _affine(rng, c, affine)
    rm, rv = (rng.standard_normal(c), rng.uniform(0.5, 2.0, c)) if running else (None, None)
    trm, trv = (torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy())) if running else (None, None)
    for step in range(2):
        x = rng.standard_normal(shape)
        out = R.instance_norm(x, rm, rv, w, b, True, 0.3, 1e-5)
        assert_close(F.instance_norm(torch.from_numpy(x), trm, trv, _t(w), _t(b), True, 0.3, 1e-5),
                     out, TOL, f"instance_norm step {step}")
        if running:
            assert_close(trm, rm, TOL, "instance running_mean")
            assert_close(trv, rv, TOL, "instance running_var")
    if running:
        x = rng.standard_normal(shape)
        assert_close(F.instance_norm(torch.from_numpy(x), trm, trv, _t(w), _t(b), False),
                     R.instance_norm(x, rm, rv, w, b, False), TOL, "instance_norm with running stats")


@given(norm_shape(), st.data(), st.booleans(), st.integers(0, 2**31 - 1))
def test_group_norm_matches_torch(shape, data, affine, seed):
    c = shape[1]
    groups = data.draw(st.sampled_from([g for g in range(1, c + 1) if c % g == 0]))
    assume(np.prod(shape) // groups > 1)  # PyTorch refuses one value per group (tested below)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) + rng.choice([0.0, 1e4])
    w, b = _affine(rng, c, affine)
    tol = _conditioned_tol(x.reshape(shape[0], groups, -1), (2,))
    assert_close(F.group_norm(torch.from_numpy(x), groups, _t(w), _t(b)), R.group_norm(x, groups, w, b),
                 tol, f"group_norm {shape} groups={groups}")


@given(norm_shape(min_rank=1), st.data(), st.booleans(), st.integers(0, 2**31 - 1))
def test_layer_norm_matches_torch(shape, data, affine, seed):
    k = data.draw(st.integers(1, len(shape)))
    normalized = shape[len(shape) - k:]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    w, b = (rng.standard_normal(normalized), rng.standard_normal(normalized)) if affine else (None, None)
    assert_close(F.layer_norm(torch.from_numpy(x), normalized, _t(w), _t(b)), R.layer_norm(x, normalized, w, b),
                 TOL, f"layer_norm {shape} over {normalized}")


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------
X4 = np.zeros((2, 4, 5, 5))


@pytest.mark.parametrize("call, match", [
    (lambda: R.max_pool2d(np.zeros((5, 5)), 2), "input"),
    (lambda: R.max_pool2d(np.zeros((1, 2, 3, 5, 5)), 2), "input"),
    (lambda: R.max_pool1d(X4, 2), "input"),
    (lambda: R.max_pool2d(X4, 3, padding=2), "padding"),
    (lambda: R.max_pool2d(X4, 7), "kernel_size"),
    (lambda: R.avg_pool2d(X4, 2, stride=0), "stride"),
    (lambda: R.avg_pool2d(X4, 2, divisor_override=0), "divisor_override"),
    (lambda: R.adaptive_avg_pool2d(X4, 0), "output_size"),
    (lambda: R.batch_norm(np.zeros((1, 4, 1, 1)), None, None, training=True), "more than 1 value per channel"),
    (lambda: R.batch_norm(X4, np.zeros(3), np.ones(4), training=True), "running_mean"),
    (lambda: R.batch_norm(X4, np.zeros(4), np.ones(5)), "running_var"),
    (lambda: R.batch_norm(X4, None, None), "running_mean"),
    (lambda: R.batch_norm(X4, None, None, np.ones(3), training=True), "weight"),
    (lambda: R.batch_norm(np.zeros(4), None, None, training=True), "input"),
    (lambda: R.instance_norm(np.zeros((2, 4)), None, None), "input"),
    (lambda: R.instance_norm(np.zeros((2, 4, 1))), "spatial"),
    (lambda: R.group_norm(X4, 3), "num_groups"),
    (lambda: R.group_norm(np.zeros((1, 3)), 3), "more than 1 value per group"),
    (lambda: R.group_norm(X4, 2, bias=np.ones(2)), "bias"),
    (lambda: R.layer_norm(X4, (4, 5)), "normalized_shape"),
    (lambda: R.layer_norm(X4, (5, 5), weight=np.ones(5)), "weight"),
])
def test_bad_input_raises_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()
