"""Direct convolution references in float64: sliding windows and one tensor contraction.

``conv2d`` is the definition itself: pad, take every (dilated, strided) R x S window of the
input with ``sliding_window_view``, and contract it with the weight over (C/g, R, S), group by
group.  Everything else in convbench is checked against this function.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .geometry import ConvGeometry


def as_f64(array, name: str) -> np.ndarray:
    """Any array-like (NumPy, torch CPU tensor, list) as a float64 ndarray."""
    if hasattr(array, "detach"):  # a torch tensor: no torch import needed here
        array = array.detach().cpu().double().numpy()
    out = np.asarray(array, dtype=np.float64)
    if out.dtype != np.float64:
        raise TypeError(f"{name} must be numeric, got dtype {out.dtype}")
    return out


def pad_input(x: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    top, bottom, left, right = geom.padding
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))


def input_windows(x: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """View of shape (N, C, P, Q, R, S): the input tap each output pixel meets."""
    (sh, sw), (dh, dw) = geom.stride, geom.dilation
    xp = pad_input(x, geom)
    span_h, span_w = dh * (geom.r - 1) + 1, dw * (geom.s - 1) + 1
    win = sliding_window_view(xp, (span_h, span_w), axis=(2, 3))
    return win[:, :, : (geom.p - 1) * sh + 1 : sh, : (geom.q - 1) * sw + 1 : sw, ::dh, ::dw]


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """``torch.nn.functional.conv2d`` in float64 (padding: int, pair, 'same' or 'valid')."""
    x, wt = as_f64(input, "input"), as_f64(weight, "weight")
    geom = ConvGeometry.from_shapes(x.shape, wt.shape, stride, padding, dilation, groups)
    return _finish(direct(x, wt, geom), bias, geom)


def direct(x: np.ndarray, wt: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """The sliding-window contraction for an already validated geometry (no bias)."""
    win = input_windows(x, geom)
    g, cg, kg = geom.groups, geom.c_per_group, geom.k_per_group
    win = win.reshape(geom.n, g, cg, geom.p, geom.q, geom.r, geom.s)
    wg = wt.reshape(g, kg, cg, geom.r, geom.s)
    out = np.einsum("ngcpqrs,gkcrs->ngkpq", win, wg, optimize=True)
    return out.reshape(geom.n, geom.k, geom.p, geom.q)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """``torch.nn.functional.conv1d`` in float64, as a 2-D convolution with H == R == 1."""
    x, wt = as_f64(input, "input"), as_f64(weight, "weight")
    geom = ConvGeometry.from_shapes_1d(x.shape, wt.shape, stride, padding, dilation, groups)
    out = _finish(direct(x[:, :, None, :], wt[:, :, None, :], geom), bias, geom)
    return out[:, :, 0, :]


def _finish(out: np.ndarray, bias, geom) -> np.ndarray:
    if bias is None:
        return out
    b = as_f64(bias, "bias")
    if b.shape != (geom.k,):
        raise ValueError(f"bias must have shape ({geom.k},), got {b.shape}")
    return out + b[None, :, None, None]


# ----------------------------------------------------------------------------------------------
# backward: the signatures of torch.nn.grad.conv2d_input / conv2d_weight
# ----------------------------------------------------------------------------------------------
def _grad_geometry(input_shape, weight_shape, grad_output: np.ndarray, stride, padding, dilation, groups):
    geom = ConvGeometry.from_shapes(tuple(input_shape), tuple(weight_shape), stride, padding, dilation, groups)
    expected = (geom.n, geom.k, geom.p, geom.q)
    if grad_output.shape != expected:
        raise ValueError(f"grad_output must have shape {expected} for input {tuple(input_shape)} and weight "
                         f"{tuple(weight_shape)}, got {grad_output.shape}")
    return geom


def conv2d_input_grad(input_size, weight, grad_output, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """d(loss)/d(input) of ``conv2d`` in float64: every output gradient ``dy[n, k, p, q]`` flows
    back to the input tap it met, ``x[p*stride - pad + r*dil]``, through ``weight[k, c, r, s]``
    (the adjoint: R*S channel contractions scattered into strided slices of the padded input)."""
    wt, dy = as_f64(weight, "weight"), as_f64(grad_output, "grad_output")
    size = tuple(int(v) for v in input_size)
    if len(size) != 4:
        raise ValueError(f"input_size must be (N, C, H, W), got {input_size!r}")
    geom = _grad_geometry(size, wt.shape, dy, stride, padding, dilation, groups)
    (sh, sw), (dh, dw) = geom.stride, geom.dilation
    top, bottom, left, right = geom.padding
    g, cg, kg = geom.groups, geom.c_per_group, geom.k_per_group
    buf = np.zeros((geom.n, g, cg, geom.h + top + bottom, geom.w + left + right))
    dyg = dy.reshape(geom.n, g, kg, geom.p, geom.q)
    wg = wt.reshape(g, kg, cg, geom.r, geom.s)
    for r in range(geom.r):
        for s in range(geom.s):
            contrib = np.einsum("ngkpq,gkc->ngcpq", dyg, wg[:, :, :, r, s], optimize=True)
            buf[:, :, :, r * dh: r * dh + (geom.p - 1) * sh + 1: sh,
                s * dw: s * dw + (geom.q - 1) * sw + 1: sw] += contrib
    out = buf[:, :, :, top: top + geom.h, left: left + geom.w]
    return np.ascontiguousarray(out.reshape(geom.n, geom.c, geom.h, geom.w))


def conv2d_weight_grad(input, weight_size, grad_output, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """d(loss)/d(weight) of ``conv2d`` in float64: each tap's input window contracted with the
    output gradient over (N, P, Q), group by group."""
    x, dy = as_f64(input, "input"), as_f64(grad_output, "grad_output")
    size = tuple(int(v) for v in weight_size)
    if len(size) != 4:
        raise ValueError(f"weight_size must be (K, C/groups, R, S), got {weight_size!r}")
    geom = _grad_geometry(x.shape, size, dy, stride, padding, dilation, groups)
    g, cg, kg = geom.groups, geom.c_per_group, geom.k_per_group
    win = input_windows(x, geom).reshape(geom.n, g, cg, geom.p, geom.q, geom.r, geom.s)
    dyg = dy.reshape(geom.n, g, kg, geom.p, geom.q)
    out = np.einsum("ngcpqrs,ngkpq->gkcrs", win, dyg, optimize=True)
    return np.ascontiguousarray(out.reshape(geom.k, cg, geom.r, geom.s))


def conv1d_input_grad(input_size, weight, grad_output, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """:func:`conv2d_input_grad` of ``conv1d`` (an H == R == 1 convolution)."""
    size = tuple(int(v) for v in input_size)
    if len(size) != 3:
        raise ValueError(f"input_size must be (N, C, L), got {input_size!r}")
    padding = padding if isinstance(padding, str) else (0, _pad1d(padding))
    out = conv2d_input_grad((size[0], size[1], 1, size[2]), as_f64(weight, "weight")[:, :, None, :],
                            as_f64(grad_output, "grad_output")[:, :, None, :], (1, _one(stride)), padding,
                            (1, _one(dilation)), groups)
    return out[:, :, 0, :]


def conv1d_weight_grad(input, weight_size, grad_output, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """:func:`conv2d_weight_grad` of ``conv1d``."""
    size = tuple(int(v) for v in weight_size)
    if len(size) != 3:
        raise ValueError(f"weight_size must be (K, C/groups, S), got {weight_size!r}")
    padding = padding if isinstance(padding, str) else (0, _pad1d(padding))
    out = conv2d_weight_grad(as_f64(input, "input")[:, :, None, :], (size[0], size[1], 1, size[2]),
                             as_f64(grad_output, "grad_output")[:, :, None, :], (1, _one(stride)), padding,
                             (1, _one(dilation)), groups)
    return out[:, :, 0, :]


def _one(value):
    """A 1-D argument given as an int or a 1-sequence."""
    return value[0] if isinstance(value, (tuple, list)) and len(value) == 1 else value


def _pad1d(value):
    return _one(value)
