"""Convolution as one explicit matrix: ``vec(out) = T @ vec(x)`` (small shapes only).

Convolution is linear in the input, so for fixed weights it is a (K*P*Q) x (C*H*W) matrix.
Per tap (r, s) that matrix is ``W[:, :, r, s]`` (K x C, block diagonal over groups) Kronecker
``S_r`` (P x H) Kronecker ``S_s`` (Q x W), where the selection matrix ``S_r[p, h] = 1`` iff
``h == p*stride - pad_top + r*dilation`` (rows whose tap falls into the padding are zero).
With stride 1 each ``S_r`` is a shifted identity, so the sum over taps is block Toeplitz with
Toeplitz blocks (doubly block Toeplitz) inside every (k, c) block; with stride or dilation
it is the same sparse structure with strided/spread diagonals.
"""

from __future__ import annotations

import numpy as np

from .conv import _finish, as_f64
from .geometry import ConvGeometry

__all__ = ["toeplitz_matrix", "conv2d_toeplitz", "MAX_TOEPLITZ_ENTRIES"]

#: the matrix is dense float64: refuse shapes past this many entries (160 MB)
MAX_TOEPLITZ_ENTRIES = 20_000_000


def _selection(out_size: int, in_size: int, taps: int, stride: int, pad: int, dilation: int) -> np.ndarray:
    """S[t, o, i] = 1 iff input index i == o*stride - pad + t*dilation."""
    o = np.arange(out_size)[None, :, None]
    t = np.arange(taps)[:, None, None]
    i = np.arange(in_size)[None, None, :]
    return (i == o * stride - pad + t * dilation).astype(np.float64)


def toeplitz_matrix(geom: ConvGeometry, weight) -> np.ndarray:
    """The dense (K*P*Q, C*H*W) matrix of ``conv2d`` with ``weight`` under ``geom``.

    Rows are output elements in (k, p, q) order, columns input elements in (c, h, w) order, so
    ``(T @ x[n].reshape(-1)).reshape(K, P, Q)`` is ``conv2d(x)[n]`` without bias.
    """
    wt = as_f64(weight, "weight")
    if wt.shape != geom.weight_shape:
        raise ValueError(f"weight has shape {wt.shape}, but geom {geom} needs {geom.weight_shape}")
    rows, cols = geom.k * geom.p * geom.q, geom.c * geom.h * geom.w
    if rows * cols > MAX_TOEPLITZ_ENTRIES:
        raise ValueError(
            f"toeplitz matrix for {geom} would be {rows} x {cols} = {rows * cols:.3g} entries, "
            f"more than MAX_TOEPLITZ_ENTRIES={MAX_TOEPLITZ_ENTRIES:.3g}: use a smaller shape"
        )
    g, cg, kg = geom.groups, geom.c_per_group, geom.k_per_group
    full = np.zeros((g, kg, g, cg, geom.r, geom.s))  # K x C weight, zero outside the groups
    idx = np.arange(g)
    full[idx, :, idx] = wt.reshape(g, kg, cg, geom.r, geom.s)
    full = full.reshape(geom.k, geom.c, geom.r, geom.s)
    sel_h = _selection(geom.p, geom.h, geom.r, geom.stride[0], geom.padding[0], geom.dilation[0])
    sel_w = _selection(geom.q, geom.w, geom.s, geom.stride[1], geom.padding[2], geom.dilation[1])
    mat = np.einsum("kcrs,rph,sqw->kpqchw", full, sel_h, sel_w, optimize=True)
    return mat.reshape(rows, cols)


def conv2d_toeplitz(input, weight, padding=0, stride=1, dilation=1, *, groups=1, bias=None) -> np.ndarray:
    """``conv2d`` as ``toeplitz_matrix(geom, weight) @ x.reshape(N, -1).T`` (small shapes only)."""
    x, wt = as_f64(input, "input"), as_f64(weight, "weight")
    geom = ConvGeometry.from_shapes(x.shape, wt.shape, stride, padding, dilation, groups)
    mat = toeplitz_matrix(geom, wt)
    out = (mat @ x.reshape(geom.n, -1).T).T.reshape(geom.output_shape)
    return _finish(np.ascontiguousarray(out), bias, geom)
