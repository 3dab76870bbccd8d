"""Convolution backward: the public gradient launchers and the autograd Functions.

For ``y = conv2d(x, w) + b`` with geometry ``geom``:

* dgrad ``dx = conv2d_input_grad(x.shape, w, dy)``: a transposed convolution of ``dy`` with the
  same weight, run by the phase kernel of :mod:`.transpose` (output-phase decomposition: a
  strided layer's gradient does no multiplies by inserted zeros);
* wgrad ``dw = conv2d_weight_grad(x, w.shape, dy)``: :mod:`.wgrad`'s implicit GEMM over N*P*Q,
  split over programs and reduced deterministically;
* ``db = dy.sum((0, 2, 3))``: :func:`.wgrad.launch_bias`;
* with one input channel per group (depthwise layers, channel multipliers), dgrad and wgrad are
  :mod:`.depthwise_grad`'s direct sums instead: channels along the tile, not one column of a
  16 x 16 GEMM tile per group.

``conv_transpose2d(x, w)`` is the adjoint of ``conv2d(., w)``, so its backward is the forward
pair the other way round: ``dx = conv2d(dy, w)`` (cropped to x's size when output_padding
left rows no input reached) and ``dw = conv2d_weight_grad(dy, w.shape, x)``.

The Functions save only what the backward uses (the weight for dx, the input for dw, nothing
for db) and compute only the gradients asked for (``ctx.needs_input_grad``).  They are
``once_differentiable``: a double backward raises instead of returning a silently wrong zero.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from convbench.reference.geometry import ConvGeometry, ConvTransposeGeometry

from .. import _common
from . import depthwise_grad, transpose, wgrad


def _check_grad_output(grad_output, geom: ConvGeometry, like: torch.Tensor, like_name: str) -> None:
    _common.check_tensor(grad_output, "grad_output", ndim=4)
    _common.check_same(like, like_name, grad_output, "grad_output")
    expected = (geom.n, geom.k, geom.p, geom.q)
    if tuple(grad_output.shape) != expected:
        raise ValueError(f"grad_output must have shape {expected} for this convolution, "
                         f"got {tuple(grad_output.shape)}")


def _size(value, name: str, rank: int) -> tuple[int, ...]:
    try:
        size = tuple(int(v) for v in value)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of {rank} ints, got {value!r}") from None
    if len(size) != rank or any(v < 0 for v in size):
        raise ValueError(f"{name} must be {rank} non-negative ints, got {value!r}")
    return size


def input_grad(dy, weight, geom: ConvGeometry, input_precision: str = "ieee") -> torch.Tensor:
    """dgrad for a validated geometry (launch level)."""
    if geom.n == 0 or geom.c == 0:
        return _common.empty_output(geom.input_shape, dy)
    if geom.k == 0 or dy.numel() == 0:
        return torch.zeros(geom.input_shape, dtype=dy.dtype, device=dy.device)
    if depthwise_grad.applies(geom):
        return depthwise_grad.launch_input_grad(dy, weight, geom)
    return transpose.launch_input_grad(dy, weight, geom, input_precision=input_precision)


def weight_grad(x, dy, geom: ConvGeometry, input_precision: str = "ieee", splits=None) -> torch.Tensor:
    """wgrad for a validated geometry (launch level)."""
    if dy.numel() == 0 or x.numel() == 0:
        return torch.zeros(geom.weight_shape, dtype=x.dtype, device=x.device)
    if depthwise_grad.applies(geom):
        return depthwise_grad.launch_weight_grad(x, dy, geom, splits=splits)
    return wgrad.launch(x, dy, geom, input_precision=input_precision, splits=splits)


def bias_grad(dy) -> torch.Tensor:
    if dy.numel() == 0:
        return torch.zeros((dy.shape[1],), dtype=dy.dtype, device=dy.device)
    return wgrad.launch_bias(dy)


def conv2d_input_grad(input_size, weight, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                      input_precision: str = "ieee") -> torch.Tensor:
    """``torch.nn.grad.conv2d_input``: the gradient of ``conv2d`` with respect to its input, in
    Triton (dgrad by the phase kernel).  ``input_size`` is (N, C, H, W) or, unbatched, (C, H, W)."""
    _common.check_tensor(weight, "weight", ndim=4)
    _common.check_input_precision(input_precision)
    size = _size(input_size, "input_size", len(input_size) if hasattr(input_size, "__len__") else 4)
    if len(size) == 3:
        _common.check_tensor(grad_output, "grad_output", ndim=3)
        return conv2d_input_grad((1, *size), weight, grad_output.unsqueeze(0), stride, padding, dilation, groups,
                                 input_precision=input_precision).squeeze(0)
    if len(size) != 4:
        raise ValueError(f"input_size must be (N, C, H, W) or (C, H, W), got {input_size!r}")
    geom = ConvGeometry.from_shapes(size, weight.shape, stride, padding, dilation, groups)
    _check_grad_output(grad_output, geom, weight, "weight")
    return input_grad(grad_output, weight, geom, input_precision)


def conv2d_weight_grad(input, weight_size, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                       input_precision: str = "ieee", splits: int | None = None) -> torch.Tensor:
    """``torch.nn.grad.conv2d_weight``: the gradient of ``conv2d`` with respect to its weight, in
    Triton (wgrad, an implicit GEMM over N*P*Q; ``splits`` overrides how many programs share
    that reduction).  ``input`` is (N, C, H, W) or, unbatched, (C, H, W)."""
    _common.check_tensor(input, "input")
    _common.check_input_precision(input_precision)
    if input.dim() == 3:
        _common.check_tensor(grad_output, "grad_output", ndim=3)
        return conv2d_weight_grad(input.unsqueeze(0), weight_size, grad_output.unsqueeze(0), stride, padding,
                                  dilation, groups, input_precision=input_precision, splits=splits)
    _common.check_tensor(input, "input", ndim=4)
    size = _size(weight_size, "weight_size", 4)
    geom = ConvGeometry.from_shapes(input.shape, size, stride, padding, dilation, groups)
    _check_grad_output(grad_output, geom, input, "input")
    return weight_grad(input, grad_output, geom, input_precision, splits)


def conv1d_input_grad(input_size, weight, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                      input_precision: str = "ieee") -> torch.Tensor:
    """``torch.nn.grad.conv1d_input`` over the (N, C, 1, L) view."""
    size = _size(input_size, "input_size", 3)
    _common.check_tensor(weight, "weight", ndim=3)
    _common.check_tensor(grad_output, "grad_output", ndim=3)
    geom = ConvGeometry.from_shapes_1d(size, weight.shape, stride, padding, dilation, groups)
    dx = input_grad(grad_output.unsqueeze(2), weight.unsqueeze(2), _checked(geom, grad_output, weight, "weight"),
                    input_precision)
    return dx.squeeze(2)


def conv1d_weight_grad(input, weight_size, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                       input_precision: str = "ieee") -> torch.Tensor:
    """``torch.nn.grad.conv1d_weight`` over the (N, C, 1, L) view."""
    _common.check_tensor(input, "input", ndim=3)
    _common.check_tensor(grad_output, "grad_output", ndim=3)
    k, cg, s = _size(weight_size, "weight_size", 3)
    geom = ConvGeometry.from_shapes_1d(input.shape, (k, cg, s), stride, padding, dilation, groups)
    dw = weight_grad(input.unsqueeze(2), grad_output.unsqueeze(2), _checked(geom, grad_output, input, "input"),
                     input_precision)
    return dw.squeeze(2)


def _checked(geom: ConvGeometry, grad_output, like, like_name) -> ConvGeometry:
    _check_grad_output(grad_output.unsqueeze(2), geom, like, like_name)
    return geom


# ----------------------------------------------------------------------------------------------
# autograd
# ----------------------------------------------------------------------------------------------
class Conv2dFunction(torch.autograd.Function):
    """``conv2d`` with Triton dgrad/wgrad/bias-grad.  ``forward_fn(x, w, b)`` runs the forward
    (the algorithm and config the caller resolved)."""

    @staticmethod
    def forward(ctx, x, weight, bias, geom, input_precision, forward_fn):
        ctx.geom, ctx.input_precision = geom, input_precision
        ctx.has_bias = bias is not None
        needs_x, needs_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        ctx.save_for_backward(x if needs_w else None, weight if needs_x else None)
        return forward_fn(x, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        geom, precision = ctx.geom, ctx.input_precision
        dx = input_grad(dy, weight, geom, precision) if ctx.needs_input_grad[0] else None
        dw = weight_grad(x, dy, geom, precision) if ctx.needs_input_grad[1] else None
        db = bias_grad(dy) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dx, dw, db, None, None, None


class ConvTranspose2dFunction(torch.autograd.Function):
    """``conv_transpose2d`` whose backward is ``conv2d`` (dx) and wgrad with the roles of input
    and gradient exchanged (dw).  ``conv2d_fn(dy, w, geom)`` runs the forward convolution."""

    @staticmethod
    def forward(ctx, x, weight, bias, geom: ConvTransposeGeometry, input_precision, forward_fn, conv2d_fn):
        ctx.geom, ctx.input_precision, ctx.conv2d_fn = geom, input_precision, conv2d_fn
        ctx.has_bias = bias is not None
        ctx.save_for_backward(x if ctx.needs_input_grad[1] else None, weight if ctx.needs_input_grad[0] else None)
        return forward_fn(x, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        g = ctx.geom
        # the adjoint convolution: dy (N, K, P, Q) through weight (C, K/g, R, S) seen as a conv weight
        adjoint = ConvGeometry(g.n, g.k, g.p, g.q, g.c, g.r, g.s, stride=g.stride,
                               padding=(g.padding[0], g.padding[0], g.padding[1], g.padding[1]),
                               dilation=g.dilation, groups=g.groups)
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = ctx.conv2d_fn(dy, weight, adjoint)
            if tuple(dx.shape[2:]) != (g.h, g.w):  # output_padding >= stride: rows no input reached
                dx = dx[:, :, :g.h, :g.w].contiguous(memory_format=_common.memory_format_of(dx))
        if ctx.needs_input_grad[1]:
            dw = weight_grad(dy, x, adjoint, ctx.input_precision)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = bias_grad(dy)
        return dx, dw, db, None, None, None, None
