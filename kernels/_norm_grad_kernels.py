"""The backward kernels of :mod:`convbench.kernels.norm`, over the forward's row view.

The input, its output gradient ``dy`` and the input gradient share the (a, b) x (i, j) row view
of the forward (same strides), and each row is normalized with the statistics the forward saved
(:func:`._norm_kernels.row_stats`: nothing is recomputed).  With ``xhat = (x - mean) * rstd``,
``g = dy * weight`` (``dy`` masked where the output is not positive under a fused ReLU)::

    batch statistics:    dx = rstd * (g - mean(g) - xhat * mean(g * xhat))   (means over the group)
    running statistics:  dx = rstd * g
    dweight[k] = sum dy * xhat,   dbias[k] = sum dy    over every element of parameter k

Two views: the *channel view* (rows (n, c) or (-, c): batch, instance and group norm, one
parameter per row; a group's CG channel rows share one statistics row) and the *layer view*
(layer norm: the parameter varies along the row, one statistics row per row).

1. ``_grad_sums_kernel``: split row reduction (the forward's ``_stats_kernel`` tiling: a
   program owns [BLOCK_B rows, a chunk of a row]) of ``sum g`` and ``sum g * xhat`` into
   per-split partials; in the channel view unweighted (``sum dy``, ``sum dy * xhat``: the
   per-channel parameter gradients too), weighted per element in the layer view.
2. ``_grad_means_kernel``: per statistics row, ``mean(g)`` and ``mean(g * xhat)``: the splits
   (and a group's channels, times their weight) added in a fixed order.
3. ``_grad_dx_kernel``: elementwise dx over [BLOCK_B, BLOCK_E] tiles (the normalize kernel's).
4. ``_column_sum_kernel``: per-channel dweight/dbias, the partials of 1. added over (split, a)
   in order; ``_layer_param_grad_kernel`` makes the layer view's per-element partials (a
   program owns a block of elements and a range of rows), then 4. adds its row splits.

Every sum has a fixed order: the gradients are deterministic, and no atomics are used.
"""

import triton
import triton.language as tl

from ._norm_kernels import _tile, element_program, row_stats


@triton.jit
def _masked_grad(dy_ptr, y_ptr, off, mask, RELU: tl.constexpr):
    """dy of one tile in fp32, zero where masked and, under a fused ReLU, where the output y <= 0."""
    dy = tl.load(dy_ptr + off, mask=mask, other=0.0).to(tl.float32)
    if RELU:
        dy = tl.where(tl.load(y_ptr + off, mask=mask, other=0.0).to(tl.float32) > 0.0, dy, 0.0)
    return dy


@triton.jit
def _grad_sums_kernel(
    x_ptr, dy_ptr, y_ptr, w_ptr, stats_ptr, mean_ptr, var_ptr, part_ptr,
    # rows (A, B) of elements (I, J), strides, weight strides along (b, i, j)
    A, B, I, J, sa, sb, si, sj, wb, wi, wj,
    # channel rows per statistics row, epsilon, elements per split, splits per row
    CG, eps, chunk, splits,
    # meta: WEIGHTED multiplies dy by the weight per element (the layer view)
    RUNNING: tl.constexpr, WEIGHTED: tl.constexpr, RELU: tl.constexpr, INT64: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_E: tl.constexpr,
):
    pid = tl.program_id(0)
    split = pid % splits
    t = pid // splits
    b_blocks = tl.cdiv(B, BLOCK_B)
    pid_b = t % b_blocks
    a = t // b_blocks
    rows = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    if INT64:
        a = a.to(tl.int64)
        rows = rows.to(tl.int64)
    ok = rows < B
    shift, mean, rstd = row_stats(x_ptr, stats_ptr, mean_ptr, var_ptr, a, rows, ok, A, B // CG, sa, sb, CG, eps,
                                  RUNNING)
    base = a * sa
    acc_g = tl.zeros((BLOCK_B, BLOCK_E), tl.float32)
    acc_gx = tl.zeros((BLOCK_B, BLOCK_E), tl.float32)
    start = split * chunk
    end = tl.minimum(start + chunk, I * J)
    for e0 in range(start, end, BLOCK_E):
        b, i, j, off, mask = _tile(pid_b, B, I, J, sb, si, sj, e0, INT64, BLOCK_B, BLOCK_E)
        x = tl.load(x_ptr + base + off, mask=mask, other=0.0).to(tl.float32)
        g = _masked_grad(dy_ptr + base, y_ptr + base, off, mask, RELU)
        if WEIGHTED:
            g = g * tl.load(w_ptr + b[:, None] * wb + (i * wi + j * wj)[None, :], mask=mask, other=0.0).to(tl.float32)
        xhat = ((x - shift[:, None]) - mean[:, None]) * rstd[:, None]
        acc_g += g
        acc_gx += tl.where(mask, g * xhat, 0.0)
    out = (split * A + a) * B + rows
    stride = splits * A * B
    tl.store(part_ptr + out, tl.sum(acc_g, axis=1), mask=ok)
    tl.store(part_ptr + stride + out, tl.sum(acc_gx, axis=1), mask=ok)


