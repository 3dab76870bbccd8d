"""conv2d's fused epilogue, ``act((conv + bias) * scale + shift + residual)``, against the float64
reference convolution followed by the same epilogue in float64: every algorithm (fused where
:data:`kernels.FUSED_EPILOGUE` says, applied after the kernel elsewhere), random geometry (stride,
dilation, groups, depthwise, 1x1, odd sizes), both layouts, fp32/fp16/bf16, outputs NaN-poisoned
(tests/conftest.py); gradients through the unfused path; bad arguments named."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from convbench import kernels, reference
from convbench.reference.geometry import ConvGeometry
from tests._compare import as_ref, assert_close, tolerance
from tests._operands import fresh_seed

DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _act64(z: np.ndarray, activation) -> np.ndarray:
    if activation == "relu":
        return np.maximum(z, 0.0)
    if activation == "relu6":
        return np.clip(z, 0.0, 6.0)
    if activation == "silu":
        return z / (1.0 + np.exp(-z))
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    return z


def _reference(x, w, b, geom_args, activation, scale, shift, residual) -> np.ndarray:
    y = reference.conv2d(as_ref(x), as_ref(w), None if b is None else as_ref(b), *geom_args)
    shape = (1, -1, 1, 1)
    if scale is not None:
        y = y * as_ref(scale).reshape(shape)
    if shift is not None:
        y = y + as_ref(shift).reshape(shape)
    if residual is not None:
        y = y + as_ref(residual)
    return _act64(y, activation)


def _random_case(rng, algorithm):
    """A random geometry, drawn inside what ``algorithm`` takes (Winograd: dense 3x3, stride and
    dilation 1; FFT: stride 1), so that every algorithm gets a case on every draw."""
    winograd = algorithm.startswith("winograd")
    groups = 1 if winograd else rng.choice([1, 1, 2, "dw"])
    c = rng.choice([3, 4, 8]) if groups != "dw" else rng.choice([4, 8])
    g = c if groups == "dw" else groups
    c = c if c % g == 0 else g * 2
    k = g * rng.choice([1, 2, 4]) if groups == "dw" else g * rng.choice([2, 4, 8])
    r = 3 if winograd else rng.choice([1, 3, 3, 5])
    stride = 1 if winograd or algorithm == "fft" else rng.choice([1, 1, 2])
    dilation = 1 if winograd else rng.choice([1, 1, 2])
    pad = rng.randint(0, r // 2 * dilation)
    h, w = rng.randint(r * dilation, 11), rng.randint(r * dilation, 11)
    return (rng.randint(1, 2), c, h, w), (k, c // g, r, r), (stride, pad, dilation, g)


@pytest.mark.parametrize("algorithm", kernels.CONV2D_ALGORITHMS)
@pytest.mark.parametrize("trial", range(2))
def test_epilogue_matches_float64(algorithm, trial):
    seed = fresh_seed()
    rng = random.Random(seed)
    for _ in range(50):  # a geometry the algorithm takes
        in_shape, w_shape, geom_args = _random_case(rng, algorithm)
        dtype = rng.choice(DTYPES)
        geom = ConvGeometry.from_shapes(in_shape, w_shape, *geom_args)
        if kernels.conv.BY_NAME[algorithm].unsupported(geom, dtype) is None:
            break
    else:
        pytest.skip(f"no geometry for {algorithm} drawn (seed {seed})")
    layout = rng.choice(["nchw", "nhwc"])
    activation = rng.choice([None, *kernels.ACTIVATIONS])
    parts = {p: rng.random() < 0.7 for p in ("bias", "scale", "shift", "residual")}
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(in_shape, generator=g).to(dtype)
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(w_shape, generator=g).to(dtype)
    k = w_shape[0]
    b = torch.randn(k, generator=g).to(dtype) if parts["bias"] else None
    scale = (torch.rand(k, generator=g) + 0.5).to(dtype) if parts["scale"] else None
    shift = torch.randn(k, generator=g).to(dtype) if parts["shift"] else None
    residual = torch.randn(geom.output_shape, generator=g).to(dtype) if parts["residual"] else None
    what = (f"seed={seed} {algorithm} {in_shape} w{w_shape} {geom_args} {dtype} {layout} act={activation} "
            + ",".join(p for p, on in parts.items() if on))
    y = kernels.conv2d(x, w, b, *geom_args, algorithm=algorithm, activation=activation, scale=scale,
                       shift=shift, residual=residual)
    ref = _reference(x, w, b, geom_args, activation, scale, shift, residual)
    scale_err = kernels.conv.BY_NAME[algorithm].error_scale
    # the conv's rounding, carried through scale (<= 1.5) and a residual/shift added in fp32
    tol = tolerance(dtype, geom.reduction_length, algorithm_scale=scale_err) * 2
    assert_close(y, ref, tol, what)
    assert y.dtype == dtype and y.shape == geom.output_shape
    if layout == "nhwc":
        assert y.is_contiguous(memory_format=torch.channels_last), what


@pytest.mark.parametrize("algorithm", kernels.FUSED_EPILOGUE)
def test_fused_algorithms_fuse(algorithm, monkeypatch):
    """The fused algorithms apply the epilogue in the kernel: the unfused torch path never runs."""
    def refuse(self, y):  # pragma: no cover - reached only on a bug
        raise AssertionError("the epilogue ran unfused")

    monkeypatch.setattr(kernels.conv._epilogue.Epilogue, "apply", refuse)
    x, w = torch.randn(1, 4, 6, 6), torch.randn(8, 4, 3, 3)
    res = torch.randn(1, 8, 6, 6)
    y = kernels.conv2d(x, w, None, 1, 1, algorithm=algorithm, activation="relu", residual=res,
                       scale=torch.full((8,), 0.5), shift=torch.ones(8))
    expect = torch.relu(F.conv2d(x, w, padding=1) * 0.5 + 1 + res)
    assert_close(y, as_ref(expect), tolerance(torch.float32, 36) * 2, algorithm)


def test_residual_in_another_layout_and_unbatched_input():
    x = torch.randn(2, 8, 5, 5).contiguous(memory_format=torch.channels_last)
    w = torch.randn(8, 8, 1, 1)
    res = torch.randn(2, 8, 5, 5)  # NCHW residual for a channels_last output
    y = kernels.conv2d(x, w, activation="relu6", residual=res)
    assert_close(y, as_ref(torch.clamp(F.conv2d(x, w) + res, 0, 6)), tolerance(torch.float32, 8) * 2)
    y1 = kernels.conv2d(x[0].contiguous(), w, residual=res[0], activation="sigmoid")
    assert y1.shape == (8, 5, 5)
    assert_close(y1, as_ref(torch.sigmoid(F.conv2d(x[:1], w) + res[:1])[0]), tolerance(torch.float32, 8) * 2)


@pytest.mark.parametrize("algorithm", kernels.FUSED_EPILOGUE)
def test_residual_whose_layouts_differ_only_in_size_one_strides(algorithm):
    """A 1x1 output: a channels_last output's strides are (K, 1, K, K), a contiguous residual's
    (K, 1, 1, 1), the same tensor layout; an expanded residual (stride 0) is copied.  Both once
    tripped an assertion in the launch."""
    x = torch.randn(2, 8, 3, 3).contiguous(memory_format=torch.channels_last)
    w = torch.randn(40, 8, 3, 3)
    for res in (torch.randn(2, 40, 1, 1), torch.randn(1, 40, 1, 1).expand(2, 40, 1, 1)):
        y = kernels.conv2d(x, w, residual=res, activation="relu", algorithm=algorithm)
        assert_close(y, as_ref(torch.relu(F.conv2d(x, w) + res)), tolerance(torch.float32, 72) * 2, algorithm)


def test_relu_keeps_nan_as_torch():
    x, w = torch.randn(1, 4, 4, 4), torch.randn(4, 4, 1, 1)
    res = torch.zeros(1, 4, 4, 4)
    res[0, 1, 2, 3] = float("nan")
    for algorithm in kernels.FUSED_EPILOGUE:
        y = kernels.conv2d(x, w, residual=res, activation="relu", algorithm=algorithm)
        assert torch.isnan(y).sum() == 1 and torch.isnan(y[0, 1, 2, 3]), algorithm


def test_gradients_flow_through_every_part():
    torch.manual_seed(3)
    x = torch.randn(2, 4, 6, 6, dtype=torch.float32)
    w = torch.randn(8, 4, 3, 3)
    b, scale, shift = torch.randn(8), torch.rand(8) + 0.5, torch.randn(8)
    res = torch.randn(2, 8, 6, 6)
    leaves = [t.clone().requires_grad_() for t in (x, w, b, scale, shift, res)]
    ours = [t.clone().requires_grad_() for t in (x, w, b, scale, shift, res)]
    y_ref = F.silu(F.conv2d(leaves[0], leaves[1], leaves[2], padding=1) * leaves[3][None, :, None, None]
                   + leaves[4][None, :, None, None] + leaves[5])
    y = kernels.conv2d(ours[0], ours[1], ours[2], 1, 1, activation="silu", scale=ours[3], shift=ours[4],
                       residual=ours[5])
    dy = torch.randn_like(y_ref)
    y_ref.backward(dy)
    y.backward(dy)
    for name, a, e in zip(("input", "weight", "bias", "scale", "shift", "residual"), ours, leaves):
        assert a.grad is not None, f"{name} lost its gradient"
        assert_close(a.grad, as_ref(e.grad), tolerance(torch.float32, 2 * 36 * 8) * 4, name)


@pytest.mark.parametrize("kwargs, match", [
    (dict(activation="gelu"), "activation"),
    (dict(scale=torch.ones(7)), "scale"),
    (dict(shift=torch.ones(8, 1)), "shift"),
    (dict(residual=torch.ones(1, 8, 5, 5)), "residual"),
    (dict(residual=torch.ones(1, 8, 6, 6, dtype=torch.float64)), "residual"),
])
def test_bad_epilogue_arguments_are_named(kwargs, match):
    x, w = torch.randn(1, 4, 6, 6), torch.randn(8, 4, 3, 3)
    with pytest.raises((ValueError, TypeError), match=match):
        kernels.conv2d(x, w, None, 1, 1, **kwargs)


def test_fused_static_specs_exist_and_do_not_spill():
    names = [s.name for s in kernels.static_specs()]
    for prefix in ("conv.direct.fused/", "conv.implicit_gemm.gather.fused/", "conv.implicit_gemm.1x1.fused/"):
        specs = [s for s in kernels.static_specs() if s.name.startswith(prefix)]
        assert specs and all(s.default for s in specs), prefix  # default: tests/test_static.py forbids spills
        assert all(s.constexprs["HAS_RES"] and s.constexprs["ACT"] == "silu" for s in specs), prefix
    assert len(names) == len(set(names))
