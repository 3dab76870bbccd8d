"""The backward kernels of :mod:`convbench.kernels.norm`.

The launcher lays input and output gradient out as rows of a contiguous (R, P, Q) array: a row
is one statistics group, ``P`` indexes the affine parameter inside the row and ``Q`` the
elements sharing it (batch norm: (C, 1, N*HW); instance: (N*C, 1, HW); group: (N*G, C/G, HW);
layer: (rows, numel of normalized_shape, 1)); row ``r``'s parameters are
``weight[(r % G_MOD) * P + p]``.  With ``xhat = (x - mean) * rstd`` and ``g = dy * weight``::

    training:   dx = rstd * (g - mean(g) - xhat * mean(g * xhat))     (means over the row)
    evaluation: dx = rstd * g                                           (statistics are constants)
    dweight[j] = sum dy * xhat,  dbias[j] = sum dy   over every element of parameter j

``_norm_grad_rows_kernel`` (one program per row) makes the two row sums in a first pass, which
also stores the per-(row, p) sums of dy and dy*xhat, and writes dx in a second;
``_column_sum_kernel`` adds those per-(row, p) sums over the rows sharing a parameter, in row
order (deterministic, no atomics).  A fused ReLU's gradient masks dy where the recomputed output
``xhat * weight + bias`` is not positive.
"""

import triton
import triton.language as tl


@triton.jit
def _norm_grad_rows_kernel(
    x_ptr, dy_ptr, dx_ptr, mean_ptr, rstd_ptr, w_ptr, b_ptr, t_ptr,
    # row layout (R, P, Q) contiguous; parameters of row r start at (r % G_MOD) * P; T rows
    R, P, Q, G_MOD,
    # meta
    TRAINING: tl.constexpr, HAS_W: tl.constexpr, RELU: tl.constexpr, WANT_DX: tl.constexpr,
    WANT_PARAMS: tl.constexpr, INT64: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_Q: tl.constexpr,
):
    row = tl.program_id(0)
    if INT64:
        row = row.to(tl.int64)
    base = row * P * Q
    mean = tl.load(mean_ptr + row)
    rstd = tl.load(rstd_ptr + row)
    pbase = (row % G_MOD) * P
    acc_g = tl.zeros((BLOCK_P, BLOCK_Q), tl.float32)
    acc_gx = tl.zeros((BLOCK_P, BLOCK_Q), tl.float32)
    if TRAINING or WANT_PARAMS:
        for p0 in range(0, P, BLOCK_P):
            p = p0 + tl.arange(0, BLOCK_P)
            p_ok = p < P
            if HAS_W:
                w = tl.load(w_ptr + pbase + p, mask=p_ok, other=0.0).to(tl.float32)
            else:
                w = tl.full((BLOCK_P,), 1.0, tl.float32)
            if RELU:
                b = tl.load(b_ptr + pbase + p, mask=p_ok, other=0.0).to(tl.float32)
            t_dy = tl.zeros((BLOCK_P,), tl.float32)
            t_dyx = tl.zeros((BLOCK_P,), tl.float32)
            for q0 in range(0, Q, BLOCK_Q):
                q = q0 + tl.arange(0, BLOCK_Q)
                m = p_ok[:, None] & (q < Q)[None, :]
                off = base + p[:, None] * Q + q[None, :]
                xhat = (tl.load(x_ptr + off, mask=m, other=0.0).to(tl.float32) - mean) * rstd
                dy = tl.load(dy_ptr + off, mask=m, other=0.0).to(tl.float32)
                if RELU:
                    dy = tl.where(xhat * w[:, None] + b[:, None] > 0.0, dy, 0.0)
                xhat = tl.where(m, xhat, 0.0)
                g = dy * w[:, None]
                acc_g += g
                acc_gx += g * xhat
                t_dy += tl.sum(dy, axis=1)
                t_dyx += tl.sum(dy * xhat, axis=1)
            if WANT_PARAMS:
                tl.store(t_ptr + row * P + p, t_dy, mask=p_ok)
                tl.store(t_ptr + R * P + row * P + p, t_dyx, mask=p_ok)
    if WANT_DX:
        count = P * Q * 1.0
        mean_g = tl.sum(tl.sum(acc_g, axis=1), axis=0) / count
        mean_gx = tl.sum(tl.sum(acc_gx, axis=1), axis=0) / count
        for p0 in range(0, P, BLOCK_P):
            p = p0 + tl.arange(0, BLOCK_P)
            p_ok = p < P
            if HAS_W:
                w = tl.load(w_ptr + pbase + p, mask=p_ok, other=0.0).to(tl.float32)
            else:
                w = tl.full((BLOCK_P,), 1.0, tl.float32)
            if RELU:
                b = tl.load(b_ptr + pbase + p, mask=p_ok, other=0.0).to(tl.float32)
            for q0 in range(0, Q, BLOCK_Q):
                q = q0 + tl.arange(0, BLOCK_Q)
                m = p_ok[:, None] & (q < Q)[None, :]
                off = base + p[:, None] * Q + q[None, :]
                xhat = (tl.load(x_ptr + off, mask=m, other=0.0).to(tl.float32) - mean) * rstd
                dy = tl.load(dy_ptr + off, mask=m, other=0.0).to(tl.float32)
                if RELU:
                    dy = tl.where(xhat * w[:, None] + b[:, None] > 0.0, dy, 0.0)
                g = dy * w[:, None]
                if TRAINING:
                    dx = rstd * (g - mean_g - xhat * mean_gx)
                else:
                    dx = rstd * g
                tl.store(dx_ptr + off, dx.to(dx_ptr.dtype.element_ty), mask=m)


@triton.jit
def _column_sum_kernel(t_ptr, out_ptr, rows, cols, INT64: tl.constexpr, BLOCK: tl.constexpr):
    """out[j] = sum over i of t[i, j] for a contiguous (rows, cols) fp32 array, i in order."""
    j = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    if INT64:
        j = j.to(tl.int64)
    ok = j < cols
    acc = tl.zeros((BLOCK,), tl.float32)
    for i in range(0, rows):
        acc += tl.load(t_ptr + i * cols + j, mask=ok, other=0.0)
    tl.store(out_ptr + j, acc.to(out_ptr.dtype.element_ty), mask=ok)
