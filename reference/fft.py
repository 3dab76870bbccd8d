"""FFT convolution in float64 (numpy.fft): whole image, or tiles with overlap-add.

A CNN "convolution" is a cross-correlation, whose spectrum is ``X * conj(W)`` for real ``w``
(Mathieu, Henaff & LeCun, "Fast Training of Convolutional Networks through FFTs", 2014).

* ``tile=None``: transform the whole padded image, size ``Hp x Wp``.  The circular correlation
  of that size equals the linear one at every output pixel (``p + d(R-1) <= Hp - 1``), so no
  extra zero padding is needed.
* ``tile=T`` (int or pair): cut the padded image into T x T input blocks (the last ones
  zero-padded when T does not divide it); each block's *linear* correlation with the kernel,
  computed by FFTs of size ``(T + R_eff - 1)``, covers outputs ``i0 - (R_eff-1) .. i0 + T - 1``;
  adding the overlapping block results (overlap-add, Stockham 1966) gives the output.

Dilation is supported by correlating with the zero-inserted (dilated) kernel; groups by
summing the spectral products over the channels of each group.  Stride is refused: FFT
computes every output pixel.
"""

from __future__ import annotations

import numpy as np

from .conv import _finish, as_f64, pad_input
from .geometry import ConvGeometry, pair

__all__ = ["conv2d_fft"]


def conv2d_fft(input, weight, bias=None, padding=0, tile=None, *, stride=1, dilation=1,
               groups=1) -> np.ndarray:
    """``conv2d`` by FFT: stride 1; dilation and groups supported; ``tile`` None or T or (Th, Tw)."""
    x, wt = as_f64(input, "input"), as_f64(weight, "weight")
    geom = ConvGeometry.from_shapes(x.shape, wt.shape, stride, padding, dilation, groups)
    if geom.stride != (1, 1):
        raise ValueError(f"conv2d_fft needs stride 1, got stride={geom.stride}")
    kernel = _dilated_kernel(wt, geom)
    xp = pad_input(x, geom)
    if tile is None:
        out = _correlate_full(xp, kernel, geom)
    else:
        th, tw = pair(tile, "tile")
        if th <= 0 or tw <= 0:
            raise ValueError(f"tile must be positive, got {tile!r}")
        out = _correlate_tiled(xp, kernel, geom, th, tw)
    return _finish(out, bias, geom)


def _dilated_kernel(wt: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    (dh, dw) = geom.dilation
    k = np.zeros((geom.k, geom.c_per_group, dh * (geom.r - 1) + 1, dw * (geom.s - 1) + 1))
    k[:, :, ::dh, ::dw] = wt
    return k


def _spectral_product(xf: np.ndarray, wf: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """sum over the channels of each group of X * conj(W): xf (N, C, ..., F), wf (K, C/g, F)."""
    g, cg, kg = geom.groups, geom.c_per_group, geom.k_per_group
    xg = xf.reshape(xf.shape[0], g, cg, *xf.shape[2:])
    wg = np.conj(wf).reshape(g, kg, cg, *wf.shape[2:])
    extra = "tu" if xf.ndim == 6 else ""  # tiled: (N, C, tiles_h, tiles_w, fh, fw)
    out = np.einsum(f"ngc{extra}ij,gkcij->ngk{extra}ij", xg, wg, optimize=True)
    return out.reshape(xf.shape[0], geom.k, *out.shape[3:])


def _correlate_full(xp: np.ndarray, kernel: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    size = xp.shape[2:]
    y = np.fft.irfft2(_spectral_product(np.fft.rfft2(xp), np.fft.rfft2(kernel, s=size), geom), s=size)
    return y[:, :, : geom.p, : geom.q]


def _correlate_tiled(xp: np.ndarray, kernel: np.ndarray, geom: ConvGeometry, th: int, tw: int) -> np.ndarray:
    n, c, hp, wp = xp.shape
    eh, ew = kernel.shape[2] - 1, kernel.shape[3] - 1  # reach of the (dilated) kernel
    nth, ntw = -(-hp // th), -(-wp // tw)
    xp = np.pad(xp, ((0, 0), (0, 0), (0, nth * th - hp), (0, ntw * tw - wp)))
    blocks = xp.reshape(n, c, nth, th, ntw, tw).transpose(0, 1, 2, 4, 3, 5)  # N C tiles_h tiles_w T T
    fh, fw = th + eh, tw + ew  # linear-correlation size: no wrap-around between blocks
    spec = _spectral_product(np.fft.rfft2(blocks, s=(fh, fw)), np.fft.rfft2(kernel, s=(fh, fw)), geom)
    y = np.fft.irfft2(spec, s=(fh, fw))  # index j holds offset j (j < T) or j - F (negative offsets)
    y = np.roll(y, (eh, ew), axis=(-2, -1))  # index 0 now holds offset -(reach)
    # overlap-add: block (a, b) result starts at padded-image row a*th - eh; cut each result into
    # th x tw chunks and add chunk (i, j) into output slot (a + i, b + j)
    ch, cw = -(-fh // th), -(-fw // tw)
    y = np.pad(y, ((0, 0),) * 4 + ((0, ch * th - fh), (0, cw * tw - fw)))
    y = y.reshape(n, geom.k, nth, ntw, ch, th, cw, tw)
    acc = np.zeros((n, geom.k, nth + ch - 1, th, ntw + cw - 1, tw))
    for i in range(ch):
        for j in range(cw):
            acc[:, :, i: i + nth, :, j: j + ntw, :] += y[:, :, :, :, i, :, j, :].transpose(0, 1, 2, 4, 3, 5)
    acc = acc.reshape(n, geom.k, (nth + ch - 1) * th, (ntw + cw - 1) * tw)
    return np.ascontiguousarray(acc[:, :, eh: eh + geom.p, ew: ew + geom.q])
