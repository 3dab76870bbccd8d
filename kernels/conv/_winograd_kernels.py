"""The Triton kernels behind :mod:`convbench.kernels.conv.winograd` (three stages plus the filter transform).

Transform matrices reach the kernels as ``constexpr`` tuples of floats (rows) plus each row's
first nonzero column, so every transform is unrolled at compile time: zero coefficients vanish
and the multiplies by +-1 fold into adds/subtracts.  The linear combinations are written out in
place rather than in a helper: under the interpreter each ``@triton.jit`` call costs
milliseconds, and there are ~100 per program.  All transform arithmetic is fp32; the
transformed operands are stored in the workspace's dtype (the input dtype) for the GEMM.
Stores round through :func:`to_dtype` only where bf16 needs the interpreter workaround.

Workspace layouts (row-major, ``A = m + 2`` points per dimension, ``T = N * TH * TW`` tiles):
``V[A*A, T, C]`` transformed input, ``U[A*A, C, K]`` transformed filter, ``M[A*A, T, K]`` fp32.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def to_dtype(x, DTYPE: tl.constexpr, EMULATE_RNE: tl.constexpr):
    """``x`` (fp32) rounded to nearest-even in ``DTYPE``.  ``EMULATE_RNE`` (only ever True for
    bf16 under the interpreter, whose fp32 -> bf16 cast truncates) rounds by integer arithmetic
    on the bits, as the GPU's ``cvt.rn.bf16.f32`` does."""
    if EMULATE_RNE:
        bits = x.to(tl.uint32, bitcast=True)
        bits = bits + (0x7FFF + ((bits >> 16) & 1))
        return (bits >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        return x.to(DTYPE)


@triton.jit
def _input_transform_kernel(
    x_ptr, v_ptr,
    # problem: channels, input size, tiles (T = N*TH*TW), padding (top, left)
    C, H, W, T, TH, TW, pad_top, pad_left,
    # input strides (any memory format)
    sxn, sxc, sxh, sxw,
    # transform: B^T as rows, first nonzero per row, tile size m, points per dimension A
    BT: tl.constexpr, BT_FIRST: tl.constexpr, M: tl.constexpr, A: tl.constexpr,
    # blocking
    BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr, INT64: tl.constexpr, EMULATE_RNE: tl.constexpr,
):
    """``V[i*A+j, t, c] = (B^T d B)[i, j]`` for the A x A input patch ``d`` of tile ``t``."""
    t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    if INT64:
        t = t.to(tl.int64)
        c = c.to(tl.int64)
        T = tl.cast(T, tl.int64)  # not T.to(): T == 1 arrives as a constant
    tw = t % TW
    th = (t // TW) % TH
    n = t // (TW * TH)
    h0 = th * M - pad_top
    w0 = tw * M - pad_left
    ok = (t < T)[:, None] & (c < C)[None, :]
    col_ok = ()
    for b in tl.static_range(A):
        col_ok = col_ok + (((w0 >= -b) & (w0 < W - b))[:, None],)
    # the A x A patch, row by row, walking the pointers (zero outside the image)
    row_ptr = x_ptr + (n * sxn + h0 * sxh + w0 * sxw)[:, None] + c[None, :] * sxc
    d = ()
    for a in tl.static_range(A):
        row_ok = ok & ((h0 >= -a) & (h0 < H - a))[:, None]
        ptr = row_ptr
        for b in tl.static_range(A):
            d = d + (tl.load(ptr, mask=row_ok & col_ok[b], other=0.0).to(tl.float32),)
            ptr += sxw
        row_ptr += sxh
    # V = B^T d B, one output row i at a time: R[b] = sum_a BT[i, a] d[a, b]; V[i, j] = sum_b BT[j, b] R[b]
    out = v_ptr + t[:, None] * C + c[None, :]
    point_step = T * C
    for i in tl.static_range(A):
        r = ()
        for b in tl.static_range(A):
            acc = d[BT_FIRST[i] * A + b] * BT[i][BT_FIRST[i]]
            for a in tl.static_range(BT_FIRST[i] + 1, A):
                if BT[i][a] != 0.0:
                    acc += d[a * A + b] * BT[i][a]
            r = r + (acc,)
        for j in tl.static_range(A):
            val = r[BT_FIRST[j]] * BT[j][BT_FIRST[j]]
            for b in tl.static_range(BT_FIRST[j] + 1, A):
                if BT[j][b] != 0.0:
                    val += r[b] * BT[j][b]
            tl.store(out, to_dtype(val, v_ptr.dtype.element_ty, EMULATE_RNE), mask=ok)
            out += point_step


@triton.jit
def _filter_transform_kernel(
    g_ptr, u_ptr,
    # problem: output and input channels
    K, C,
    # weight strides (K, C, 3, 3)
    sgk, sgc, sgr, sgs,
    # transform: G as rows and first nonzeros, points per dimension A
    G: tl.constexpr, G_FIRST: tl.constexpr, A: tl.constexpr,
    # blocking
    BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr, EMULATE_RNE: tl.constexpr,
):
    """``U[i*A+j, c, k] = (G g G^T)[i, j]`` for the 3x3 filter ``g = weight[k, c]``."""
    k = tl.program_id(0) * BLOCK_K + tl.arange(0, BLOCK_K)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    ok = (k < K)[:, None] & (c < C)[None, :]
    base = g_ptr + k[:, None] * sgk + c[None, :] * sgc
    g = ()
    for r in tl.static_range(3):
        for s in tl.static_range(3):
            g = g + (tl.load(base + r * sgr + s * sgs, mask=ok, other=0.0).to(tl.float32),)
    # U = G g G^T, one output row i at a time
    out = u_ptr + c[None, :] * K + k[:, None]
    point_step = C * K
    for i in tl.static_range(A):
        z = ()
        for s in tl.static_range(3):
            acc = g[G_FIRST[i] * 3 + s] * G[i][G_FIRST[i]]
            for r in tl.static_range(G_FIRST[i] + 1, 3):
                if G[i][r] != 0.0:
                    acc += g[r * 3 + s] * G[i][r]
            z = z + (acc,)
        for j in tl.static_range(A):
            val = z[G_FIRST[j]] * G[j][G_FIRST[j]]
            for s in tl.static_range(G_FIRST[j] + 1, 3):
                if G[j][s] != 0.0:
                    val += z[s] * G[j][s]
            tl.store(out, to_dtype(val, u_ptr.dtype.element_ty, EMULATE_RNE), mask=ok)
            out += point_step


@triton.jit
def _batched_gemm_kernel(
    v_ptr, u_ptr, m_ptr,
    # GEMM sizes per point: [T x C] @ [C x K]
    T, C, K,
    # blocking (BLOCK_P points per program, dividing the number of points) and precision
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_P: tl.constexpr,
    INPUT_PRECISION: tl.constexpr, INT64: tl.constexpr, UPCAST: tl.constexpr,
):
    """``M[p] = V[p] @ U[p]`` for the transformed points ``p`` of program axis 2, fp32 result.

    Shared with :mod:`convbench.kernels.conv.fft`, whose points are frequencies and whose [T x 2C] @
    [2C x 2K] products are the real embedding of complex ones."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    first = tl.program_id(2) * BLOCK_P
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    if INT64:
        first = first.to(tl.int64)
        rm = rm.to(tl.int64)
        T = tl.cast(T, tl.int64)  # not T.to(): T == 1 arrives as a constant
    rk = tl.arange(0, BLOCK_K)
    m_ok = (rm < T)[:, None]
    n_ok = (rn < K)[None, :]
    a_first = v_ptr + first * T * C + (rm[:, None] * C + rk[None, :])
    b_first = u_ptr + first * C * K + (rk[:, None] * K + rn[None, :])
    c_ptr = m_ptr + first * T * K + (rm[:, None] * K + rn[None, :])
    b_step = BLOCK_K * K
    a_next = T * C
    b_next = C * K
    c_next = T * K
    for j in tl.static_range(BLOCK_P):
        a_ptr = a_first
        b_ptr = b_first
        acc = tl.full((BLOCK_M, BLOCK_N), 0.0, tl.float32)
        for k0 in range(0, C, BLOCK_K):
            k_ok = rk < C - k0
            a = tl.load(a_ptr, mask=m_ok & k_ok[None, :], other=0.0)
            b = tl.load(b_ptr, mask=k_ok[:, None] & n_ok, other=0.0)
            if UPCAST:  # interpreter only: see kernels.conv._gemm.dot_acc
                acc = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
            else:
                acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)
            a_ptr += BLOCK_K
            b_ptr += b_step
        tl.store(c_ptr, acc, mask=m_ok & n_ok)
        if j + 1 < BLOCK_P:  # next point
            a_first += a_next
            b_first += b_next
            c_ptr += c_next


@triton.jit
def _output_transform_kernel(
    m_ptr, bias_ptr, y_ptr,
    # problem: output channels, output size, tiles
    K, P, Q, T, TH, TW,
    # output strides (any memory format)
    syn, syk, syp, syq,
    # transform: A^T as rows and first nonzeros, tile size m, points per dimension A
    AT: tl.constexpr, AT_FIRST: tl.constexpr, M: tl.constexpr, A: tl.constexpr,
    # blocking and options
    BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr, HAS_BIAS: tl.constexpr, INT64: tl.constexpr,
    EMULATE_RNE: tl.constexpr,
):
    """``y[tile] = A^T M A (+ bias)`` for each tile, masked at the right and bottom edges."""
    t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    k = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    if INT64:
        t = t.to(tl.int64)
        k = k.to(tl.int64)
        T = tl.cast(T, tl.int64)  # not T.to(): T == 1 arrives as a constant
    ok = (t < T)[:, None] & (k < K)[None, :]
    src = m_ptr + t[:, None] * K + k[None, :]
    mv = ()
    point_step = T * K
    for p in tl.static_range(A * A):
        mv = mv + (tl.load(src, mask=ok, other=0.0),)
        src += point_step
    if HAS_BIAS:
        bias = tl.load(bias_ptr + k, mask=k < K, other=0.0).to(tl.float32)[None, :]
    tw = t % TW
    th = (t // TW) % TH
    n = t // (TW * TH)
    p0 = th * M
    q0 = tw * M
    col_ok = ()
    for j in tl.static_range(M):
        col_ok = col_ok + ((q0 < Q - j)[:, None],)
    row_ptr = y_ptr + (n * syn + p0 * syp + q0 * syq)[:, None] + k[None, :] * syk
    # Y = A^T M A, one output row i at a time: Z[b] = sum_a AT[i, a] M[a, b]; Y[i, j] = sum_b AT[j, b] Z[b]
    for i in tl.static_range(M):
        z = ()
        for b in tl.static_range(A):
            acc = mv[AT_FIRST[i] * A + b] * AT[i][AT_FIRST[i]]
            for a in tl.static_range(AT_FIRST[i] + 1, A):
                if AT[i][a] != 0.0:
                    acc += mv[a * A + b] * AT[i][a]
            z = z + (acc,)
        row_ok = ok & (p0 < P - i)[:, None]
        ptr = row_ptr
        for j in tl.static_range(M):
            val = z[AT_FIRST[j]] * AT[j][AT_FIRST[j]]
            for b in tl.static_range(AT_FIRST[j] + 1, A):
                if AT[j][b] != 0.0:
                    val += z[b] * AT[j][b]
            if HAS_BIAS:
                val += bias
            tl.store(ptr, to_dtype(val, y_ptr.dtype.element_ty, EMULATE_RNE), mask=row_ok & col_ok[j])
            ptr += syq
        row_ptr += syp
