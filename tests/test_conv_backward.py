"""Convolution backward: dgrad, wgrad and bias gradients through autograd and the public
gradient launchers, on geometries nobody chose, against torch's float64 autograd and the
float64 NumPy references.

Each random case draws C/g and K/g (depthwise included), groups, asymmetric kernels, stride,
dilation, int/pair/'same' padding, odd sizes, batch, layout and dtype from a fresh seed printed
on failure.  Gradient buffers are NaN-poisoned (conftest), so an element a backward kernel
forgets fails.  Tolerances: tests/_compare.py's model with the reduction each gradient sums
(dgrad: K/g x R x S, wgrad and bias: N x P x Q).
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from convbench import kernels, reference
from convbench.kernels.conv import BY_NAME, wgrad
from convbench.reference.geometry import ConvGeometry
from tests._compare import as_ref, assert_close, tolerance
from tests._operands import fresh_seed

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
DEV = "cuda" if torch.cuda.is_available() else "cpu"


def random_geometry(rng: random.Random, algorithm: str = "direct", max_pixels: int = 64):
    """torch-style conv2d arguments for a random geometry ``algorithm`` applies to."""
    for _ in range(1000):
        kind = rng.choice(["dense", "dense", "g2", "g3", "depthwise"])
        groups = {"dense": 1, "g2": 2, "g3": 3}.get(kind) or rng.randint(2, 8)
        cg = 1 if kind == "depthwise" else rng.randint(1, 24)
        kg = rng.choice([1, 2]) if kind == "depthwise" else rng.randint(1, 24)
        r, s = rng.randint(1, 5), rng.randint(1, 5)
        stride = (rng.randint(1, 3), rng.randint(1, 3))
        dilation = (rng.randint(1, 3), rng.randint(1, 2))
        padding = rng.choice([0, rng.randint(0, 2), (rng.randint(0, 2), rng.randint(0, 3)), "same"])
        if padding == "same":
            stride = (1, 1)
        if algorithm.startswith("winograd"):
            r = s = 3
            stride, dilation, groups, kind = (1, 1), (1, 1), 1, "dense"
            cg = max(cg, 1)
        elif algorithm == "fft":
            stride, dilation, groups = (1, 1), (1, 1), 1
        n = rng.randint(1, 3)
        h, w = rng.randint(1, 11), rng.randint(1, 11)
        try:
            geom = ConvGeometry.from_shapes((n, cg * groups, h, w), (kg * groups, cg, r, s), stride, padding,
                                            dilation, groups)
        except ValueError:
            continue
        if BY_NAME[algorithm].unsupported(geom, torch.float32) is None and geom.p * geom.q <= max_pixels:
            return geom, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    raise AssertionError(f"no geometry for {algorithm}")


def operands(geom: ConvGeometry, dtype, seed: int, channels_last: bool, bias: bool = True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(geom.input_shape, generator=g).to(dtype)
    w = (torch.randn(geom.weight_shape, generator=g) / np.sqrt(geom.c_per_group * geom.r * geom.s)).to(dtype)
    b = torch.randn(geom.k, generator=g).to(dtype) if bias else None
    dy = torch.randn((geom.n, geom.k, geom.p, geom.q), generator=g).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        dy = dy.contiguous(memory_format=torch.channels_last)
    return x, w, b, dy


def torch_grads(x, w, b, dy, args, op=F.conv2d):
    """torch's float64 autograd on the same (rounded) values: the oracle."""
    leaves = [t.detach().double().requires_grad_() if t is not None else None for t in (x, w, b)]
    out = op(leaves[0], leaves[1], leaves[2], **args)
    out.backward(dy.double())
    return out.detach(), [t.grad if t is not None else None for t in leaves]


def tolerances(geom: ConvGeometry, dtype, precision="ieee"):
    red_dx = geom.k_per_group * geom.r * geom.s
    red_dw = geom.n * geom.p * geom.q
    return (tolerance(dtype, red_dx, input_precision=precision), tolerance(dtype, red_dw, input_precision=precision))


