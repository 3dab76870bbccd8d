"""Transposed convolution (``conv_transpose2d``) in float64: scatter-add over the R x S taps.

A transposed convolution is the adjoint of ``conv2d``: every input pixel ``x[n, c, h, w]``
spreads ``x * weight[c, k, r, s]`` to output pixel ``(h*stride - pad + r*dil, w*stride - pad +
s*dil)``.  For one tap ``(r, s)`` the targets of all input pixels form a strided slice of the
output, so the whole operation is R*S channel contractions, each added into a strided slice of
a buffer that spans the un-cropped output; cropping ``padding`` from both sides (the buffer
already includes ``output_padding`` at the bottom/right) gives PyTorch's result.
"""

from __future__ import annotations

import numpy as np

from .conv import _finish, as_f64
from .geometry import ConvTransposeGeometry

__all__ = ["conv_transpose2d"]


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1) -> np.ndarray:
    """``torch.nn.functional.conv_transpose2d`` in float64; weight is C x K/groups x R x S."""
    x, wt = as_f64(input, "input"), as_f64(weight, "weight")
    geom = ConvTransposeGeometry.from_shapes(x.shape, wt.shape, stride, padding, output_padding,
                                             groups, dilation)
    out = transpose_direct(x, wt, geom)
    return _finish(out, bias, geom)


def transpose_direct(x: np.ndarray, wt: np.ndarray, geom: ConvTransposeGeometry) -> np.ndarray:
    """The scatter-add for an already validated geometry (no bias)."""
    (sh, sw), (dh, dw) = geom.stride, geom.dilation
    (ph, pw), (oph, opw) = geom.padding, geom.output_padding
    g, cg, kg = geom.groups, geom.c_per_group, geom.k_per_group
    n, h, w = geom.n, geom.h, geom.w
    full_h = (h - 1) * sh + dh * (geom.r - 1) + 1 + oph
    full_w = (w - 1) * sw + dw * (geom.s - 1) + 1 + opw
    buf = np.zeros((n, g, kg, full_h, full_w))
    xg = x.reshape(n, g, cg, h, w)
    wg = wt.reshape(g, cg, kg, geom.r, geom.s)
    for r in range(geom.r):
        for s in range(geom.s):
            contrib = np.einsum("ngchw,gck->ngkhw", xg, wg[:, :, :, r, s], optimize=True)
            buf[:, :, :, r * dh: r * dh + (h - 1) * sh + 1: sh, s * dw: s * dw + (w - 1) * sw + 1: sw] += contrib
    out = buf[:, :, :, ph: ph + geom.p, pw: pw + geom.q]
    return np.ascontiguousarray(out.reshape(n, geom.k, geom.p, geom.q))
