"""The Triton kernels of :mod:`convbench.kernels.pool` (launchers, configs and static specs are there).

``_max_pool_kernel`` and ``_avg_pool_kernel`` (one output element per lane, windows clipped to
the padded bounds), ``_adaptive_avg_kernel`` and ``_global_avg_kernel`` (output 1x1: a row
reduction per (n, c)); the module docstring of :mod:`convbench.kernels.pool` gives the rules.
"""

import triton
import triton.language as tl


@triton.jit
def _out_coords(pid, C, P, Q, CHANNELS_LAST: tl.constexpr, INT64: tl.constexpr, BLOCK: tl.constexpr):
    """Flat output index in memory order -> (n, c, p, q) and the flat index itself."""
    if INT64:
        pid = pid.to(tl.int64)
    e = pid * BLOCK + tl.arange(0, BLOCK)
    if CHANNELS_LAST:
        c = e % C
        t = e // C
        q = t % Q
        t = t // Q
        p = t % P
        n = t // P
    else:
        q = e % Q
        t = e // Q
        p = t % P
        t = t // P
        c = t % C
        n = t // C
    return e, n, c, p, q


@triton.jit
def _max_pool_kernel(
    x_ptr, y_ptr, idx_ptr,
    # sizes: total outputs, input (C, H, W), output (P, Q)
    total, C, H, W, P, Q,
    # strides: input (N, C, H, W) and output/indices (N, C, P, Q)
    sxn, sxc, sxh, sxw, syn, syc, syp, syq,
    # geometry
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    # meta
    KH: tl.constexpr, KW: tl.constexpr, HAS_INDICES: tl.constexpr, CHANNELS_LAST: tl.constexpr,
    INT64: tl.constexpr, BLOCK: tl.constexpr,
):
    e, n, c, p, q = _out_coords(tl.program_id(0), C, P, Q, CHANNELS_LAST, INT64, BLOCK)
    mask = e < total
    hs = p * stride_h - pad_h
    ws = q * stride_w - pad_w
    base = x_ptr + n * sxn + c * sxc
    # PyTorch starts from the first in-bounds tap (its index is kept for an all -inf window)
    h0 = hs + (tl.maximum(-hs, 0) + dil_h - 1) // dil_h * dil_h
    w0 = ws + (tl.maximum(-ws, 0) + dil_w - 1) // dil_w * dil_w
    best = tl.full((BLOCK,), float("-inf"), tl.float32)
    index = h0 * W + w0
    for kh in tl.static_range(KH):
        h = hs + kh * dil_h
        row_ok = mask & (h >= 0) & (h < H)
        for kw in tl.static_range(KW):
            w = ws + kw * dil_w
            ok = row_ok & (w >= 0) & (w < W)
            v = tl.load(base + h * sxh + w * sxw, mask=ok, other=float("-inf")).to(tl.float32)
            take = ok & ((v > best) | (v != v))  # NaN wins; ties keep the first index
            best = tl.where(take, v, best)
            index = tl.where(take, h * W + w, index)
    out = n * syn + c * syc + p * syp + q * syq
    tl.store(y_ptr + out, best.to(y_ptr.dtype.element_ty), mask=mask)
    if HAS_INDICES:
        tl.store(idx_ptr + out, index.to(tl.int64), mask=mask)


@triton.jit
def avg_divisor(hs, ws, H, W, pad_h, pad_w, divisor, KH: tl.constexpr, KW: tl.constexpr,
                COUNT_INCLUDE_PAD: tl.constexpr, HAS_DIVISOR: tl.constexpr):
    """The divisor of the average-pooling window starting at (hs, ws): ``divisor_override``, the
    window clipped to the padded input (``count_include_pad``) or its in-bounds tap count
    (shared by the forward and the backward, so both divide by the same number)."""
    if HAS_DIVISOR:
        div = (hs * 0).to(tl.float32) + divisor
    else:
        he = tl.minimum(hs + KH, H + pad_h)
        we = tl.minimum(ws + KW, W + pad_w)
        if COUNT_INCLUDE_PAD:
            count = (he - hs) * (we - ws)  # the window clipped to the padded input
        else:
            count = (tl.minimum(he, H) - tl.maximum(hs, 0)) * (tl.minimum(we, W) - tl.maximum(ws, 0))
        div = tl.maximum(count, 1).to(tl.float32)
    return div