def check_grads(x, w, b, dy, args, dtype, geom, what, algorithm="auto", precision="ieee"):
    xs, ws = x.to(DEV).requires_grad_(), w.to(DEV).requires_grad_()
    bs = b.to(DEV).requires_grad_() if b is not None else None
    out = kernels.conv2d(xs, ws, bs, **args, algorithm=algorithm, input_precision=precision)
    assert out.grad_fn is not None, f"{what}: conv2d output has no gradient path"
    out.backward(dy.to(DEV))
    _, (gx, gw, gb) = torch_grads(x, w, b, dy, args)
    tol_dx, tol_dw = tolerances(geom, dtype, precision)
    assert xs.grad.dtype == dtype and ws.grad.dtype == dtype
    assert_close(xs.grad, as_ref(gx), tol_dx, f"{what} dx")
    assert_close(ws.grad, as_ref(gw), tol_dw, f"{what} dw")
    if b is not None:
        assert_close(bs.grad, as_ref(gb), tol_dw, f"{what} db")


# ----------------------------------------------------------------------------------------------
# references
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("trial", range(6))
def test_reference_grads_match_torch_float64_autograd(trial):
    seed = fresh_seed()
    rng = random.Random(seed)
    geom, args = random_geometry(rng, max_pixels=400)
    x, w, _, dy = operands(geom, torch.float64, seed, False, bias=False)
    _, (gx, gw, _) = torch_grads(x, w, None, dy, args)
    what = f"seed={seed} {geom}"
    dx = reference.conv2d_input_grad(x.shape, w, dy, **args)
    dw = reference.conv2d_weight_grad(x, w.shape, dy, **args)
    np.testing.assert_allclose(dx, gx.numpy(), rtol=1e-10, atol=1e-10, err_msg=what)
    np.testing.assert_allclose(dw, gw.numpy(), rtol=1e-10, atol=1e-10, err_msg=what)


