"""The Triton kernels of :mod:`convbench.kernels.norm` (launchers, configs and static specs are there).

``_stats_kernel`` (split Welford statistics of row tiles), ``_finalize_kernel`` (merge the splits,
update running statistics) and ``_normalize_kernel`` (the affine map, optional ReLU), with the
helpers the backward kernels share (``_tile``, ``element_program``, ``row_stats``); the module
docstring of :mod:`convbench.kernels.norm` describes the row/element view they share.
"""

import triton
import triton.language as tl


@triton.jit
def _tile(pid, B, I, J, sb, si, sj, e0, INT64: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_E: tl.constexpr):
    """Row numbers, offsets and mask of the [BLOCK_B, BLOCK_E] tile starting at element e0."""
    b = pid * BLOCK_B + tl.arange(0, BLOCK_B)
    e = e0 + tl.arange(0, BLOCK_E)
    if INT64:
        b = b.to(tl.int64)
        e = e.to(tl.int64)
    i = e // J
    j = e - i * J
    off = b[:, None] * sb + (i * si + j * sj)[None, :]
    mask = (b < B)[:, None] & (e < I * J)[None, :]
    return b, i, j, off, mask


@triton.jit
def element_program(pid, B, I, J, INT64: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_E: tl.constexpr):
    """(row a, block of rows b, block of elements) of program ``pid`` on an (A, B/BLOCK_B, I*J/BLOCK_E)
    grid flattened with the element blocks fastest (shared by the normalize and backward kernels)."""
    e_blocks = tl.cdiv(I * J, BLOCK_E)
    b_blocks = tl.cdiv(B, BLOCK_B)
    pid_e = pid % e_blocks
    t = pid // e_blocks
    pid_b = t % b_blocks
    a = t // b_blocks
    if INT64:
        a = a.to(tl.int64)
        pid_e = pid_e.to(tl.int64)
    return a, pid_b, pid_e


@triton.jit
def row_stats(x_ptr, stats_ptr, mean_ptr, var_ptr, a, b, ok, A, SB, sa, sb, CG, eps, RUNNING: tl.constexpr):
    """(shift K, mean of x - K, 1/sqrt(var + eps)) that rows ``b`` of ``a`` are normalized with.

    Batch statistics: those of statistics row (a, b // CG) of the (2, A, SB) ``stats`` array,
    K being that row's first element (CG = 1 in the forward; the backward's channel view of a
    group norm has CG channel rows per group).  Evaluation (RUNNING): K = running_mean[b],
    mean 0, var = running_var[b].  Shared by the normalize and the backward kernels, so both
    compute the same xhat."""
    if RUNNING:
        shift = tl.load(mean_ptr + b, mask=ok, other=0.0).to(tl.float32)
        mean = tl.zeros_like(shift)
        var = tl.load(var_ptr + b, mask=ok, other=1.0).to(tl.float32)
    else:
        s = b // CG
        shift = tl.load(x_ptr + a * sa + s * CG * sb, mask=ok, other=0.0).to(tl.float32)
        mean = tl.load(stats_ptr + a * SB + s, mask=ok, other=0.0)
        var = tl.load(stats_ptr + A * SB + a * SB + s, mask=ok, other=1.0)
    return shift, mean, 1.0 / tl.sqrt_rn(var + eps)


