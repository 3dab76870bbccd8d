"""Winograd minimal-filtering convolution F(m x m, r x r) in float64, transforms derived.

Toom-Cook construction (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
CVPR 2016; Barabasz et al. 2020 on the choice of points).  With ``alpha = m + r - 1`` and the
finite points ``p_0 .. p_{alpha-2}`` plus the point at infinity, the *linear* convolution
``y = g * h`` of a length-r filter and a length-m signal is, by Lagrange interpolation,

    y(x) = sum_i g(p_i) h(p_i) L_i(x) + g_top h_top M(x),
    L_i(x) = prod_{j != i}(x - p_j) / N_i,   N_i = prod_{j != i}(p_i - p_j),   M(x) = prod_j (x - p_j)

i.e. ``y = C [(G g) * (H h)]`` with ``G`` the evaluation of g (row i scaled by 1/N_i; the
infinity row picks the top coefficient), ``H`` the evaluation of h and ``C`` the coefficient
columns of ``N_i L_i`` and ``M``.  The correlation ``F(m, r)`` that a CNN layer computes is the
transpose of that map in ``h`` (transposition principle), so

    out = A^T [(G g) * (B^T d)],   A^T = H^T (m x alpha),  B^T = C^T (alpha x alpha)

and in 2-D ``Y = A^T [(G g G^T) * (B^T d B)] A`` per alpha x alpha input tile (stride m).
The matrices are computed exactly with :class:`fractions.Fraction` and returned as float64;
for m=2 (points 0, 1, -1) and m=4 (points 0, +-1, +-2) they are Lavin's matrices up to the signs
of some rows (a sign moved between G and B^T cancels).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .conv import _finish, as_f64, pad_input
from .geometry import ConvGeometry

__all__ = ["winograd_matrices", "default_points", "conv2d_winograd", "round_to"]

#: the order in which finite interpolation points are taken (small magnitudes first)
_POINT_ORDER = (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2), 3, -3, Fraction(1, 3), Fraction(-1, 3))


def default_points(m: int, r: int = 3) -> tuple[Fraction, ...]:
    """The ``m + r - 2`` finite points used by default: 0, 1, -1, 2, -2, 1/2, -1/2, 3, ...

    F(2, 3): 0, 1, -1.  F(4, 3): 0, +-1, +-2.  F(6, 3): 0, +-1, +-2, +-1/2.
    """
    count = m + r - 2
    if count > len(_POINT_ORDER):
        raise ValueError(f"no default points for m={m}, r={r}: pass points= ({count} finite points)")
    return tuple(Fraction(p) for p in _POINT_ORDER[:count])


def winograd_matrices(m: int, r: int = 3, points=None, exact: bool = False):
    """(AT, G, BT) for F(m, r): shapes (m, alpha), (alpha, r), (alpha, alpha), alpha = m + r - 1.

    ``points``: ``m + r - 2`` distinct finite interpolation points (ints, Fractions or floats
    converted exactly); infinity is always the last point.  float64 arrays, or object arrays of
    exact Fractions with ``exact=True``.
    """
    if not isinstance(m, int) or m < 1:
        raise ValueError(f"m must be a positive int, got {m!r}")
    if not isinstance(r, int) or r < 1:
        raise ValueError(f"r must be a positive int, got {r!r}")
    alpha = m + r - 1
    pts = default_points(m, r) if points is None else tuple(Fraction(p) for p in points)
    if len(pts) != alpha - 1:
        raise ValueError(f"points: F({m}, {r}) needs {alpha - 1} finite points (plus infinity), "
                         f"got {len(pts)}: {points!r}")
    if len(set(pts)) != len(pts):
        raise ValueError(f"points must be distinct, got {points!r}")

    def poly_from_roots(roots) -> list[Fraction]:
        """Coefficients (lowest degree first) of prod (x - root)."""
        coeffs = [Fraction(1)]
        for root in roots:
            shifted = [Fraction(0)] + coeffs  # x * poly
            coeffs = [a - root * b for a, b in zip(shifted, coeffs + [Fraction(0)])]
        return coeffs

    at = np.zeros((m, alpha), dtype=object)
    g = np.zeros((alpha, r), dtype=object)
    bt = np.zeros((alpha, alpha), dtype=object)
    for i, p in enumerate(pts):
        others = pts[:i] + pts[i + 1:]
        norm = Fraction(1)
        for q in others:
            norm *= p - q
        sign = 1 if norm > 0 else -1  # keep G's scale positive, the sign goes to B^T (as Lavin)
        at[:, i] = [p**j for j in range(m)]
        g[i, :] = [p**j / abs(norm) for j in range(r)]
        coeffs = poly_from_roots(others)
        bt[i, :] = [sign * c for c in coeffs] + [Fraction(0)] * (alpha - len(coeffs))
    at[:, -1] = [Fraction(0)] * (m - 1) + [Fraction(1)]
    g[-1, :] = [Fraction(0)] * (r - 1) + [Fraction(1)]
    bt[-1, :] = poly_from_roots(pts)
    at, g, bt = (np.vectorize(Fraction, otypes=[object])(a) for a in (at, g, bt))
    if exact:
        return at, g, bt
    return tuple(a.astype(np.float64) for a in (at, g, bt))


def round_to(a: np.ndarray, operand_dtype) -> np.ndarray:
    """``a`` rounded (to nearest even) to ``operand_dtype``, returned as float32.

    ``operand_dtype``: numpy float16/float32, the strings ``"float16"``, ``"float32"``,
    ``"bfloat16"`` (or ``torch`` dtypes of those names).
    """
    name = _dtype_name(operand_dtype)
    if name == "float32":
        return a.astype(np.float32)
    if name == "float16":
        return a.astype(np.float16).astype(np.float32)
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
    rounded = np.where(np.isnan(a), bits, rounded)  # keep NaN a NaN
    return rounded.astype(np.uint32).view(np.float32)


def _dtype_name(dtype) -> str:
    text = str(dtype).replace("torch.", "").replace("<class 'numpy.", "").rstrip("'>")
    aliases = {"half": "float16", "fp16": "float16", "bf16": "bfloat16", "float": "float32", "fp32": "float32"}
    text = aliases.get(text, text)
    if text not in ("float16", "bfloat16", "float32"):
        raise ValueError(f"operand_dtype must be float16, bfloat16 or float32, got {dtype!r}")
    return text


def conv2d_winograd(input, weight, bias=None, padding=0, m=2, *, stride=1, dilation=1, groups=1,
                    points=None, operand_dtype=None) -> np.ndarray:
    """Convolution by Winograd F(m x m, 3x3): stride 1, dilation 1, groups 1, any padding.

    Output tiles of m x m (partial tiles at the bottom/right edges are computed on zero-padded
    input and cropped).  ``operand_dtype=None``: everything in float64.  Otherwise the input and
    filter transforms run in float32, the transformed operands U, V are rounded to
    ``operand_dtype`` (float16, "bfloat16" or float32), the products are summed over channels in
    float32 and the output transform runs in float32: the error model of design notes section 5.
    """
    x, wt = as_f64(input, "input"), as_f64(weight, "weight")
    geom = ConvGeometry.from_shapes(x.shape, wt.shape, stride, padding, dilation, groups)
    if geom.stride != (1, 1):
        raise ValueError(f"conv2d_winograd needs stride 1, got stride={geom.stride}")
    if geom.dilation != (1, 1):
        raise ValueError(f"conv2d_winograd needs dilation 1, got dilation={geom.dilation}")
    if geom.groups != 1:
        raise ValueError(f"conv2d_winograd needs groups=1, got groups={geom.groups}")
    if (geom.r, geom.s) != (3, 3):
        raise ValueError(f"conv2d_winograd needs a 3x3 kernel, got weight shape {wt.shape}")
    at, g, bt = winograd_matrices(m, 3, points)
    alpha = m + 2
    tiles_h, tiles_w = -(-geom.p // m), -(-geom.q // m)
    xp = pad_input(x, geom)
    extra_h, extra_w = tiles_h * m + 2 - xp.shape[2], tiles_w * m + 2 - xp.shape[3]
    xp = np.pad(xp, ((0, 0), (0, 0), (0, extra_h), (0, extra_w)))
    tiles = sliding_window_view(xp, (alpha, alpha), axis=(2, 3))[:, :, ::m, ::m]  # N C Th Tw a a

    if operand_dtype is not None:
        _dtype_name(operand_dtype)  # validate before any work
        tiles, wt, at, g, bt = (a.astype(np.float32) for a in (tiles, wt, at, g, bt))
    v = np.einsum("ai,nctwij,bj->nctwab", bt, tiles, bt, optimize=True)  # input transform
    u = np.einsum("ai,kcij,bj->kcab", g, wt, g, optimize=True)  # filter transform
    if operand_dtype is not None:
        v, u = round_to(v, operand_dtype), round_to(u, operand_dtype)
    prod = np.einsum("nctwab,kcab->nktwab", v, u, optimize=True)  # sum over C per point
    y = np.einsum("ia,nktwab,jb->nktwij", at, prod, at, optimize=True)  # output transform
    y = y.transpose(0, 1, 2, 4, 3, 5).reshape(geom.n, geom.k, tiles_h * m, tiles_w * m)
    out = y[:, :, : geom.p, : geom.q].astype(np.float64)
    return _finish(out, bias, geom)