def test_reference_conv1d_grads_and_bad_shapes():
    x = torch.randn(2, 4, 13, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 2, 3, dtype=torch.float64, requires_grad=True)
    y = F.conv1d(x, w, None, 2, 1, 2, 2)
    dy = torch.randn_like(y)
    y.backward(dy)
    np.testing.assert_allclose(reference.conv1d_input_grad(x.shape, w, dy, 2, 1, 2, 2), x.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(reference.conv1d_weight_grad(x, w.shape, dy, 2, 1, 2, 2), w.grad.numpy(), atol=1e-12)
    with pytest.raises(ValueError, match="grad_output must have shape"):
        reference.conv2d_input_grad((1, 2, 5, 5), np.ones((3, 2, 3, 3)), np.ones((1, 3, 4, 4)))


# ----------------------------------------------------------------------------------------------
# Triton gradients through autograd, every algorithm's forward
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", list(kernels.CONV2D_ALGORITHMS))
@pytest.mark.parametrize("trial", range(2))
def test_autograd_random_geometry(algorithm, trial):
    seed = fresh_seed()
    rng = random.Random(seed)
    geom, args = random_geometry(rng, algorithm)
    dtype = rng.choice(DTYPES)
    channels_last = rng.random() < 0.5
    x, w, b, dy = operands(geom, dtype, seed, channels_last, bias=rng.random() < 0.7)
    check_grads(x, w, b, dy, args, dtype, geom, f"seed={seed} {algorithm} {geom} {dtype} cl={channels_last}",
                algorithm=algorithm)


@pytest.mark.parametrize("case", [
    # (N, C, H, W, K, R, S, stride, padding, dilation, groups): stride-2 ResNet downsampling, a
    # strided 1x1 projection, depthwise stride 2, a dilated layer, the RGB stem, odd sizes
    (2, 16, 9, 9, 32, 3, 3, 2, 1, 1, 1),
    (2, 32, 7, 7, 16, 1, 1, 2, 0, 1, 1),
    (1, 12, 9, 11, 12, 3, 3, 2, 1, 1, 12),
    (1, 8, 10, 10, 8, 3, 3, 1, 2, 2, 1),
    (1, 3, 17, 17, 16, 7, 7, 2, 3, 1, 1),
    (3, 6, 5, 7, 9, 2, 4, (3, 1), (1, 2), (1, 2), 3),
])
@pytest.mark.parametrize("dtype,channels_last", [(torch.float32, False), (torch.float16, True),
                                                 (torch.bfloat16, False)])
def test_autograd_named_layers(case, dtype, channels_last):
    n, c, h, w_, k, r, s, stride, padding, dilation, groups = case
    args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    geom = ConvGeometry.from_shapes((n, c, h, w_), (k, c // groups, r, s), stride, padding, dilation, groups)
    seed = fresh_seed()
    x, w, b, dy = operands(geom, dtype, seed, channels_last)
    check_grads(x, w, b, dy, args, dtype, geom, f"seed={seed} {geom} {dtype}")


def test_autograd_tf32_backward_uses_the_forward_precision():
    geom = ConvGeometry.from_shapes((2, 16, 6, 6), (16, 16, 3, 3), 1, 1)
    x, w, b, dy = operands(geom, torch.float32, 7, False)
    check_grads(x, w, b, dy, dict(stride=1, padding=1, dilation=1, groups=1), torch.float32, geom, "tf32",
                precision="tf32")


# ----------------------------------------------------------------------------------------------
# the public gradient launchers (torch.nn.grad's signatures)
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("splits", [1, 3, 7])
def test_weight_grad_split_reduction_is_correct_and_deterministic(splits):
    # ResNet's last-stage shape in miniature: a long N*P*Q reduction, a small GEMM
    geom = ConvGeometry.from_shapes((4, 8, 9, 9), (8, 8, 3, 3), 1, 1)
    seed = fresh_seed()
    x, w, _, dy = operands(geom, torch.float32, seed, False, bias=False)
    x, dy = x.to(DEV), dy.to(DEV)
    first = kernels.conv2d_weight_grad(x, w.shape, dy, 1, 1, splits=splits)
    again = kernels.conv2d_weight_grad(x, w.shape, dy, 1, 1, splits=splits)
    assert torch.equal(first, again), "the split reduction must be deterministic"
    expected = reference.conv2d_weight_grad(as_ref(x), w.shape, as_ref(dy), 1, 1)
    assert_close(first, expected, tolerance(torch.float32, geom.n * geom.p * geom.q), f"seed={seed} splits={splits}")


def test_split_heuristic_splits_long_reductions_of_small_gemms():
    small = ConvGeometry.from_shapes((32, 512, 7, 7), (512, 512, 3, 3), 1, 1)
    cfg = wgrad.default_config(small, torch.float16)
    assert wgrad.split_count(small, cfg, 32 * 49) >= 1
    late = ConvGeometry.from_shapes((256, 64, 7, 7), (64, 64, 1, 1))
    cfg = wgrad.default_config(late, torch.float16)
    assert wgrad.split_count(late, cfg, 256 * 49) > 1
    assert wgrad.split_count(late, cfg, 16) == 1  # too short to split


@pytest.mark.parametrize("trial", range(3))
def test_public_grad_launchers_match_torch_nn_grad(trial):
    seed = fresh_seed()
    rng = random.Random(seed)
    geom, args = random_geometry(rng)
    dtype = rng.choice(DTYPES)
    x, w, _, dy = operands(geom, dtype, seed, rng.random() < 0.5, bias=False)
    x, w, dy = x.to(DEV), w.to(DEV), dy.to(DEV)
    dx = kernels.conv2d_input_grad(x.shape, w, dy, **args)
    dw = kernels.conv2d_weight_grad(x, w.shape, dy, **args)
    if isinstance(args["padding"], str):  # torch.nn.grad takes no 'same'/'valid'; autograd does
        _, (ex, ew, _) = torch_grads(x.cpu(), w.cpu(), None, dy.cpu(), args)
    else:
        ex = torch.nn.grad.conv2d_input(x.shape, w.double().cpu(), dy.double().cpu(), **args)
        ew = torch.nn.grad.conv2d_weight(x.double().cpu(), w.shape, dy.double().cpu(), **args)
    tol_dx, tol_dw = tolerances(geom, dtype)
    assert_close(dx, as_ref(ex), tol_dx, f"seed={seed} {geom} {dtype} dx")
    assert_close(dw, as_ref(ew), tol_dw, f"seed={seed} {geom} {dtype} dw")


def test_public_grad_launchers_check_their_arguments():
    x = torch.randn(1, 4, 6, 6, device=DEV)
    w = torch.randn(8, 4, 3, 3, device=DEV)
    with pytest.raises(ValueError, match="grad_output must have shape"):
        kernels.conv2d_input_grad(x.shape, w, torch.randn(1, 8, 5, 5, device=DEV))
    with pytest.raises(ValueError, match="weight_size"):
        kernels.conv2d_weight_grad(x, (8, 4, 3), torch.randn(1, 8, 4, 4, device=DEV))
    with pytest.raises(ValueError, match="splits"):
        kernels.conv2d_weight_grad(x, w.shape, torch.randn(1, 8, 4, 4, device=DEV), splits=0)
    with pytest.raises(TypeError, match="grad_output"):
        kernels.conv2d_input_grad(x.shape, w, torch.randn(1, 8, 4, 4, device=DEV).double())


def test_conv1d_grads_public_and_autograd():
    seed = fresh_seed()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 6, 19, generator=g)
    w = torch.randn(9, 2, 4, generator=g) / 3
    b = torch.randn(9, generator=g)
    args = dict(stride=2, padding=3, dilation=2, groups=3)
    dy = torch.randn(F.conv1d(x, w, b, **args).shape, generator=g)
    ref_out, (gx, gw, gb) = torch_grads(x, w, b, dy, args, op=F.conv1d)
    xs, ws, bs = (t.to(DEV).requires_grad_() for t in (x, w, b))
    kernels.conv1d(xs, ws, bs, **args).backward(dy.to(DEV))
    tol = tolerance(torch.float32, 2 * 19)
    assert_close(xs.grad, as_ref(gx), tol, f"seed={seed} conv1d dx")
    assert_close(ws.grad, as_ref(gw), tol, f"seed={seed} conv1d dw")
    assert_close(bs.grad, as_ref(gb), tol, f"seed={seed} conv1d db")
    assert_close(kernels.conv1d_input_grad(x.shape, w.to(DEV), dy.to(DEV), **args), as_ref(gx), tol, "conv1d_input_grad")
    assert_close(kernels.conv1d_weight_grad(x.to(DEV), w.shape, dy.to(DEV), **args), as_ref(gw), tol,
                 "conv1d_weight_grad")


def test_unbatched_and_empty_inputs_have_gradients():
    w = torch.randn(4, 3, 3, 3, device=DEV, requires_grad=True)
    x = torch.randn(3, 6, 6, device=DEV, requires_grad=True)
    kernels.conv2d(x, w, padding=1).sum().backward()
    xr, wr = x.detach().cpu().double().requires_grad_(), w.detach().cpu().double().requires_grad_()
    F.conv2d(xr, wr, padding=1).sum().backward()
    assert_close(x.grad, as_ref(xr.grad), tolerance(torch.float32, 36), "unbatched dx")
    assert_close(w.grad, as_ref(wr.grad), tolerance(torch.float32, 36), "unbatched dw")
    empty = torch.randn(0, 3, 6, 6, device=DEV, requires_grad=True)
    w.grad = None
    kernels.conv2d(empty, w).sum().backward()
    assert empty.grad.shape == empty.shape and w.grad is not None and torch.count_nonzero(w.grad) == 0


# ----------------------------------------------------------------------------------------------
# conv_transpose2d backward
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", [
    # (N, C, H, W, K, R, S, stride, padding, output_padding, dilation, groups)
    (2, 6, 5, 4, 4, 3, 3, 2, 1, 1, 1, 1),
    (1, 4, 4, 5, 6, 4, 2, (2, 3), (1, 0), (0, 2), 1, 2),
    (1, 3, 5, 5, 2, 3, 3, 1, 0, 1, 2, 1),   # output_padding >= stride (dilation 2): rows no input reached
    (2, 16, 4, 4, 16, 3, 3, 2, 1, 1, 1, 1),  # the tl.dot path
])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_conv_transpose2d_backward(case, dtype):
    n, c, h, w_, k, r, s, stride, padding, output_padding, dilation, groups = case
    seed = fresh_seed()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w_, generator=g).to(dtype)
    w = (torch.randn(c, k // groups, r, s, generator=g) / np.sqrt(r * s)).to(dtype)
    b = torch.randn(k, generator=g).to(dtype)
    args = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation)
    out = F.conv_transpose2d(x.double(), w.double(), b.double(), **args)
    dy = torch.randn(out.shape, generator=g).to(dtype)
    _, (gx, gw, gb) = torch_grads(x, w, b, dy, args, op=F.conv_transpose2d)
    xs, ws, bs = (t.to(DEV).requires_grad_() for t in (x, w, b))
    kernels.conv_transpose2d(xs, ws, bs, **args).backward(dy.to(DEV))
    red = max(k, c) * r * s
    what = f"seed={seed} {case} {dtype}"
    assert_close(xs.grad, as_ref(gx), tolerance(dtype, red), f"{what} dx")
    assert_close(ws.grad, as_ref(gw), tolerance(dtype, n * out.shape[2] * out.shape[3]), f"{what} dw")
    assert_close(bs.grad, as_ref(gb), tolerance(dtype, n * out.shape[2] * out.shape[3]), f"{what} db")


# ----------------------------------------------------------------------------------------------
# autograd contract
# ----------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Input #:UserWarning")  # fp32 on purpose: the kernels take no float64
def test_gradcheck_conv2d_fp32():
    # conv2d is linear in each argument, so central differences are exact up to rounding: the
    # numerical Jacobian's error is about u_fp32 * |y| / eps ~ 1e-6 at eps=1e-2 for these sizes
    # (|y| < 10), well inside atol=1e-3 with rtol=1e-3.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 5, 5, generator=g).to(DEV).requires_grad_()
    w = torch.randn(4, 3, 3, 2, generator=g).to(DEV).requires_grad_()
    b = torch.randn(4, generator=g).to(DEV).requires_grad_()

    def f(x, w, b):
        return kernels.conv2d(x, w, b, stride=(2, 1), padding=(1, 0), dilation=(1, 2))

    assert torch.autograd.gradcheck(f, (x, w, b), eps=1e-2, atol=1e-3, rtol=1e-3, fast_mode=True)


def test_double_backward_raises_clearly():
    x = torch.randn(1, 2, 4, 4, device=DEV, requires_grad=True)
    w = torch.randn(2, 2, 3, 3, device=DEV, requires_grad=True)
    # a loss whose gradient depends on the output, as in a gradient penalty
    (gx,) = torch.autograd.grad((kernels.conv2d(x, w) ** 2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice|once_differentiable"):
        gx.sum().backward()


def test_only_requested_gradients_are_computed(monkeypatch):
    calls = []
    real = wgrad.launch
    monkeypatch.setattr(wgrad, "launch", lambda *a, **k: calls.append("wgrad") or real(*a, **k))
    x = torch.randn(1, 4, 5, 5, device=DEV, requires_grad=True)
    w = torch.randn(4, 4, 3, 3, device=DEV)  # frozen weight
    kernels.conv2d(x, w, padding=1).sum().backward()
    assert x.grad is not None and w.grad is None and calls == []
    x2 = torch.randn(1, 4, 5, 5, device=DEV)
    w2 = w.clone().requires_grad_()
    kernels.conv2d(x2, w2, padding=1).sum().backward()
    assert w2.grad is not None and calls == ["wgrad"]


def test_no_grad_calls_build_no_graph():
    x = torch.randn(1, 2, 4, 4, device=DEV, requires_grad=True)
    w = torch.randn(2, 2, 3, 3, device=DEV, requires_grad=True)
    with torch.no_grad():
        assert kernels.conv2d(x, w).grad_fn is None
    assert kernels.conv2d(x.detach(), w.detach()).grad_fn is None


def test_wgrad_static_specs_cover_every_config_and_dtype():
    specs = wgrad.static_specs()
    names = [s.name for s in specs]
    assert len(names) == len(set(names))
    gemm = [s for s in specs if s.fn is wgrad._wgrad_kernel]
    assert {s.name.split("/")[-1] for s in gemm} == {str(c) for c in wgrad.CONFIGS}
    for label in ("tf32", "fp16", "bf16"):  # a default per geometry (dense, grouped) in every dtype
        assert {s.name.split("/")[2] for s in gemm if s.default and f"/{label}/" in s.name} == {"dense", "grouped"}
    assert all(s.expect_tensor_cores for s in gemm)
    # wgmma only where the tile has a warpgroup's 64 rows (test_static checks HGMMA vs HMMA on sm_90)
    by_name = {str(c): c for c in wgrad.CONFIGS}
    assert all(s.expect_wgmma == (by_name[s.name.split("/")[-1]].block_m >= 64) for s in gemm)
    assert not any(s.expect_tensor_cores for s in specs if s not in gemm)


# ----------------------------------------------------------------------------------------------
# C/g == 1 (depthwise, channel multipliers, single-channel stems): the direct-sum kernels
# ----------------------------------------------------------------------------------------------
def random_depthwise_geometry(rng: random.Random):
    """torch-style conv2d arguments of a random C/g == 1 geometry: channels across several
    channel tiles, multipliers, any stride/dilation/padding, odd sizes."""
    for _ in range(1000):
        c, m = rng.choice([1, 3, 7, 33, 70]), rng.choice([1, 1, 2, 3])
        r, s = rng.randint(1, 5), rng.randint(1, 5)
        stride, dilation = (rng.randint(1, 3), rng.randint(1, 3)), (rng.randint(1, 3), rng.randint(1, 2))
        padding = (rng.randint(0, 3), rng.randint(0, 2))
        n, h, w = rng.randint(1, 3), rng.randint(1, 13), rng.randint(1, 13)
        try:
            geom = ConvGeometry.from_shapes((n, c, h, w), (c * m, 1, r, s), stride, padding, dilation, c)
        except ValueError:
            continue
        return geom, dict(stride=stride, padding=padding, dilation=dilation, groups=c)
    raise AssertionError("no depthwise geometry")


def _no_gemm_backward(monkeypatch):
    """Make the GEMM-shaped backward kernels fail if a C/g == 1 gradient reaches them."""
    from convbench.kernels.conv import transpose

    def refuse(*args, **kwargs):
        raise AssertionError("a C/g == 1 gradient went to a GEMM-shaped backward kernel")

    monkeypatch.setattr(transpose, "launch_input_grad", refuse)
    monkeypatch.setattr(wgrad, "launch", refuse)


@pytest.mark.parametrize("trial", range(4))
def test_depthwise_grads_take_the_direct_kernels_and_match_torch(trial, monkeypatch):
    _no_gemm_backward(monkeypatch)
    seed = fresh_seed()
    rng = random.Random(seed)
    geom, args = random_depthwise_geometry(rng)
    dtype, channels_last = rng.choice(DTYPES), rng.random() < 0.5
    x, w, b, dy = operands(geom, dtype, seed, channels_last, bias=rng.random() < 0.5)
    what = f"seed={seed} {geom} {dtype} cl={channels_last}"
    check_grads(x, w, b, dy, args, dtype, geom, what)  # through autograd
    dx = kernels.conv2d_input_grad(x.shape, w.to(DEV), dy.to(DEV), **args)  # the public launchers
    dw = kernels.conv2d_weight_grad(x.to(DEV), w.shape, dy.to(DEV), **args)
    _, (gx, gw, _) = torch_grads(x, w, None, dy, args)
    tol_dx, tol_dw = tolerances(geom, dtype)
    assert_close(dx, as_ref(gx), tol_dx, f"{what} dx")
    assert_close(dw, as_ref(gw), tol_dw, f"{what} dw")


@pytest.mark.parametrize("channels_last", [False, True])
def test_every_depthwise_grad_config_is_correct_in_either_layout(channels_last):
    from convbench.kernels.conv import depthwise_grad

    # strided, dilated, a multiplier of 2, more channels than one 64-wide tile
    geom = ConvGeometry.from_shapes((1, 65, 7, 5), (130, 1, 3, 3), (2, 1), (1, 2), (1, 2), 65)
    seed = fresh_seed()
    x, w, _, dy = operands(geom, torch.float32, seed, channels_last, bias=False)
    args = dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=65)
    _, (gx, gw, _) = torch_grads(x, w, None, dy, args)
    tol_dx, tol_dw = tolerances(geom, torch.float32)
    x, w, dy = x.to(DEV), w.to(DEV), dy.to(DEV)
    for cfg in depthwise_grad.DEPTHWISE_CONFIGS:
        dx = depthwise_grad.launch_input_grad(dy, w, geom, config=cfg)
        assert_close(dx, as_ref(gx), tol_dx, f"seed={seed} dgrad {cfg} cl={channels_last}")
    for cfg in depthwise_grad.WGRAD_CONFIGS:
        dw = depthwise_grad.launch_weight_grad(x, dy, geom, config=cfg)
        assert_close(dw, as_ref(gw), tol_dw, f"seed={seed} wgrad {cfg} cl={channels_last}")
    with pytest.raises(ValueError, match="C/g == 1"):
        depthwise_grad.launch_weight_grad(x, dy, ConvGeometry.from_shapes((2, 4, 5, 5), (4, 2, 3, 3), groups=2))
    with pytest.raises(ValueError, match="not a depthwise wgrad config"):
        depthwise_grad.launch_weight_grad(x, dy, geom, config=wgrad.CONFIGS[0])


@pytest.mark.parametrize("splits", [1, 3, 7])
def test_depthwise_wgrad_split_reduction_is_correct_and_deterministic(splits):
    geom = ConvGeometry.from_shapes((3, 5, 12, 12), (10, 1, 3, 3), 1, 1, 1, 5)
    seed = fresh_seed()
    x, w, _, dy = operands(geom, torch.float16, seed, False, bias=False)
    x, dy = x.to(DEV), dy.to(DEV)
    first = kernels.conv2d_weight_grad(x, w.shape, dy, 1, 1, 1, 5, splits=splits)
    assert torch.equal(first, kernels.conv2d_weight_grad(x, w.shape, dy, 1, 1, 1, 5, splits=splits))
    expected = reference.conv2d_weight_grad(as_ref(x), w.shape, as_ref(dy), 1, 1, 1, 5)
    assert_close(first, expected, tolerance(torch.float16, geom.n * geom.p * geom.q), f"seed={seed} splits={splits}")


def test_depthwise_grad_static_specs_cover_every_config_and_dtype():
    from convbench.kernels.conv import depthwise_grad

    specs = depthwise_grad.static_specs()
    names = [s.name for s in specs]
    assert len(names) == len(set(names)) and set(names) <= {s.name for s in kernels.static_specs()}
    dgrad = {s.name.split("/")[-1] for s in specs if s.fn is depthwise_grad._dgrad_kernel}
    wg = {s.name.split("/")[-1] for s in specs if s.fn is depthwise_grad._wgrad_kernel}
    assert dgrad == {str(c) for c in depthwise_grad.DEPTHWISE_CONFIGS}
    assert wg == {str(c) for c in depthwise_grad.WGRAD_CONFIGS}
    for dtype in ("fp32", "fp16", "bf16"):  # a default per kernel and layout in every dtype
        defaults = {(s.fn, s.name.split("/")[3]) for s in specs if s.default and f"/{dtype}/s1/" in s.name}
        assert len(defaults) == 4, (dtype, defaults)