@triton.jit
def _stats_kernel(
    x_ptr, part_ptr,
    # rows (A, B) of elements (I, J), strides, elements per split
    A, B, I, J, sa, sb, si, sj, chunk, splits,
    # meta
    INT64: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_E: tl.constexpr,
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
    base = x_ptr + a * sa
    shift = tl.load(base + rows * sb, mask=rows < B, other=0.0).to(tl.float32)
    count = tl.zeros((BLOCK_B,), tl.float32)
    mean = tl.zeros((BLOCK_B,), tl.float32)
    m2 = tl.zeros((BLOCK_B,), tl.float32)
    start = split * chunk
    end = tl.minimum(start + chunk, I * J)
    for e0 in range(start, end, BLOCK_E):
        b, i, j, off, mask = _tile(pid_b, B, I, J, sb, si, sj, e0, INT64, BLOCK_B, BLOCK_E)
        d = tl.where(mask, tl.load(base + off, mask=mask, other=0.0).to(tl.float32) - shift[:, None], 0.0)
        n_t = tl.sum(mask.to(tl.float32), axis=1)
        mean_t = tl.sum(d, axis=1) / tl.maximum(n_t, 1.0)
        dev = tl.where(mask, d - mean_t[:, None], 0.0)
        m2_t = tl.sum(dev * dev, axis=1)
        total = tl.maximum(count + n_t, 1.0)
        delta = mean_t - mean
        mean += delta * (n_t / total)
        m2 += m2_t + delta * delta * (count * n_t / total)
        count += n_t
    out = (split * A + a) * B + rows
    ok = rows < B
    stride = splits * A * B
    tl.store(part_ptr + out, count, mask=ok)
    tl.store(part_ptr + stride + out, mean, mask=ok)
    tl.store(part_ptr + 2 * stride + out, m2, mask=ok)


@triton.jit
def _finalize_kernel(
    part_ptr, stats_ptr, x_ptr, rm_ptr, rv_ptr,
    # rows (A, B), their strides, number of splits, running-stat momentum
    A, B, sa, sb, splits, momentum,
    # meta: HAS_RUNNING makes one program own all A rows of its BLOCK_B channels
    HAS_RUNNING: tl.constexpr, INT64: tl.constexpr, BLOCK_B: tl.constexpr,
):
    pid = tl.program_id(0)
    b_blocks = tl.cdiv(B, BLOCK_B)
    rows = (pid % b_blocks) * BLOCK_B + tl.arange(0, BLOCK_B)
    if INT64:
        rows = rows.to(tl.int64)
    ok = rows < B
    if HAS_RUNNING:
        a_lo = 0
        a_hi = A
    else:
        a_lo = pid // b_blocks
        a_hi = a_lo + 1
    sum_mean = tl.zeros((BLOCK_B,), tl.float32)
    sum_var = tl.zeros((BLOCK_B,), tl.float32)
    stride = splits * A * B
    for a in range(a_lo, a_hi):
        count = tl.zeros((BLOCK_B,), tl.float32)
        mean = tl.zeros((BLOCK_B,), tl.float32)
        m2 = tl.zeros((BLOCK_B,), tl.float32)
        for s in range(0, splits):
            at = (s * A + a) * B + rows
            n_s = tl.load(part_ptr + at, mask=ok, other=0.0)
            mean_s = tl.load(part_ptr + stride + at, mask=ok, other=0.0)
            m2_s = tl.load(part_ptr + 2 * stride + at, mask=ok, other=0.0)
            total = tl.maximum(count + n_s, 1.0)
            delta = mean_s - mean
            mean += delta * (n_s / total)
            m2 += m2_s + delta * delta * (count * n_s / total)
            count += n_s
        tl.store(stats_ptr + a * B + rows, mean, mask=ok)
        tl.store(stats_ptr + A * B + a * B + rows, m2 / tl.maximum(count, 1.0), mask=ok)
        if HAS_RUNNING:
            shift = tl.load(x_ptr + a * sa + rows * sb, mask=ok, other=0.0).to(tl.float32)
            sum_mean += shift + mean
            sum_var += m2 / tl.maximum(count - 1.0, 1.0)
    if HAS_RUNNING:
        rm = tl.load(rm_ptr + rows, mask=ok, other=0.0).to(tl.float32)
        rv = tl.load(rv_ptr + rows, mask=ok, other=0.0).to(tl.float32)
        rm = (1.0 - momentum) * rm + momentum * (sum_mean / A)
        rv = (1.0 - momentum) * rv + momentum * (sum_var / A)
        tl.store(rm_ptr + rows, rm.to(rm_ptr.dtype.element_ty), mask=ok)
        tl.store(rv_ptr + rows, rv.to(rv_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _normalize_kernel(
    x_ptr, y_ptr, stats_ptr, mean_ptr, var_ptr, w_ptr, bias_ptr,
    # rows (A, B) of elements (I, J), strides, affine strides along (b, i, j), epsilon
    A, B, I, J, sa, sb, si, sj, wb, wi, wj, eps,
    # meta: RUNNING = evaluation mode (normalize with mean_ptr/var_ptr, per row b)
    RUNNING: tl.constexpr, HAS_W: tl.constexpr, HAS_BIAS: tl.constexpr, RELU: tl.constexpr,
    INT64: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_E: tl.constexpr,
):
    a, pid_b, pid_e = element_program(tl.program_id(0), B, I, J, INT64, BLOCK_B, BLOCK_E)
    b, i, j, off, mask = _tile(pid_b, B, I, J, sb, si, sj, pid_e * BLOCK_E, INT64, BLOCK_B, BLOCK_E)
    base = a * sa
    shift, mean, rstd = row_stats(x_ptr, stats_ptr, mean_ptr, var_ptr, a, b, b < B, A, B, sa, sb, 1, eps, RUNNING)
    x = tl.load(x_ptr + base + off, mask=mask, other=0.0).to(tl.float32)
    y = ((x - shift[:, None]) - mean[:, None]) * rstd[:, None]
    w_off = b[:, None] * wb + (i * wi + j * wj)[None, :]
    if HAS_W:
        y = y * tl.load(w_ptr + w_off, mask=mask, other=1.0).to(tl.float32)
    if HAS_BIAS:
        y = y + tl.load(bias_ptr + w_off, mask=mask, other=0.0).to(tl.float32)
    if RELU:
        y = tl.where(y < 0.0, 0.0, y)  # NaN stays NaN, as in torch.relu
    tl.store(y_ptr + base + off, y.to(y_ptr.dtype.element_ty), mask=mask)
