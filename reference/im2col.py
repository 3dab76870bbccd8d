"""Explicit im2col + GEMM convolution in float64 (the lowering cuDNN calls IMPLICIT_GEMM's parent).

``im2col`` copies every (dilated, strided) R x S input window into one row of a column matrix,
per group: rows are output pixels in (n, p, q) order, columns the reduction index in (c, r, s)
order (the order of ``weight.reshape(K, C/g*R*S)``).  The convolution is then one matrix
product per group: ``cols[g] @ weight[g].reshape(K/g, -1).T`` (Chellapilla et al. 2006).
"""

from __future__ import annotations

import numpy as np

from .conv import _finish, as_f64, input_windows
from .geometry import ConvGeometry

__all__ = ["im2col", "conv2d_im2col"]


def im2col(x, geom: ConvGeometry) -> np.ndarray:
    """The column matrices, shape (groups, N*P*Q, C/groups*R*S), float64 (a copy, not a view)."""
    x = as_f64(x, "x")
    if x.shape != geom.input_shape:
        raise ValueError(f"x has shape {x.shape}, but geom {geom} needs {geom.input_shape}")
    g, cg = geom.groups, geom.c_per_group
    win = input_windows(x, geom).reshape(geom.n, g, cg, geom.p, geom.q, geom.r, geom.s)
    win = win.transpose(1, 0, 3, 4, 2, 5, 6)  # g, n, p, q, c, r, s
    return np.ascontiguousarray(win).reshape(g, geom.n * geom.p * geom.q, cg * geom.r * geom.s)


def conv2d_im2col(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """``conv2d`` as column matrix times weight matrix, one GEMM per group."""
    x, wt = as_f64(input, "input"), as_f64(weight, "weight")
    geom = ConvGeometry.from_shapes(x.shape, wt.shape, stride, padding, dilation, groups)
    cols = im2col(x, geom)
    wmat = wt.reshape(geom.groups, geom.k_per_group, geom.reduction_length)
    out = cols @ wmat.transpose(0, 2, 1)  # g, NPQ, K/g
    out = out.reshape(geom.groups, geom.n, geom.p, geom.q, geom.k_per_group)
    out = out.transpose(1, 0, 4, 2, 3).reshape(geom.output_shape)
    return _finish(np.ascontiguousarray(out), bias, geom)
