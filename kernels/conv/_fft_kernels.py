"""The Triton kernels behind :mod:`convbench.kernels.conv.fft`: tile spectra and the inverse.

The GEMM stage is :func:`convbench.kernels.conv._winograd_kernels._batched_gemm_kernel` on the real
embedding of the complex products (see :func:`_forward_kernel`).

Every DFT is a real/imaginary pair of ``tl.dot`` products with cos/sin tables (fp32 operands,
:data:`DFT_PRECISION`), along the last axis of a ``[rows, F]`` tensor (:func:`_dft_rows`).
F <= 32 is one dense product.  F = 64 is a Cooley-Tukey split 64 = 16 x 4: a 16-point DFT over ``n1`` (``n = 4 n1 +
n2``), twiddles ``w64^(n2 k1)``, then the 4-point DFT over ``n2`` as a product with the 16 x 16
block-diagonal ``I_4 (x) DFT_4`` (``tl.dot`` needs every dimension >= 16).  Its output comes
in the order ``j = 4 k1 + k2`` for frequency ``k1 + 16 k2``; :func:`_freq_of` maps positions to
frequencies, so loads and stores put every value where it belongs without a reordering pass.

Table layout (fp32, from :func:`convbench.kernels.conv.fft.dft_tables`): dense: cos[F, F], sin[F, F];
split: cos16, sin16 (256 each), kron-cos, kron-sin (256 each), twiddle cos, sin ([4, 16] each).
"""

from __future__ import annotations

import triton
import triton.language as tl

from ._winograd_kernels import to_dtype

#: DFT products: 3xTF32 (each fp32 operand split into two TF32 parts, three tensor-core products,
#: fp32 accumulation; ~2^-21 relative per product).  Plain fp32 ("ieee") lowers to FMA dots that
#: spill 10-18 KB per thread at F >= 32 on sm_80/sm_90; the interpreter computes either exactly.
DFT_PRECISION: tl.constexpr = tl.constexpr("tf32x3")


@triton.jit
def _freq_of(j, F: tl.constexpr):
    """Frequency held at position ``j`` of a :func:`_dft_rows` output."""
    if F > 32:
        return j // 4 + 16 * (j % 4)
    else:
        return j


@triton.jit
def _cdot(xr, xi, tab_ptr, OFF: tl.constexpr, N: tl.constexpr, SIGN: tl.constexpr,
          REAL_IN: tl.constexpr, REAL_OUT: tl.constexpr):
    """``(xr + i xi) @ (cos + i SIGN sin)`` for the N x N tables at ``tab_ptr + OFF`` (the
    imaginary input is ignored with ``REAL_IN``; only the real part is formed with ``REAL_OUT``)."""
    idx = tl.arange(0, N)[:, None] * N + tl.arange(0, N)[None, :]
    cos = tl.load(tab_ptr + OFF + idx)
    sin = tl.load(tab_ptr + OFF + N * N + idx)
    yr = tl.dot(xr, cos, input_precision=DFT_PRECISION)
    if not REAL_IN:
        if SIGN > 0:
            yr -= tl.dot(xi, sin, input_precision=DFT_PRECISION)
        else:
            yr += tl.dot(xi, sin, input_precision=DFT_PRECISION)
    yi = yr
    if not REAL_OUT:
        yi = tl.dot(xr, sin, input_precision=DFT_PRECISION)
        if SIGN < 0:
            yi = -yi
        if not REAL_IN:
            yi += tl.dot(xi, cos, input_precision=DFT_PRECISION)
    return yr, yi