@triton.jit
def _avg_pool_kernel(
    x_ptr, y_ptr,
    # sizes: total outputs, input (C, H, W), output (P, Q)
    total, C, H, W, P, Q,
    # strides: input (N, C, H, W) and output (N, C, P, Q)
    sxn, sxc, sxh, sxw, syn, syc, syp, syq,
    # geometry; divisor > 0 overrides the window size
    stride_h, stride_w, pad_h, pad_w, divisor,
    # meta
    KH: tl.constexpr, KW: tl.constexpr, COUNT_INCLUDE_PAD: tl.constexpr, HAS_DIVISOR: tl.constexpr,
    CHANNELS_LAST: tl.constexpr, INT64: tl.constexpr, BLOCK: tl.constexpr,
):
    e, n, c, p, q = _out_coords(tl.program_id(0), C, P, Q, CHANNELS_LAST, INT64, BLOCK)
    mask = e < total
    hs = p * stride_h - pad_h
    ws = q * stride_w - pad_w
    base = x_ptr + n * sxn + c * sxc
    acc = tl.zeros((BLOCK,), tl.float32)
    for kh in tl.static_range(KH):
        h = hs + kh
        row_ok = mask & (h >= 0) & (h < H)
        for kw in tl.static_range(KW):
            w = ws + kw
            ok = row_ok & (w >= 0) & (w < W)
            acc += tl.load(base + h * sxh + w * sxw, mask=ok, other=0.0).to(tl.float32)
    div = avg_divisor(hs, ws, H, W, pad_h, pad_w, divisor, KH, KW, COUNT_INCLUDE_PAD, HAS_DIVISOR)
    out = n * syn + c * syc + p * syp + q * syq
    tl.store(y_ptr + out, (acc / div).to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _adaptive_avg_kernel(
    x_ptr, y_ptr,
    # sizes: total outputs, input (C, H, W), output (P, Q), largest window
    total, C, H, W, P, Q, max_kh, max_kw,
    # strides: input (N, C, H, W) and output (N, C, P, Q)
    sxn, sxc, sxh, sxw, syn, syc, syp, syq,
    # meta
    CHANNELS_LAST: tl.constexpr, INT64: tl.constexpr, BLOCK: tl.constexpr,
):
    e, n, c, p, q = _out_coords(tl.program_id(0), C, P, Q, CHANNELS_LAST, INT64, BLOCK)
    mask = e < total
    hs = p * H // P
    he = ((p + 1) * H + P - 1) // P
    ws = q * W // Q
    we = ((q + 1) * W + Q - 1) // Q
    base = x_ptr + n * sxn + c * sxc
    acc = tl.zeros((BLOCK,), tl.float32)
    for kh in range(0, max_kh):
        h = hs + kh
        row_ok = mask & (h < he)
        for kw in range(0, max_kw):
            w = ws + kw
            ok = row_ok & (w < we)
            acc += tl.load(base + h * sxh + w * sxw, mask=ok, other=0.0).to(tl.float32)
    count = ((he - hs) * (we - ws)).to(tl.float32)
    tl.store(y_ptr + n * syn + c * syc + p * syp + q * syq, (acc / count).to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _global_avg_kernel(
    x_ptr, y_ptr,
    # sizes: channels, plane size H*W
    C, HW,
    # strides: input (N, C, HW) with the plane flattened, output (N, C)
    sxn, sxc, sxs, syn, syc,
    # meta
    INT64: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr,
):
    n = tl.program_id(1)
    if INT64:
        n = n.to(tl.int64)
    c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = c < C
    rows = x_ptr + n * sxn + c[:, None] * sxc
    acc = tl.zeros((BLOCK_C, BLOCK_HW), tl.float32)
    for s0 in range(0, HW, BLOCK_HW):
        s = s0 + tl.arange(0, BLOCK_HW)
        ok = c_ok[:, None] & (s < HW)[None, :]
        acc += tl.load(rows + s[None, :] * sxs, mask=ok, other=0.0).to(tl.float32)
    mean = tl.sum(acc, axis=1) / HW
    tl.store(y_ptr + n * syn + c * syc, mean.to(y_ptr.dtype.element_ty), mask=c_ok)
