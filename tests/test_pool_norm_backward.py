"""Pooling and normalization backward: float64 references and Triton gradients (through autograd
and the public ``*_backward`` launchers) against torch's float64 autograd on random geometry.

Each random case draws its geometry, layout and dtype from a fresh seed printed on failure;
gradient buffers are NaN-poisoned (conftest), so an element a kernel forgets fails.  Tolerances
follow tests/_compare.py with the reduction each gradient sums: the windows that can hold an
input element for pools, the statistics group for the norms' dx, N x spatial (or the rows) for
their weight gradients.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from convbench import kernels, reference
from convbench.kernels import _common
from convbench.kernels import norm as knorm
from convbench.kernels import pool as kpool
from tests._compare import as_ref, assert_close, tolerance
from tests._operands import fresh_seed

DEV = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _leaf(t, dtype=None, device=None):
    return t.detach().to(dtype=dtype or t.dtype, device=device or t.device).clone().requires_grad_()


def _grads(fn_ours, fn_torch, inputs, dy_seed, dtype):
    """Run both with the same upstream gradient (ours rounded to ``dtype``, in the output's
    layout); returns (our gradients, torch's float64 gradients, the float64 dy)."""
    ours = [_leaf(t, device=DEV) if t is not None else None for t in inputs]
    theirs = [_leaf(t, torch.float64) if t is not None else None for t in inputs]
    out_t = fn_torch(*theirs)
    # a seed of its own: dy drawn like the input would make it an affine function of x, whose
    # normalization gradient is zero up to cancellation
    dy = torch.randn(out_t.shape, generator=torch.Generator().manual_seed(dy_seed + 7919), dtype=torch.float64)
    out_o = fn_ours(*ours)
    dy_o = dy.to(dtype).to(DEV)
    if out_o.dim() == 4 and out_o.is_contiguous(memory_format=torch.channels_last):
        dy_o = dy_o.contiguous(memory_format=torch.channels_last)
    out_o.backward(dy_o)
    out_t.backward(dy)
    return [t.grad if t is not None else None for t in ours], [t.grad if t is not None else None for t in theirs], dy


def _input(shape, dtype, seed, channels_last=False, *, ties=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    if ties:  # repeated values: the first index must win in both
        x = torch.round(x * 2) / 2
    x = x.to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


# ----------------------------------------------------------------------------------------------
# pools
# ----------------------------------------------------------------------------------------------
def _random_pool(rng, dilation=True):
    for _ in range(200):
        kh, kw = rng.randint(1, 4), rng.randint(1, 4)
        sh, sw = rng.randint(1, 3), rng.randint(1, 3)
        ph, pw = rng.randint(0, kh // 2), rng.randint(0, kw // 2)
        dh, dw = (rng.randint(1, 2), rng.randint(1, 2)) if dilation else (1, 1)
        h, w = rng.randint(3, 11), rng.randint(3, 11)
        if (kh - 1) * dh + 1 > h + 2 * ph or (kw - 1) * dw + 1 > w + 2 * pw:
            continue
        return dict(k=(kh, kw), s=(sh, sw), p=(ph, pw), d=(dh, dw), hw=(h, w), ceil=rng.random() < 0.4)
    raise AssertionError("no pool geometry")


def _windows_per_input(g) -> int:
    """How many windows can hold one input element (the length of its gradient's sum)."""
    return math.prod(-(-k * d // s) for k, d, s in zip(g["k"], g["d"], g["s"]))


@pytest.mark.parametrize("trial", range(6))
def test_max_pool2d_backward_random(trial):
    seed = fresh_seed()
    rng = random.Random(seed)
    g = _random_pool(rng)
    dtype, cl = rng.choice(DTYPES), rng.random() < 0.5
    x = _input((rng.randint(1, 2), rng.randint(1, 5), *g["hw"]), dtype, seed, cl, ties=rng.random() < 0.5)
    args = (g["k"], g["s"], g["p"], g["d"], g["ceil"])
    what = f"seed={seed} {g} {dtype} cl={cl}"
    ours, theirs, dy = _grads(lambda t: kernels.max_pool2d(t, *args), lambda t: F.max_pool2d(t, *args), [x], seed,
                              dtype)
    # the same index wins in both, so the gradient is exact up to the dtype of dy (a sum of few terms)
    assert_close(ours[0], as_ref(theirs[0]), tolerance(dtype, _windows_per_input(g)), what)
    assert ours[0].is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
    # the reference from torch's own indices, and the public launcher from ours
    _, idx = F.max_pool2d(x.double(), *args, return_indices=True)
    np.testing.assert_allclose(reference.max_pool2d_backward(dy, x, idx, *args), theirs[0].numpy(), atol=1e-12,
                               err_msg=what)
    y, idx_o = kernels.max_pool2d(x.to(DEV), *args, return_indices=True)
    got = kernels.max_pool2d_backward(dy.to(dtype).to(DEV), x.to(DEV), idx_o, *args)
    assert_close(got, as_ref(theirs[0]), tolerance(dtype, _windows_per_input(g)), f"{what} launcher")


def test_max_pool2d_backward_follows_nan_and_ties():
    x = torch.tensor([[[[1.0, 1.0, 2.0, 2.0], [1.0, float("nan"), 0.0, 2.0], [3.0, 3.0, 3.0, 3.0]]]])
    for args in ((2,), ((2, 2), 1), ((3, 3), 1, 1)):
        a, b = _leaf(x, device=DEV), _leaf(x)
        kernels.max_pool2d(a, *args).sum().backward()
        F.max_pool2d(b, *args).sum().backward()
        assert torch.equal(a.grad.cpu(), b.grad), args


def test_max_pool2d_window_without_an_in_bounds_tap_sends_no_gradient():
    """Dilated taps at w = -1, 1, 3 of a 1-wide input: no tap is inside.  Output -inf and torch's
    index, as the forward promises; no gradient anywhere (torch's CPU backward scatters it to the
    index, a pixel outside the window: not followed)."""
    x = torch.randn(2, 2, 4, 1)
    args = ((3, 3), (2, 3), (0, 1), (1, 2), True)
    y, idx = kernels.max_pool2d(x.to(DEV), *args, return_indices=True)
    ty, tidx = F.max_pool2d(x, *args, return_indices=True)
    assert torch.equal(y.cpu(), ty) and torch.isinf(ty).all() and torch.equal(idx.cpu(), tidx)
    a = _leaf(x, device=DEV)
    kernels.max_pool2d(a, *args).backward(torch.randn(ty.shape, device=DEV))
    assert torch.equal(a.grad.cpu(), torch.zeros_like(x))
    ref = reference.max_pool2d_backward(np.ones(ty.shape), x.numpy(), tidx.numpy(), *args)
    assert not ref.any()
    # rows -1 and 1 miss H=1: torch's index is past the plane (h = 1), its CPU backward writes there
    x = torch.randn(1, 1, 1, 4)
    args = ((2, 2), (1, 2), (1, 0), (2, 1))
    ty, tidx = F.max_pool2d(x, *args, return_indices=True)
    assert (tidx >= 4).all()
    a = _leaf(x, device=DEV)
    y = kernels.max_pool2d(a, *args)
    assert torch.equal(y.detach().cpu(), ty)
    y.backward(torch.ones_like(y))
    assert not a.grad.any()
    assert not reference.max_pool2d_backward(np.ones(ty.shape), x.numpy(), tidx.numpy(), *args).any()


@pytest.mark.parametrize("trial", range(6))
def test_avg_pool2d_backward_random(trial):
    seed = fresh_seed()
    rng = random.Random(seed)
    g = _random_pool(rng, dilation=False)
    dtype, cl = rng.choice(DTYPES), rng.random() < 0.5
    x = _input((rng.randint(1, 2), rng.randint(1, 5), *g["hw"]), dtype, seed, cl)
    cip = rng.random() < 0.5
    div = rng.choice([None, None, rng.randint(1, 7)])
    args = (g["k"], g["s"], g["p"], g["ceil"], cip, div)
    what = f"seed={seed} {g} cip={cip} div={div} {dtype} cl={cl}"
    ours, theirs, dy = _grads(lambda t: kernels.avg_pool2d(t, *args), lambda t: F.avg_pool2d(t, *args), [x], seed,
                              dtype)
    assert_close(ours[0], as_ref(theirs[0]), tolerance(dtype, _windows_per_input(g)), what)
    np.testing.assert_allclose(reference.avg_pool2d_backward(dy, x, *args), theirs[0].numpy(), rtol=1e-12,
                               atol=1e-12, err_msg=what)
    got = kernels.avg_pool2d_backward(dy.to(dtype).to(DEV), x.to(DEV), *args)
    assert_close(got, as_ref(theirs[0]), tolerance(dtype, _windows_per_input(g)), f"{what} launcher")


@pytest.mark.parametrize("trial", range(4))
def test_adaptive_avg_pool2d_backward_random(trial):
    seed = fresh_seed()
    rng = random.Random(seed)
    h, w = rng.randint(1, 9), rng.randint(1, 9)
    out = rng.choice([(1, 1), (rng.randint(1, 12), rng.randint(1, 12))])
    dtype, cl = rng.choice(DTYPES), rng.random() < 0.5
    x = _input((rng.randint(1, 2), rng.randint(1, 4), h, w), dtype, seed, cl)
    what = f"seed={seed} {(h, w)} -> {out} {dtype} cl={cl}"
    ours, theirs, dy = _grads(lambda t: kernels.adaptive_avg_pool2d(t, out), lambda t: F.adaptive_avg_pool2d(t, out),
                              [x], seed, dtype)
    windows = (-(-out[0] // h) + 1) * (-(-out[1] // w) + 1)
    assert_close(ours[0], as_ref(theirs[0]), tolerance(dtype, windows), what)
    assert ours[0].is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
    np.testing.assert_allclose(reference.adaptive_avg_pool2d_backward(dy, x), theirs[0].numpy(), atol=1e-12,
                               err_msg=what)
    got = kernels.adaptive_avg_pool2d_backward(dy.to(dtype).to(DEV), x.to(DEV))
    assert_close(got, as_ref(theirs[0]), tolerance(dtype, windows), f"{what} launcher")


@pytest.mark.parametrize("config", kpool.CONFIGS, ids=str)
def test_pool_backward_every_config(config):
    x = _input((2, 3, 9, 7), torch.float32, 5)
    for ours_fn, torch_fn in ((lambda t: kernels.max_pool2d(t, 3, 2, 1, config=config),
                               lambda t: F.max_pool2d(t, 3, 2, 1)),
                              (lambda t: kernels.avg_pool2d(t, 3, 2, 1, True, False, config=config),
                               lambda t: F.avg_pool2d(t, 3, 2, 1, True, False))):
        ours, theirs, _ = _grads(ours_fn, torch_fn, [x], 1, torch.float32)
        assert_close(ours[0], as_ref(theirs[0]), tolerance(torch.float32, 4), str(config))


def test_pool_1d_and_unbatched_forms():
    x1, x3 = torch.randn(2, 3, 11), torch.randn(3, 6, 7)
    cases = [
        (lambda t: kernels.max_pool1d(t, 3, 2, 1, 2, True), lambda t: F.max_pool1d(t, 3, 2, 1, 2, True), x1),
        (lambda t: kernels.avg_pool1d(t, 3, 2, 1, True, False), lambda t: F.avg_pool1d(t, 3, 2, 1, True, False), x1),
        (lambda t: kernels.adaptive_avg_pool1d(t, 4), lambda t: F.adaptive_avg_pool1d(t, 4), x1),
        (lambda t: kernels.max_pool1d(t, 2), lambda t: F.max_pool1d(t, 2), x1[0]),          # unbatched (C, L)
        (lambda t: kernels.max_pool2d(t, 2, 1), lambda t: F.max_pool2d(t, 2, 1), x3),      # unbatched (C, H, W)
        (lambda t: kernels.avg_pool2d(t, 3, 2, 1), lambda t: F.avg_pool2d(t, 3, 2, 1), x3),
        (lambda t: kernels.adaptive_avg_pool2d(t, 1), lambda t: F.adaptive_avg_pool2d(t, 1), x3),
    ]
    for i, (ours_fn, torch_fn, x) in enumerate(cases):
        ours, theirs, _ = _grads(ours_fn, torch_fn, [x], i, torch.float32)
        assert ours[0].shape == x.shape
        assert_close(ours[0], as_ref(theirs[0]), tolerance(torch.float32, 9), f"case {i}")


def test_pool_references_and_launchers_1d_unbatched():
    """The 1-D and unbatched references and launchers against torch's float64 autograd."""
    x = torch.randn(2, 3, 11, dtype=torch.float64, requires_grad=True)
    y, idx = F.max_pool1d(x, 3, 2, 1, 2, True, return_indices=True)
    dy = torch.randn_like(y)
    y.backward(dy)
    np.testing.assert_allclose(reference.max_pool1d_backward(dy, x, idx, 3, 2, 1, 2, True), x.grad.numpy(), atol=0)
    got = kernels.max_pool1d_backward(dy.float().to(DEV), x.float().to(DEV), idx.to(DEV), 3, 2, 1, 2, True)
    assert_close(got, x.grad.numpy(), tolerance(torch.float32, 2), "max_pool1d launcher")
    for ref_fn, ker_fn, torch_fn in (
        (lambda d, t: reference.avg_pool1d_backward(d, t, 4, 3, 1, True, False),
         lambda d, t: kernels.avg_pool1d_backward(d, t, 4, 3, 1, True, False),
         lambda t: F.avg_pool1d(t, 4, 3, 1, True, False)),
        (lambda d, t: reference.adaptive_avg_pool1d_backward(d, t),
         lambda d, t: kernels.adaptive_avg_pool1d_backward(d, t), lambda t: F.adaptive_avg_pool1d(t, 5)),
    ):
        for shape in ((2, 3, 11), (3, 11)):  # batched and unbatched
            t = torch.randn(shape, dtype=torch.float64, requires_grad=True)
            y = torch_fn(t)
            d = torch.randn_like(y)
            y.backward(d)
            np.testing.assert_allclose(ref_fn(d, t), t.grad.numpy(), atol=1e-12)
            assert_close(ker_fn(d.float().to(DEV), t.detach().float().to(DEV)), t.grad.numpy(),
                         tolerance(torch.float32, 4), f"launcher {shape}")
    t = torch.randn(3, 7, 6, dtype=torch.float64, requires_grad=True)  # unbatched 2-D
    y, idx = F.max_pool2d(t, 3, 2, 1, return_indices=True)
    d = torch.randn_like(y)
    y.backward(d)
    np.testing.assert_allclose(reference.max_pool2d_backward(d, t, idx, 3, 2, 1), t.grad.numpy(), atol=0)
    np.testing.assert_allclose(kernels.max_pool2d_backward(d.float().to(DEV), t.detach().float().to(DEV),
                                                           idx.to(DEV), 3, 2, 1).cpu().numpy(),
                               t.grad.numpy(), atol=1e-6)


def test_pool_backward_empty_inputs():
    for fn in (lambda t: kernels.max_pool2d(t, 2), lambda t: kernels.avg_pool2d(t, 2),
               lambda t: kernels.adaptive_avg_pool2d(t, (2, 3)), lambda t: kernels.adaptive_avg_pool2d(t, 1)):
        x = torch.randn(0, 3, 4, 4, device=DEV, requires_grad=True)
        fn(x).sum().backward()
        assert x.grad.shape == x.shape
    x = torch.randn(2, 3, 4, 4, device=DEV)
    dx = kernels.avg_pool2d_backward(torch.zeros(2, 3, 2, 2, device=DEV), x, 2)
    assert torch.equal(dx, torch.zeros_like(x))


def test_pool_backward_launchers_check_arguments():
    x = torch.randn(1, 2, 6, 6, device=DEV)
    with pytest.raises(ValueError, match="grad_output"):
        kernels.avg_pool2d_backward(torch.randn(1, 2, 4, 4, device=DEV), x, 2)
    with pytest.raises(ValueError, match="grad_output"):
        kernels.avg_pool2d_backward(torch.randn(2, 3, 3, device=DEV), x, 2)
    with pytest.raises(ValueError, match="indices"):
        kernels.max_pool2d_backward(torch.randn(1, 2, 3, 3, device=DEV), x,
                                    torch.zeros(1, 2, 2, 2, dtype=torch.int64, device=DEV), 2)
    with pytest.raises(TypeError, match="indices"):
        kernels.max_pool2d_backward(torch.randn(1, 2, 3, 3, device=DEV), x, torch.zeros(1, 2, 3, 3, device=DEV), 2)
    with pytest.raises(TypeError, match="grad_output"):
        kernels.adaptive_avg_pool2d_backward(torch.randn(1, 2, 3, 3, device=DEV).double(), x)
    with pytest.raises(ValueError, match="input"):
        kernels.max_pool1d_backward(torch.randn(1, 2, 3, device=DEV), x, torch.zeros(1, 2, 3, dtype=torch.int64), 2)


# ----------------------------------------------------------------------------------------------
# norms
# ----------------------------------------------------------------------------------------------
OPS = ("batch_norm", "batch_norm_eval", "instance_norm", "instance_norm_eval", "group_norm", "layer_norm")


def _norm_fns(op, shape, rng):
    """(fn(x, weight, bias, lib, relu), parameter shape, statistics group size: dx's reduction)."""
    n, c, spatial = shape[0], shape[1], math.prod(shape[2:])
    rm = torch.randn(c).double()
    rv = (torch.rand(c) + 0.5).double()

    def relu_of(lib, y, relu):  # ours fuses it; torch applies it after
        return F.relu(y) if relu and lib is F else y

    def kw(lib, relu):
        return {"relu": True} if relu and lib is kernels else {}

    if op == "batch_norm":
        return (lambda x, wt, b, lib, r: relu_of(lib, lib.batch_norm(x, None, None, wt, b, True, **kw(lib, r)), r)), \
            (c,), n * spatial
    if op == "batch_norm_eval":
        return (lambda x, wt, b, lib, r: relu_of(lib, lib.batch_norm(x, rm.to(x), rv.to(x), wt, b, False,
                                                                     **kw(lib, r)), r)), (c,), 1
    if op == "instance_norm":
        return (lambda x, wt, b, lib, r: relu_of(lib, lib.instance_norm(x, None, None, wt, b, **kw(lib, r)), r)), \
            (c,), spatial
    if op == "instance_norm_eval":
        return (lambda x, wt, b, lib, r: relu_of(lib, lib.instance_norm(x, rm.to(x), rv.to(x), wt, b,
                                                                        use_input_stats=False, **kw(lib, r)), r)), \
            (c,), 1
    if op == "group_norm":
        groups = rng.choice([d for d in (1, 2, c) if c % d == 0])
        return (lambda x, wt, b, lib, r: relu_of(lib, lib.group_norm(x, groups, wt, b, **kw(lib, r)), r)), \
            (c,), c // groups * spatial
    trail = tuple(shape[rng.randint(1, len(shape) - 1):])
    return (lambda x, wt, b, lib, r: relu_of(lib, lib.layer_norm(x, trail, wt, b, **kw(lib, r)), r)), \
        trail, math.prod(trail)


def _norm_case(rng, op):
    """A random shape (rank 2-4; instance norm 3-4) whose statistics groups hold >= 3 elements:
    with two, xhat = +-1 and dx = rstd * (g - mean(g) - xhat * mean(g xhat)) is ~eps/var of its
    terms, pure cancellation (torch's own fp32 backward misses a rounding-based tolerance there)."""
    for _ in range(200):
        rank = rng.choice([3, 4, 4] if op.startswith("instance") else [2, 3, 4, 4])
        shape = (rng.randint(1, 3), rng.choice([2, 3, 4, 6]), *(rng.randint(1, 6) for _ in range(rank - 2)))
        fn, pshape, group = _norm_fns(op, shape, rng)
        if group >= 3 or op.endswith("_eval"):  # (running statistics: dx = rstd * g, no cancellation)
            return shape, fn, pshape, group
    raise AssertionError("no norm case")


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("trial", range(2))
def test_norm_backward_random(op, trial):
    seed = fresh_seed()
    rng = random.Random(seed)
    shape, fn, pshape, group = _norm_case(rng, op)
    dtype = rng.choice(DTYPES)
    cl = len(shape) == 4 and rng.random() < 0.5
    affine, relu = rng.random() < 0.8, rng.random() < 0.3
    g = torch.Generator().manual_seed(seed)
    x = (3 * torch.randn(shape, generator=g) + 1).to(dtype)
    x = x.contiguous(memory_format=torch.channels_last) if cl else x
    wt = (torch.rand(pshape, generator=g) + 0.5).to(dtype) if affine else None
    b = torch.randn(pshape, generator=g).to(dtype) if affine else None
    ours, theirs, _ = _grads(lambda *t: fn(*t, kernels, relu), lambda *t: fn(*t, F, relu), [x, wt, b], seed, dtype)
    what = f"seed={seed} {op} {shape} {dtype} cl={cl} affine={affine} relu={relu}"
    tol_dx = tolerance(dtype, group) * 4  # dx = rstd * (g - mean(g) - xhat * mean(g xhat)): three rounded terms
    assert_close(ours[0], as_ref(theirs[0]), tol_dx, f"{what} dx")
    if cl:
        assert ours[0].is_contiguous(memory_format=torch.channels_last), what
    if affine:
        red = x.numel() // wt.numel()
        assert_close(ours[1], as_ref(theirs[1]), tolerance(dtype, red) * 4, f"{what} dweight")
        assert_close(ours[2], as_ref(theirs[2]), tolerance(dtype, red), f"{what} dbias")


@pytest.mark.parametrize("config", knorm.CONFIGS, ids=str)
@pytest.mark.parametrize("cl", [False, True], ids=["nchw", "channels_last"])
def test_norm_backward_every_config(config, cl):
    x = _input((3, 4, 5, 6), torch.float32, 11, cl) * 2 + 1
    w, b = torch.rand(4) + 0.5, torch.randn(4)
    ours, theirs, _ = _grads(lambda *t: kernels.batch_norm(t[0], None, None, t[1], t[2], True, config=config),
                             lambda *t: F.batch_norm(t[0], None, None, t[1], t[2], True), [x, w, b], 3, torch.float32)
    for o, t, name in zip(ours, theirs, ("dx", "dweight", "dbias")):
        assert_close(o, as_ref(t), tolerance(torch.float32, 90) * 4, f"{config} {name}")


def test_norm_backward_split_reductions(monkeypatch):
    """More programs than rows: the row sums and the parameter sums are split and recombined."""
    monkeypatch.setattr(knorm, "TARGET_PROGRAMS", 64)
    cfg = knorm.CONFIGS[2]  # short element tiles: several splits per row on these shapes
    x = _input((4, 3, 6, 6), torch.float32, 2) + 2
    view = knorm._batch_view(4)(x)
    assert knorm.plan_splits(view, cfg)[0] > 1
    lx = _input((4, 6, 6), torch.float32, 3)
    assert knorm._layer_splits(knorm._layer_view(3, 1)(lx), cfg)[0] > 1
    w, b = torch.rand(3) + 0.5, torch.randn(3)
    lw, lb = torch.rand(6) + 0.5, torch.randn(6)
    cases = [
        (lambda *t: kernels.batch_norm(t[0], None, None, t[1], t[2], True, config=cfg),
         lambda *t: F.batch_norm(t[0], None, None, t[1], t[2], True), [x, w, b], 144),
        (lambda *t: kernels.group_norm(t[0], 1, t[1], t[2], config=cfg), lambda *t: F.group_norm(t[0], 1, t[1], t[2]),
         [x, w, b], 108),
        (lambda *t: kernels.layer_norm(t[0], (6,), t[1], t[2], config=cfg),
         lambda *t: F.layer_norm(t[0], (6,), t[1], t[2]), [lx, lw, lb], 24),
    ]
    for i, (ours_fn, torch_fn, inputs, red) in enumerate(cases):
        ours, theirs, _ = _grads(ours_fn, torch_fn, inputs, i, torch.float32)
        for o, t, name in zip(ours, theirs, ("dx", "dweight", "dbias")):
            assert_close(o, as_ref(t), tolerance(torch.float32, red) * 4, f"case {i} {name}")


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_fused_relu_backward(training):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 5, 5, generator=g)
    wt, b = torch.rand(4, generator=g) + 0.5, torch.randn(4, generator=g)
    rm, rv = torch.randn(4, generator=g), torch.rand(4, generator=g) + 0.5
    ours, theirs, _ = _grads(
        lambda t, w_, b_: kernels.batch_norm(t, rm.clone(), rv.clone(), w_, b_, training, relu=True),
        lambda t, w_, b_: F.relu(F.batch_norm(t, rm.double(), rv.double(), w_, b_, training)), [x, wt, b], 2,
        torch.float32)
    for o, t, name in zip(ours, theirs, ("dx", "dw", "db")):
        assert_close(o, as_ref(t), tolerance(torch.float32, 75) * 4, name)


def test_norm_strided_input_and_grad_and_other_ranks():
    """A non-dense input (copied by the forward), an upstream gradient with other strides (a
    permuted one; a stride-0 expanded one), 2-D and 5-D inputs."""
    base = torch.randn(3, 8, 5, 6) * 2 + 1
    w4 = torch.rand(4) + 0.5
    cases = [
        (lambda t, w: kernels.batch_norm(t[:, ::2], None, None, w, None, True),
         lambda t, w: F.batch_norm(t[:, ::2], None, None, w, None, True), base, w4, 45),
        (lambda t, w: kernels.group_norm(t[:, ::2, :, 1::2], 2, w), lambda t, w: F.group_norm(t[:, ::2, :, 1::2], 2, w),
         base, w4, 30),
        (lambda t, w: kernels.layer_norm(t[..., ::2], (4, 3), w), lambda t, w: F.layer_norm(t[..., ::2], (4, 3), w),
         torch.randn(3, 5, 4, 6), torch.rand(4, 3) + 0.5, 12),
        (lambda t, w: kernels.batch_norm(t, None, None, w, None, True),
         lambda t, w: F.batch_norm(t, None, None, w, None, True), torch.randn(7, 4), w4, 7),
        (lambda t, w: kernels.instance_norm(t, weight=w), lambda t, w: F.instance_norm(t, weight=w),
         torch.randn(2, 4, 3, 2, 3), w4, 18),
    ]
    g = torch.Generator().manual_seed(9)
    for i, (ours_fn, torch_fn, x, w, red) in enumerate(cases):
        for expanded in (False, True):
            a, aw = _leaf(x, device=DEV), _leaf(w, device=DEV)
            t, tw = _leaf(x, torch.float64), _leaf(w, torch.float64)
            y_t = torch_fn(t, tw)
            if expanded:  # varies along one dim only (not the channel: dx would vanish), stride 0 elsewhere
                along = 0 if y_t.dim() == 2 else y_t.dim() - 1
                one = [1] * y_t.dim()
                one[along] = y_t.shape[along]
                dy = torch.randn(one, generator=g, dtype=torch.float64).expand(y_t.shape)
            else:  # dense, strides reversed
                dy = torch.randn(y_t.shape[::-1], generator=g, dtype=torch.float64).permute(*range(y_t.dim())[::-1])
            y_t.backward(dy)
            ours_fn(a, aw).backward(dy.float().to(DEV))
            what = f"case {i} expanded={expanded}"
            assert_close(a.grad, as_ref(t.grad), tolerance(torch.float32, red) * 4, f"{what} dx")
            assert_close(aw.grad, as_ref(tw.grad), tolerance(torch.float32, x.numel()) * 4, f"{what} dweight")


def test_batch_norm_running_stats_update_once_with_grad():
    x = torch.randn(4, 3, 5, 5)
    rm, rv = torch.zeros(3, device=DEV), torch.ones(3, device=DEV)
    rm_t, rv_t = torch.zeros(3), torch.ones(3)
    w = torch.ones(3, device=DEV, requires_grad=True)
    kernels.batch_norm(x.to(DEV).requires_grad_(), rm, rv, w, None, True).sum().backward()
    F.batch_norm(x.requires_grad_(), rm_t, rv_t, w.detach().cpu().clone().requires_grad_(), None, True)
    # both sides reduce 100 fp32 elements per channel (torch's own running stats are fp32 too)
    tol = 2 * tolerance(torch.float32, x.numel() // x.shape[1])
    assert_close(rm, as_ref(rm_t), tol, "running_mean")
    assert_close(rv, as_ref(rv_t), tol, "running_var")


def test_norm_references_match_torch():
    x = torch.randn(2, 6, 4, 5, dtype=torch.float64) * 2 + 1
    w, b = torch.rand(6, dtype=torch.float64) + 0.5, torch.randn(6, dtype=torch.float64)
    rm, rv = torch.randn(6, dtype=torch.float64), torch.rand(6, dtype=torch.float64) + 0.5
    cases = [
        (lambda t, w_, b_: F.batch_norm(t, None, None, w_, b_, True),
         lambda dy, w_: reference.batch_norm_backward(dy, x, None, None, w_, True)),
        (lambda t, w_, b_: F.batch_norm(t, rm, rv, w_, b_, False),
         lambda dy, w_: reference.batch_norm_backward(dy, x, rm, rv, w_, False)),
        (lambda t, w_, b_: F.instance_norm(t, None, None, w_, b_),
         lambda dy, w_: reference.instance_norm_backward(dy, x, None, None, w_)),
        (lambda t, w_, b_: F.instance_norm(t, rm, rv, w_, b_, use_input_stats=False),
         lambda dy, w_: reference.instance_norm_backward(dy, x, rm, rv, w_, use_input_stats=False)),
        (lambda t, w_, b_: F.group_norm(t, 3, w_, b_), lambda dy, w_: reference.group_norm_backward(dy, x, 3, w_)),
    ]
    for i, (fn, ref) in enumerate(cases):
        for affine in (True, False):
            leaves = [_leaf(t) for t in (x, w, b)] if affine else [_leaf(x), None, None]
            y = fn(*leaves)
            dy = torch.randn_like(y)
            y.backward(dy)
            got = ref(dy, w if affine else None)
            np.testing.assert_allclose(got[0], leaves[0].grad.numpy(), atol=1e-12, err_msg=f"case {i} dx")
            if affine:
                np.testing.assert_allclose(got[1], leaves[1].grad.numpy(), atol=1e-11, err_msg=f"case {i} dw")
                np.testing.assert_allclose(got[2], leaves[2].grad.numpy(), atol=1e-11, err_msg=f"case {i} db")
            else:
                assert got[1] is None
                np.testing.assert_allclose(got[2], dy.sum(dim=(0, 2, 3)).numpy(), atol=1e-11)
    lw, lb = torch.rand(4, 5, dtype=torch.float64) + 0.5, torch.randn(4, 5, dtype=torch.float64)
    for affine in (True, False):
        lx, lw_, lb_ = _leaf(x), (_leaf(lw) if affine else None), (_leaf(lb) if affine else None)
        y = F.layer_norm(lx, (4, 5), lw_, lb_)
        dy = torch.randn_like(y)
        y.backward(dy)
        dx, dw, db = reference.layer_norm_backward(dy, x, (4, 5), lw if affine else None)
        np.testing.assert_allclose(dx, lx.grad.numpy(), atol=1e-12)
        if affine:
            np.testing.assert_allclose(dw, lw_.grad.numpy(), atol=1e-11)
            np.testing.assert_allclose(db, lb_.grad.numpy(), atol=1e-11)
        else:
            assert dw is None and db.shape == (4, 5)


def test_public_norm_backward_launchers_match_references():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 4, 5, 6, generator=g) * 2
    dy = torch.randn(x.shape, generator=g)
    w = torch.rand(4, generator=g) + 0.5
    rm, rv = torch.randn(4, generator=g), torch.rand(4, generator=g) + 0.5
    xd, dyd, wd, rmd, rvd = (t.to(DEV) for t in (x, dy, w, rm, rv))
    xcl = xd.contiguous(memory_format=torch.channels_last)
    pairs = [
        (kernels.batch_norm_backward(dyd, xd, None, None, wd, True),
         reference.batch_norm_backward(dy, x, None, None, w, True), 90),
        (kernels.batch_norm_backward(dyd, xcl, rmd, rvd, wd, False),
         reference.batch_norm_backward(dy, x, rm, rv, w, False), 90),
        (kernels.instance_norm_backward(dyd, xd, None, None, wd),
         reference.instance_norm_backward(dy, x, None, None, w), 30),
        (kernels.instance_norm_backward(dyd, xd, rmd, rvd, None, False),
         reference.instance_norm_backward(dy, x, rm, rv, None, False), 30),
        (kernels.group_norm_backward(dyd, xcl, 2, wd), reference.group_norm_backward(dy, x, 2, w), 60),
        (kernels.layer_norm_backward(dyd, xd, (5, 6)), reference.layer_norm_backward(dy, x, (5, 6)), 30),
    ]
    for i, (got, want, red) in enumerate(pairs):
        for a, b in zip(got, want):
            assert (a is None) == (b is None), i
            if a is not None:
                assert_close(a, b, tolerance(torch.float32, red) * 4, f"public backward {i}")
    with pytest.raises(ValueError, match="grad_output"):
        kernels.layer_norm_backward(dyd[:1], xd, (5, 6))
    with pytest.raises(ValueError, match="evaluation mode"):
        kernels.batch_norm_backward(dyd, xd, None, None, wd, False)
    with pytest.raises(ValueError, match="num_groups"):
        kernels.group_norm_backward(dyd, xd, 3)


def test_norm_backward_empty_batch():
    for fn, shape in ((lambda t, w, b: kernels.layer_norm(t, (5,), w, b), (0, 3, 5)),
                      (lambda t, w, b: kernels.group_norm(t, 1, None, None), (0, 5, 4))):
        x = torch.randn(shape, device=DEV, requires_grad=True)
        w = torch.ones(5, device=DEV, requires_grad=True)
        b = torch.zeros(5, device=DEV, requires_grad=True)
        fn(x, w, b).sum().backward()
        assert x.grad.shape == x.shape


# ----------------------------------------------------------------------------------------------
# autograd contract
# ----------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Input #:UserWarning")  # fp32 on purpose: the kernels take no float64
def test_gradcheck_pools_and_norms_fp32():
    # fp32 gradcheck (the kernels take no float64): central differences with eps=1e-2 on
    # functions that are linear (avg and adaptive pools; max pool away from ties: continuous
    # inputs) or smooth (norms).  The numerical Jacobian's rounding error is ~u_fp32 * |y| / eps
    # ~ 1e-5 for |y| ~ 10 and the norms' second-order terms ~eps^2 * |d2y| ~ 1e-3 relative, so
    # atol/rtol 5e-3 covers both while a wrong gradient (errors of O(1)) still fails.
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(2, 3, 5, 5, generator=g) * 3).to(DEV).requires_grad_()
    w = (torch.rand(3, generator=g) + 0.5).to(DEV).requires_grad_()
    b = torch.randn(3, generator=g).to(DEV).requires_grad_()
    lw = (torch.rand(5, generator=g) + 0.5).to(DEV).requires_grad_()
    check = dict(eps=1e-2, atol=5e-3, rtol=5e-3, fast_mode=True)
    assert torch.autograd.gradcheck(lambda t: kernels.max_pool2d(t, 2, 1), (x,), **check)
    assert torch.autograd.gradcheck(lambda t: kernels.avg_pool2d(t, 3, 2, 1, True, False), (x,), **check)
    assert torch.autograd.gradcheck(lambda t: kernels.adaptive_avg_pool2d(t, (2, 3)), (x,), **check)
    assert torch.autograd.gradcheck(lambda t, w_, b_: kernels.batch_norm(t, None, None, w_, b_, True), (x, w, b),
                                    **check)
    assert torch.autograd.gradcheck(lambda t, w_: kernels.layer_norm(t, (5,), w_), (x, lw), **check)
    assert torch.autograd.gradcheck(lambda t, w_, b_: kernels.group_norm(t, 3, w_, b_), (x, w, b), **check)


def test_double_backward_raises():
    x = torch.randn(2, 3, 4, 4, device=DEV, requires_grad=True)
    for fn in (lambda t: kernels.batch_norm(t, None, None, None, None, True), lambda t: kernels.max_pool2d(t, 2),
               lambda t: kernels.avg_pool2d(t, 2)):
        (gx,) = torch.autograd.grad((fn(x) ** 2).sum(), x, create_graph=True)
        with pytest.raises(RuntimeError, match="differentiate twice|once_differentiable"):
            gx.sum().backward()


def test_frozen_parameters_get_none_and_indices_are_not_differentiable():
    x = torch.randn(2, 3, 4, 4, device=DEV, requires_grad=True)
    w = torch.ones(3, device=DEV)  # frozen
    b = torch.zeros(3, device=DEV, requires_grad=True)
    kernels.group_norm(x, 3, w, b).sum().backward()
    assert w.grad is None and x.grad is not None and b.grad is not None
    x.grad = None
    frozen_x = x.detach()
    kernels.batch_norm(frozen_x, None, None, w, b, True).sum().backward()  # only the bias wants a gradient
    assert frozen_x.grad is None and w.grad is None and b.grad is not None
    y, idx = kernels.max_pool2d(x, 2, return_indices=True)
    assert y.requires_grad and not idx.requires_grad and idx.dtype == torch.int64


def test_no_grad_calls_build_no_graph(monkeypatch):
    def refuse(*args, **kwargs):  # pragma: no cover - reached only on a bug
        raise AssertionError("an autograd Function ran although no gradient is wanted")

    for fn_cls in (kpool._MaxPoolFunction, kpool._AvgPoolFunction, kpool._AdaptiveAvgFunction, knorm._NormFunction):
        monkeypatch.setattr(fn_cls, "apply", refuse)
    x = torch.randn(2, 3, 4, 4, device=DEV)
    w = torch.ones(3, device=DEV)
    calls = (lambda t: kernels.max_pool2d(t, 2), lambda t: kernels.avg_pool1d(t[:, :, 0], 2),
             lambda t: kernels.adaptive_avg_pool2d(t, 1), lambda t: kernels.batch_norm(t, None, None, w, w, True),
             lambda t: kernels.layer_norm(t, (4,)), lambda t: kernels.group_norm(t, 3, w),
             lambda t: kernels.instance_norm(t))
    for call in calls:
        assert call(x).grad_fn is None  # nothing requires a gradient
        with torch.no_grad():
            assert call(x.clone().requires_grad_()).grad_fn is None  # grad mode off


def test_backward_64bit_offset_variants(monkeypatch):
    """The INT64 kernel variants (taken past 2**31 - 1 elements) give the same gradients."""
    monkeypatch.setattr(_common, "needs_int64", lambda *ts: True)
    x = _input((2, 4, 6, 5), torch.float32, 6, True) * 2 + 1
    w, b = torch.rand(4) + 0.5, torch.randn(4)
    lw, lb = torch.rand(6, 5) + 0.5, torch.randn(6, 5)
    rm, rv = torch.randn(4), torch.rand(4) + 0.5
    cases = [
        (lambda t, *p: kernels.max_pool2d(t, 3, 2, 1), lambda t, *p: F.max_pool2d(t, 3, 2, 1), [], 4),
        (lambda t, *p: kernels.avg_pool2d(t, 3, 2, 1, True, False), lambda t, *p: F.avg_pool2d(t, 3, 2, 1, True, False),
         [], 4),
        (lambda t, *p: kernels.adaptive_avg_pool2d(t, (4, 3)), lambda t, *p: F.adaptive_avg_pool2d(t, (4, 3)), [], 4),
        (lambda t, w_, b_: kernels.batch_norm(t, None, None, w_, b_, True, relu=True),
         lambda t, w_, b_: F.relu(F.batch_norm(t, None, None, w_, b_, True)), [w, b], 60),
        (lambda t, w_, b_: kernels.batch_norm(t, rm, rv, w_, b_, False),
         lambda t, w_, b_: F.batch_norm(t, rm.double(), rv.double(), w_, b_, False), [w, b], 60),
        (lambda t, w_, b_: kernels.group_norm(t, 2, w_, b_), lambda t, w_, b_: F.group_norm(t, 2, w_, b_), [w, b], 60),
        (lambda t, w_, b_: kernels.layer_norm(t, (6, 5), w_, b_), lambda t, w_, b_: F.layer_norm(t, (6, 5), w_, b_),
         [lw, lb], 30),
    ]
    for i, (ours_fn, torch_fn, params, red) in enumerate(cases):
        ours, theirs, _ = _grads(ours_fn, torch_fn, [x, *params], i, torch.float32)
        for o, t in zip(ours, theirs):
            assert_close(o, as_ref(t), tolerance(torch.float32, red) * 4, f"case {i}")


def test_backward_is_deterministic():
    x = _input((2, 4, 9, 9), torch.float16, 4, True)
    w = torch.rand(4) + 0.5
    outs = []
    for _ in range(2):
        a, aw = _leaf(x, device=DEV), _leaf(w, device=DEV)
        y = kernels.batch_norm(kernels.max_pool2d(a, 3, 1, 1), None, None, aw, None, True)
        y.backward(torch.ones_like(y) * torch.arange(y.numel(), device=DEV).reshape(y.shape).to(y.dtype) / y.numel())
        outs.append((a.grad.clone(), aw.grad.clone()))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