@triton.jit
def _grad_means_kernel(
    part_ptr, w_ptr, means_ptr,
    # rows (A, B) of the partials, channel rows per statistics row, splits, elements per statistics row
    A, B, CG, splits, count,
    # meta: HAS_W weights each channel row's sums (the channel view with an affine weight)
    HAS_W: tl.constexpr, INT64: tl.constexpr, BLOCK: tl.constexpr,
):
    """means[k, r] = sum over the CG channel rows b of statistics row r = (a, s) of
    weight[b] * sum over splits of part[k, split, a, b], divided by ``count``."""
    r = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    if INT64:
        r = r.to(tl.int64)
    SB = B // CG
    ok = r < A * SB
    a = r // SB
    s = r - a * SB
    stride = splits * A * B
    acc_g = tl.zeros((BLOCK,), tl.float32)
    acc_gx = tl.zeros((BLOCK,), tl.float32)
    for c in range(0, CG):
        b = s * CG + c
        sum_g = tl.zeros((BLOCK,), tl.float32)
        sum_gx = tl.zeros((BLOCK,), tl.float32)
        for k in range(0, splits):
            at = (k * A + a) * B + b
            sum_g += tl.load(part_ptr + at, mask=ok, other=0.0)
            sum_gx += tl.load(part_ptr + stride + at, mask=ok, other=0.0)
        if HAS_W:
            w = tl.load(w_ptr + b, mask=ok, other=0.0).to(tl.float32)
            sum_g = sum_g * w
            sum_gx = sum_gx * w
        acc_g += sum_g
        acc_gx += sum_gx
    tl.store(means_ptr + r, acc_g / count, mask=ok)
    tl.store(means_ptr + A * SB + r, acc_gx / count, mask=ok)


@triton.jit
def _grad_dx_kernel(
    x_ptr, dy_ptr, y_ptr, dx_ptr, w_ptr, stats_ptr, mean_ptr, var_ptr, means_ptr,
    # rows (A, B) of elements (I, J), strides, weight strides along (b, i, j)
    A, B, I, J, sa, sb, si, sj, wb, wi, wj,
    # channel rows per statistics row, epsilon
    CG, eps,
    # meta: RUNNING = evaluation mode (dx = rstd * g)
    RUNNING: tl.constexpr, HAS_W: tl.constexpr, RELU: tl.constexpr, INT64: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_E: tl.constexpr,
):
    a, pid_b, pid_e = element_program(tl.program_id(0), B, I, J, INT64, BLOCK_B, BLOCK_E)
    b, i, j, off, mask = _tile(pid_b, B, I, J, sb, si, sj, pid_e * BLOCK_E, INT64, BLOCK_B, BLOCK_E)
    ok = b < B
    SB = B // CG
    shift, mean, rstd = row_stats(x_ptr, stats_ptr, mean_ptr, var_ptr, a, b, ok, A, SB, sa, sb, CG, eps, RUNNING)
    base = a * sa
    g = _masked_grad(dy_ptr + base, y_ptr + base, off, mask, RELU)
    if HAS_W:
        g = g * tl.load(w_ptr + b[:, None] * wb + (i * wi + j * wj)[None, :], mask=mask, other=0.0).to(tl.float32)
    if RUNNING:
        dx = rstd[:, None] * g
    else:
        r = a * SB + b // CG
        mean_g = tl.load(means_ptr + r, mask=ok, other=0.0)
        mean_gx = tl.load(means_ptr + A * SB + r, mask=ok, other=0.0)
        x = tl.load(x_ptr + base + off, mask=mask, other=0.0).to(tl.float32)
        xhat = ((x - shift[:, None]) - mean[:, None]) * rstd[:, None]
        dx = rstd[:, None] * (g - mean_g[:, None] - xhat * mean_gx[:, None])
    tl.store(dx_ptr + base + off, dx.to(dx_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _layer_param_grad_kernel(
    x_ptr, dy_ptr, y_ptr, stats_ptr, part_ptr,
    # rows (A, B) of elements (I, J), strides, weight strides along (i, j), epsilon
    A, B, I, J, sa, sb, si, sj, wi, wj, eps,
    # rows per split (a multiple of BLOCK_B), splits
    rows_per_split, splits,
    # meta
    RELU: tl.constexpr, INT64: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_E: tl.constexpr,
):
    """part[0/1, split, k] = sum of dy / dy * xhat over the split's rows, for the BLOCK_E
    elements of this program (k = i * wi + j * wj, the flat parameter index)."""
    pid_e = tl.program_id(0)
    split = tl.program_id(1)
    e = pid_e * BLOCK_E + tl.arange(0, BLOCK_E)
    if INT64:
        e = e.to(tl.int64)
        split = split.to(tl.int64)
    e_ok = e < I * J
    i = e // J
    j = e - i * J
    elem = i * si + j * sj
    acc_dy = tl.zeros((BLOCK_B, BLOCK_E), tl.float32)
    acc_dyx = tl.zeros((BLOCK_B, BLOCK_E), tl.float32)
    r_start = split * rows_per_split
    r_end = tl.minimum(r_start + rows_per_split, A * B)
    for r0 in range(r_start, r_end, BLOCK_B):
        r = r0 + tl.arange(0, BLOCK_B)
        r_ok = r < r_end
        a = r // B
        b = r - a * B
        shift, mean, rstd = row_stats(x_ptr, stats_ptr, stats_ptr, stats_ptr, a, b, r_ok, A, B, sa, sb, 1, eps,
                                      False)
        off = (a * sa + b * sb)[:, None] + elem[None, :]
        mask = r_ok[:, None] & e_ok[None, :]
        x = tl.load(x_ptr + off, mask=mask, other=0.0).to(tl.float32)
        dy = _masked_grad(dy_ptr, y_ptr, off, mask, RELU)
        xhat = ((x - shift[:, None]) - mean[:, None]) * rstd[:, None]
        acc_dy += dy
        acc_dyx += tl.where(mask, dy * xhat, 0.0)
    k = i * wi + j * wj
    n_params = I * J
    tl.store(part_ptr + split * n_params + k, tl.sum(acc_dy, axis=0), mask=e_ok)
    tl.store(part_ptr + (splits + split) * n_params + k, tl.sum(acc_dyx, axis=0), mask=e_ok)


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
