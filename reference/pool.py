"""Pooling references in float64, written the way PyTorch defines the operators.

Every output pixel is computed at once; the only Python loops run over the kernel taps (or, for
adaptive pooling, over the positions inside the largest window).  Each tap gathers one input
value per output pixel, masked where the tap falls into the padding, so:

* ``max_pool2d`` ignores padding, lets NaN win (a later NaN replaces an earlier one, as
  PyTorch's ``val > max || isnan(val)`` does), keeps the *first* index on ties, and starts from
  the first in-bounds tap of the window (which is also the index PyTorch reports for an
  all ``-inf`` window); indices are flat ``h * W + w`` offsets into the input plane.
* ``avg_pool2d`` divides by ``divisor_override``, or with ``count_include_pad`` by the window
  clipped to the *padded* bounds (so a ``ceil_mode`` edge window counts only what it covers of
  the padded input), or else by the in-bounds tap count.
* ``adaptive_avg_pool2d`` averages the windows ``[floor(i*H/OH), ceil((i+1)*H/OH))`` from
  :func:`convbench.reference.geometry.adaptive_windows`.

Output sizes and argument validation come from :class:`convbench.reference.geometry.PoolGeometry`.
Inputs are (N, C, H, W) or unbatched (C, H, W) for the 2-D pools, (N, C, L) or (C, L) for 1-D.
"""

from __future__ import annotations

import numpy as np

from .conv import as_f64
from .geometry import PoolGeometry, adaptive_windows, check_divisor_override, pair

__all__ = ["max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
           "max_pool1d", "avg_pool1d", "adaptive_avg_pool1d",
           "max_pool2d_backward", "avg_pool2d_backward", "adaptive_avg_pool2d_backward",
           "max_pool1d_backward", "avg_pool1d_backward", "adaptive_avg_pool1d_backward"]


def _batched(input, spatial: int) -> tuple[np.ndarray, bool]:
    """float64 input with a batch dimension, and whether one was added (unbatched input)."""
    x = as_f64(input, "input")
    if x.ndim == spatial + 1:
        return x[None], True
    if x.ndim != spatial + 2:
        names = "(N, C, H, W) or (C, H, W)" if spatial == 2 else "(N, C, L) or (C, L)"
        raise ValueError(f"input must be {names}, got shape {x.shape}")
    return x, False


def _taps(start: np.ndarray, size: int, count: int, dilation: int):
    """(position, in-bounds mask) of every tap of windows starting at ``start``."""
    for t in range(count):
        pos = start + t * dilation
        valid = (pos >= 0) & (pos < size)
        yield np.clip(pos, 0, size - 1), valid