@triton.jit
def _dft_rows(xr, xi, tab_ptr, ROWS: tl.constexpr, F: tl.constexpr, SIGN: tl.constexpr,
              REAL_IN: tl.constexpr, REAL_OUT: tl.constexpr):
    """DFT with kernel ``exp(SIGN 2 pi i n k / F)`` along the last axis of ``[ROWS, F]`` (natural
    order in, :func:`_freq_of` order out), fp32; real input/real part only by the flags."""
    if F <= 32:
        yr, yi = _cdot(xr, xi, tab_ptr, 0, F, SIGN, REAL_IN, REAL_OUT)
    else:
        # n = 4 n1 + n2: bring n1 last, 16-point DFT -> [ROWS, n2, k1]
        ar = tl.reshape(tl.permute(tl.reshape(xr, (ROWS, 16, 4)), (0, 2, 1)), (ROWS * 4, 16))
        ai = ar
        if not REAL_IN:
            ai = tl.reshape(tl.permute(tl.reshape(xi, (ROWS, 16, 4)), (0, 2, 1)), (ROWS * 4, 16))
        br, bi = _cdot(ar, ai, tab_ptr, 0, 16, SIGN, REAL_IN, False)
        # twiddles w64^(n2 k1)
        tw = tl.arange(0, 4)[:, None] * 16 + tl.arange(0, 16)[None, :]
        tc = tl.load(tab_ptr + 1024 + tw)[None, :, :]
        ts = tl.load(tab_ptr + 1088 + tw)[None, :, :]
        if SIGN < 0:
            ts = -ts
        br = tl.reshape(br, (ROWS, 4, 16))
        bi = tl.reshape(bi, (ROWS, 4, 16))
        cr = br * tc - bi * ts
        ci = bi * tc + br * ts
        # 4-point DFT over n2 as (I_4 kron DFT_4): [ROWS, n2, k1hi, k1lo] -> [ROWS, k1hi, (k1lo, n2)]
        cr = tl.reshape(tl.permute(tl.reshape(cr, (ROWS, 4, 4, 4)), (0, 2, 3, 1)), (ROWS * 4, 16))
        ci = tl.reshape(tl.permute(tl.reshape(ci, (ROWS, 4, 4, 4)), (0, 2, 3, 1)), (ROWS * 4, 16))
        yr, yi = _cdot(cr, ci, tab_ptr, 512, 16, SIGN, False, REAL_OUT)
    return tl.reshape(yr, (ROWS, F)), tl.reshape(yi, (ROWS, F))


