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