def _first_in_bounds(start: np.ndarray, dilation: int) -> np.ndarray:
    """First tap position >= 0 of each window (PyTorch's ``while (h0 < 0) h0 += d``)."""
    skip = np.maximum(-start, 0)
    return start + -(-skip // dilation) * dilation


def _max_pool(x: np.ndarray, g: PoolGeometry) -> tuple[np.ndarray, np.ndarray]:
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = g.kernel, g.stride, g.padding, g.dilation
    hs = np.arange(g.p) * sh - ph
    ws = np.arange(g.q) * sw - pw
    shape = (g.n, g.c, g.p, g.q)
    best = np.full(shape, -np.inf)
    index = np.broadcast_to(_first_in_bounds(hs, dh)[:, None] * g.w + _first_in_bounds(ws, dw)[None, :], shape).copy()
    for rows, row_ok in _taps(hs, g.h, kh, dh):
        plane = x[:, :, rows, :]
        for cols, col_ok in _taps(ws, g.w, kw, dw):
            val = plane[:, :, :, cols]
            take = (row_ok[:, None] & col_ok[None, :]) & ((val > best) | np.isnan(val))
            best = np.where(take, val, best)
            index = np.where(take, rows[:, None] * g.w + cols[None, :], index)
    return best, index


def _avg_pool(x: np.ndarray, g: PoolGeometry, count_include_pad: bool, divisor_override) -> np.ndarray:
    (kh, kw), (sh, sw), (ph, pw) = g.kernel, g.stride, g.padding
    hs = np.arange(g.p) * sh - ph
    ws = np.arange(g.q) * sw - pw
    total = np.zeros((g.n, g.c, g.p, g.q))
    with np.errstate(invalid="ignore"):  # inf + -inf inside a window is NaN, as in PyTorch
        for rows, row_ok in _taps(hs, g.h, kh, 1):
            plane = x[:, :, rows, :]
            for cols, col_ok in _taps(ws, g.w, kw, 1):
                total = total + np.where(row_ok[:, None] & col_ok[None, :], plane[:, :, :, cols], 0.0)
    divisor, empty = _avg_divisor(g, hs, ws, count_include_pad, divisor_override)
    return np.where(empty, 0.0, total / np.where(empty, 1.0, divisor))


def _avg_divisor(g: PoolGeometry, hs: np.ndarray, ws: np.ndarray, count_include_pad: bool, divisor_override):
    """(divisor, empty) per output pixel: ``divisor_override``, the window clipped to the padded
    bounds (``count_include_pad``) or its in-bounds count; empty windows output 0."""
    (kh, kw), (ph, pw) = g.kernel, g.padding
    he, we = np.minimum(hs + kh, g.h + ph), np.minimum(ws + kw, g.w + pw)
    padded = (he - hs)[:, None] * (we - ws)[None, :]
    h_in = np.minimum(he, g.h) - np.maximum(hs, 0)
    w_in = np.minimum(we, g.w) - np.maximum(ws, 0)
    inside = h_in[:, None] * w_in[None, :]
    if divisor_override is not None:
        divisor = np.full(inside.shape, float(divisor_override))
    else:
        divisor = (padded if count_include_pad else inside).astype(np.float64)
    empty = (h_in[:, None] <= 0) | (w_in[None, :] <= 0)  # PyTorch writes 0 for an empty window
    return divisor, empty


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """``torch.nn.functional.max_pool2d`` in float64; indices (int64) are ``h * W + w``."""
    x, unbatched = _batched(input, 2)
    g = PoolGeometry.from_args(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    out, index = _max_pool(x, g)
    if unbatched:
        out, index = out[0], index[0]
    return (out, index.astype(np.int64)) if return_indices else out


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None) -> np.ndarray:
    """``torch.nn.functional.avg_pool2d`` in float64."""
    x, unbatched = _batched(input, 2)
    check_divisor_override(divisor_override)
    g = PoolGeometry.from_args(x.shape, kernel_size, stride, padding, 1, ceil_mode)
    out = _avg_pool(x, g, bool(count_include_pad), divisor_override)
    return out[0] if unbatched else out


def _adaptive_output(output_size, in_hw: tuple[int, ...]) -> tuple[int, ...]:
    """torch's ``output_size``: an int, or a sequence with ``None`` meaning 'keep this size'."""
    ndim = len(in_hw)
    if isinstance(output_size, (list, tuple)) and len(output_size) == ndim:
        sizes = tuple(in_hw[i] if s is None else s for i, s in enumerate(output_size))
    else:
        sizes = output_size
    sizes = pair(sizes, "output_size", ndim)
    if any(s <= 0 for s in sizes):
        raise ValueError(f"output_size must be positive, got {output_size!r}")
    return sizes


def _window_arrays(size: int, out: int):
    win = np.array(adaptive_windows(size, out))
    return win[:, 0], win[:, 1], int((win[:, 1] - win[:, 0]).max())


def adaptive_avg_pool2d(input, output_size) -> np.ndarray:
    """``torch.nn.functional.adaptive_avg_pool2d`` in float64 (output 1 = global average)."""
    x, unbatched = _batched(input, 2)
    oh, ow = _adaptive_output(output_size, x.shape[2:])
    h0, h1, kh = _window_arrays(x.shape[2], oh)
    w0, w1, kw = _window_arrays(x.shape[3], ow)
    total = np.zeros(x.shape[:2] + (oh, ow))
    with np.errstate(invalid="ignore"):  # inf + -inf inside a window is NaN, as in PyTorch
        for t in range(kh):
            rows = h0 + t
            row_ok = rows < h1
            plane = x[:, :, np.minimum(rows, x.shape[2] - 1), :]
            for u in range(kw):
                cols = w0 + u
                ok = row_ok[:, None] & (cols < w1)[None, :]
                total = total + np.where(ok, plane[:, :, :, np.minimum(cols, x.shape[3] - 1)], 0.0)
    out = total / ((h1 - h0)[:, None] * (w1 - w0)[None, :])
    return out[0] if unbatched else out


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """``torch.nn.functional.max_pool1d`` in float64 (a 2-D pool over an (N, C, 1, L) view)."""
    x, unbatched = _batched(input, 1)
    g = PoolGeometry.from_args_1d(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    out, index = _max_pool(x[:, :, None, :], g)
    out, index = out[:, :, 0], index[:, :, 0]
    if unbatched:
        out, index = out[0], index[0]
    return (out, index.astype(np.int64)) if return_indices else out


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True) -> np.ndarray:
    """``torch.nn.functional.avg_pool1d`` in float64."""
    x, unbatched = _batched(input, 1)
    g = PoolGeometry.from_args_1d(x.shape, kernel_size, stride, padding, 1, ceil_mode)
    out = _avg_pool(x[:, :, None, :], g, bool(count_include_pad), None)[:, :, 0]
    return out[0] if unbatched else out


def adaptive_avg_pool1d(input, output_size) -> np.ndarray:
    """``torch.nn.functional.adaptive_avg_pool1d`` in float64."""
    x, unbatched = _batched(input, 1)
    (ol,) = pair(output_size, "output_size", 1)
    out = adaptive_avg_pool2d(x[:, :, None, :], (1, ol))[:, :, 0]
    return out[0] if unbatched else out


# ----------------------------------------------------------------------------------------------
# backward: the adjoints of the forwards above (each output gradient goes back to the taps that
# made its output).  ``input`` is the forward's input or just its shape, batched or not; the
# 1-D forms run the 2-D ones over an (N, C, 1, L) view.
# ----------------------------------------------------------------------------------------------
def _shape_of(input, spatial: int) -> tuple[tuple[int, ...], bool]:
    """The forward input's (N, C, H, W) shape (a unit H for 1-D) and whether it was unbatched."""
    shape = tuple(int(v) for v in (input.shape if hasattr(input, "shape") else input))
    if len(shape) == spatial + 1:
        shape, unbatched = (1, *shape), True
    elif len(shape) == spatial + 2:
        unbatched = False
    else:
        names = "(N, C, H, W) or (C, H, W)" if spatial == 2 else "(N, C, L) or (C, L)"
        raise ValueError(f"input must be {names}, got shape {shape}")
    return ((shape[0], shape[1], 1, shape[2]) if spatial == 1 else shape), unbatched


def _as_grid(value, name: str, unbatched: bool, spatial: int, dtype=np.float64) -> np.ndarray:
    """grad_output (or indices) as an (N, C, P, Q) array matching :func:`_shape_of`."""
    a = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
    a = a.astype(dtype) if dtype is np.int64 else as_f64(a, name)
    if unbatched:
        a = a[None]
    return a[:, :, None, :] if spatial == 1 and a.ndim == 3 else a


def _finish(dx: np.ndarray, unbatched: bool, spatial: int) -> np.ndarray:
    dx = dx[:, :, 0, :] if spatial == 1 else dx
    return dx[0] if unbatched else dx


def _scatter(shape, contributions) -> np.ndarray:
    """Sum ``values`` (N, C, P, Q) into an (N, C, H, W) zero array at rows x cols, per tap."""
    dx = np.zeros(shape)
    view = dx.transpose(2, 3, 0, 1)  # (H, W, N, C): the taps index the leading axes
    for rows, cols, values in contributions:
        np.add.at(view, (rows[:, None], cols[None, :]), values.transpose(2, 3, 0, 1))
    return dx


def _check_shape(a: np.ndarray, want, name: str) -> None:
    if a.shape != tuple(want):
        raise ValueError(f"{name} must have shape {tuple(want)}, got {a.shape}")


def _max_grad(dy: np.ndarray, idx: np.ndarray, shape) -> np.ndarray:
    n, c, h, w = shape
    dx = np.zeros(n * c * h * w)
    planes = (np.arange(n * c) * h * w).reshape(n, c, 1, 1)
    np.add.at(dx, (planes + idx).ravel(), dy.ravel())
    return dx.reshape(shape)


def _avg_grad(dy: np.ndarray, g: PoolGeometry, count_include_pad: bool, divisor_override) -> np.ndarray:
    (kh, kw), (sh, sw), (ph, pw) = g.kernel, g.stride, g.padding
    hs, ws = np.arange(g.p) * sh - ph, np.arange(g.q) * sw - pw
    divisor, empty = _avg_divisor(g, hs, ws, count_include_pad, divisor_override)
    scaled = np.where(empty, 0.0, dy / np.where(empty, 1.0, divisor))
    col_taps = list(_taps(ws, g.w, kw, 1))
    return _scatter((g.n, g.c, g.h, g.w), ((rows, cols, np.where(row_ok[:, None] & col_ok[None, :], scaled, 0.0))
                                           for rows, row_ok in _taps(hs, g.h, kh, 1) for cols, col_ok in col_taps))


def _adaptive_grad(dy: np.ndarray, shape) -> np.ndarray:
    oh, ow = dy.shape[2:]
    h0, h1, kh = _window_arrays(shape[2], oh)
    w0, w1, kw = _window_arrays(shape[3], ow)
    scaled = dy / ((h1 - h0)[:, None] * (w1 - w0)[None, :])
    parts = []
    for t in range(kh):
        rows, row_ok = h0 + t, h0 + t < h1
        for u in range(kw):
            cols, col_ok = w0 + u, w0 + u < w1
            parts.append((np.minimum(rows, shape[2] - 1), np.minimum(cols, shape[3] - 1),
                          np.where(row_ok[:, None] & col_ok[None, :], scaled, 0.0)))
    return _scatter(shape, parts)


def max_pool2d_backward(grad_output, input, indices, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False) -> np.ndarray:
    """The input gradient of ``max_pool2d``: each output gradient added at the input position its
    saved index (``h * W + w``, from the forward with ``return_indices=True``) names.  A window
    with no tap inside the input (output -inf) gives nothing back: its index names a pixel
    outside the window (torch's CPU backward adds there, even outside the plane)."""
    shape, unbatched = _shape_of(input, 2)
    g = PoolGeometry.from_args(shape, kernel_size, stride, padding, dilation, ceil_mode)
    dy = _as_grid(grad_output, "grad_output", unbatched, 2)
    idx = _as_grid(indices, "indices", unbatched, 2, np.int64)
    _check_shape(dy, g.output_shape, "grad_output")
    _check_shape(idx, g.output_shape, "indices")
    tapless = _tapless_windows(g)
    return _finish(_max_grad(np.where(tapless, 0.0, dy), np.where(tapless, 0, idx), shape), unbatched, 2)


def _tapless_windows(g: PoolGeometry) -> np.ndarray:
    """(P, Q): the windows none of whose (dilated) taps lies inside the input."""
    def has_tap(outputs, size, k, stride, pad, dil):
        return np.logical_or.reduce([ok for _, ok in _taps(np.arange(outputs) * stride - pad, size, k, dil)])
    rows = has_tap(g.p, g.h, g.kernel[0], g.stride[0], g.padding[0], g.dilation[0])
    cols = has_tap(g.q, g.w, g.kernel[1], g.stride[1], g.padding[1], g.dilation[1])
    return ~(rows[:, None] & cols[None, :])


def avg_pool2d_backward(grad_output, input, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None) -> np.ndarray:
    """The input gradient of ``avg_pool2d``: ``dy / divisor`` spread over each window's in-bounds
    taps (an empty ``ceil_mode`` edge window, which outputs 0, gives nothing back)."""
    check_divisor_override(divisor_override)
    shape, unbatched = _shape_of(input, 2)
    g = PoolGeometry.from_args(shape, kernel_size, stride, padding, 1, ceil_mode)
    dy = _as_grid(grad_output, "grad_output", unbatched, 2)
    _check_shape(dy, g.output_shape, "grad_output")
    return _finish(_avg_grad(dy, g, bool(count_include_pad), divisor_override), unbatched, 2)


def adaptive_avg_pool2d_backward(grad_output, input) -> np.ndarray:
    """The input gradient of ``adaptive_avg_pool2d`` (the output size is grad_output's):
    ``dy / window size`` over each window."""
    shape, unbatched = _shape_of(input, 2)
    dy = _as_grid(grad_output, "grad_output", unbatched, 2)
    if dy.ndim != 4 or dy.shape[:2] != shape[:2] or 0 in dy.shape[2:]:
        raise ValueError(f"grad_output must be (N, C, OH, OW) for input {shape}, got {dy.shape}")
    return _finish(_adaptive_grad(dy, shape), unbatched, 2)


def max_pool1d_backward(grad_output, input, indices, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False) -> np.ndarray:
    """The input gradient of ``max_pool1d`` (indices are positions along L)."""
    shape, unbatched = _shape_of(input, 1)
    g = PoolGeometry.from_args_1d((shape[0], shape[1], shape[3]), kernel_size, stride, padding, dilation, ceil_mode)
    dy = _as_grid(grad_output, "grad_output", unbatched, 1)
    idx = _as_grid(indices, "indices", unbatched, 1, np.int64)
    _check_shape(dy, g.output_shape, "grad_output")
    _check_shape(idx, g.output_shape, "indices")
    return _finish(_max_grad(dy, idx, shape), unbatched, 1)


def avg_pool1d_backward(grad_output, input, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True) -> np.ndarray:
    """The input gradient of ``avg_pool1d``."""
    shape, unbatched = _shape_of(input, 1)
    g = PoolGeometry.from_args_1d((shape[0], shape[1], shape[3]), kernel_size, stride, padding, 1, ceil_mode)
    dy = _as_grid(grad_output, "grad_output", unbatched, 1)
    _check_shape(dy, g.output_shape, "grad_output")
    return _finish(_avg_grad(dy, g, bool(count_include_pad), None), unbatched, 1)


def adaptive_avg_pool1d_backward(grad_output, input) -> np.ndarray:
    """The input gradient of ``adaptive_avg_pool1d``."""
    shape, unbatched = _shape_of(input, 1)
    dy = _as_grid(grad_output, "grad_output", unbatched, 1)
    if dy.ndim != 4 or dy.shape[:2] != shape[:2] or 0 in dy.shape[2:]:
        raise ValueError(f"grad_output must be (N, C, OL) for input {shape}, got {dy.shape}")
    return _finish(_adaptive_grad(dy, shape), unbatched, 1)