@triton.jit
def _forward_kernel(
    src_ptr, tab_ptr, out_ptr,
    # source: channels, image size, patches per image row/column, patch origin step, padding
    C, H, W, TH, TW, STEP_H, STEP_W, pad_top, pad_left,
    # source strides (patch-major "n", channel, row, column)
    s_n, s_c, s_h, s_w,
    # spectrum strides (frequency, patch, channel); FILTER: offset of the second GEMM row
    o_f, o_p, o_c, o_row,
    # tile size, scale, filter (conjugate, 2 x 2 real block), channels per program
    F: tl.constexpr, SCALE: tl.constexpr, FILTER: tl.constexpr, BLOCK_C: tl.constexpr,
    INT64: tl.constexpr, EMULATE_RNE: tl.constexpr,
):
    """Half spectrum (v <= F/2) of one F x F patch per channel, zero outside the source.

    Input patches store (re, im) at ``+0, +1``: a row of the real-embedded GEMM's left operand.
    Filters (spectrum G) store the real 2 x 2 block ``[[Re G, -Im G], [Im G, Re G]]`` (rows
    ``+0`` and ``+o_row``), so that ``[Re X, Im X] @ block = [Re, Im] of X * conj(G)``."""
    patch = tl.program_id(0)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    if INT64:
        patch = patch.to(tl.int64)
        c = c.to(tl.int64)
    tw = patch % TW
    th = (patch // TW) % TH
    n = patch // (TW * TH)
    ii = tl.arange(0, F)
    h = th * STEP_H - pad_top + ii
    w = tw * STEP_W - pad_left + ii
    c_ok = c < C
    ptr = (src_ptr + n * s_n + c[:, None, None] * s_c + (h * s_h)[None, :, None]
           + (w * s_w)[None, None, :])
    ok = c_ok[:, None, None] & ((h >= 0) & (h < H))[None, :, None] & ((w >= 0) & (w < W))[None, None, :]
    x = tl.reshape(tl.load(ptr, mask=ok, other=0.0).to(tl.float32), (BLOCK_C * F, F))
    # along w: [(c, h), v]; then along h: [(c, v), u]
    ar, ai = _dft_rows(x, x, tab_ptr, BLOCK_C * F, F, -1, True, False)
    ar = tl.reshape(tl.permute(tl.reshape(ar, (BLOCK_C, F, F)), (0, 2, 1)), (BLOCK_C * F, F))
    ai = tl.reshape(tl.permute(tl.reshape(ai, (BLOCK_C, F, F)), (0, 2, 1)), (BLOCK_C * F, F))
    xr, xi = _dft_rows(ar, ai, tab_ptr, BLOCK_C * F, F, -1, False, False)
    xr = tl.reshape(xr, (BLOCK_C, F, F)) * SCALE
    xi = tl.reshape(xi, (BLOCK_C, F, F)) * SCALE
    v = _freq_of(ii, F)[None, :, None]
    u = _freq_of(ii, F)[None, None, :]
    freq = u * (F // 2 + 1) + v
    if INT64:
        freq = freq.to(tl.int64)
    dst = out_ptr + freq * o_f + patch * o_p + c[:, None, None] * o_c
    keep = c_ok[:, None, None] & (v <= F // 2)
    re = to_dtype(xr, out_ptr.dtype.element_ty, EMULATE_RNE)
    im = to_dtype(xi, out_ptr.dtype.element_ty, EMULATE_RNE)
    tl.store(dst, re, mask=keep)
    if FILTER:  # negate in fp32: the interpreter keeps bf16 as integers
        tl.store(dst + 1, to_dtype(-xi, out_ptr.dtype.element_ty, EMULATE_RNE), mask=keep)
        tl.store(dst + o_row, im, mask=keep)
        tl.store(dst + o_row + 1, re, mask=keep)
    else:
        tl.store(dst + 1, im, mask=keep)


@triton.jit
def _inverse_kernel(
    z_ptr, tab_ptr, bias_ptr, y_ptr,
    # problem: output channels, output size, tiles, valid outputs per tile (rows, columns)
    K, P, Q, T, TH, TW, LH, LW,
    # output strides (any memory format)
    s_n, s_k, s_p, s_q,
    # tile size, 1/F^2 over the forward scale, channels per program
    F: tl.constexpr, SCALE: tl.constexpr, BLOCK_K: tl.constexpr,
    HAS_BIAS: tl.constexpr, INT64: tl.constexpr, EMULATE_RNE: tl.constexpr,
):
    """Real inverse DFT of one tile's half spectrum per channel; keeps the LH x LW valid corner."""
    tile = tl.program_id(0)
    k = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    if INT64:
        tile = tile.to(tl.int64)
        k = k.to(tl.int64)
        T = tl.cast(T, tl.int64)  # not T.to(): T == 1 arrives as a constant
    k_ok = k < K
    ii = tl.arange(0, F)
    # load as [k, v, u]; v > F/2 is absent (zero); weights 1, 2, ..., 2, 1 fold in the mirror half
    v = ii[None, :, None]
    u = ii[None, None, :]
    freq = u * (F // 2 + 1) + v
    if INT64:
        freq = freq.to(tl.int64)
    src = z_ptr + freq * (T * K * 2) + tile * (K * 2) + k[:, None, None] * 2
    ok = k_ok[:, None, None] & (v <= F // 2)
    weight = tl.where((v == 0) | (v == F // 2), SCALE, 2.0 * SCALE)
    zr = tl.reshape(tl.load(src, mask=ok, other=0.0) * weight, (BLOCK_K * F, F))
    zi = tl.reshape(tl.load(src + 1, mask=ok, other=0.0) * weight, (BLOCK_K * F, F))
    # along u: [(k, v), h]; then along v (real part only): [(k, h), w]
    br, bi = _dft_rows(zr, zi, tab_ptr, BLOCK_K * F, F, 1, False, False)
    br = tl.reshape(tl.permute(tl.reshape(br, (BLOCK_K, F, F)), (0, 2, 1)), (BLOCK_K * F, F))
    bi = tl.reshape(tl.permute(tl.reshape(bi, (BLOCK_K, F, F)), (0, 2, 1)), (BLOCK_K * F, F))
    y, _ = _dft_rows(br, bi, tab_ptr, BLOCK_K * F, F, 1, False, True)
    y = tl.reshape(y, (BLOCK_K, F, F))
    if HAS_BIAS:
        y += tl.load(bias_ptr + k, mask=k_ok, other=0.0).to(tl.float32)[:, None, None]
    h = _freq_of(ii, F)[None, :, None]
    w = _freq_of(ii, F)[None, None, :]
    tw = tile % TW
    th = (tile // TW) % TH
    n = tile // (TW * TH)
    p = th * LH + h
    q = tw * LW + w
    dst = y_ptr + n * s_n + k[:, None, None] * s_k + p * s_p + q * s_q
    keep = k_ok[:, None, None] & (h < LH) & (w < LW) & (p < P) & (q < Q)
    tl.store(dst, to_dtype(y, y_ptr.dtype.element_ty, EMULATE_RNE), mask=keep)
