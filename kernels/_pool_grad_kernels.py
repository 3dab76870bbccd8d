"""The backward kernels of :mod:`convbench.kernels.pool`: gathers, no atomics.

A program owns BLOCK consecutive *input* elements in the input's memory order and, for each,
visits every output window that can contain it: output row ``p`` covers input row ``h`` through
tap ``kh`` when ``h + pad - kh*dil == p*stride``, so a constexpr loop over the KH x KW taps
finds them all (ceil(KH*dil/stride) windows per axis do).  Each input gradient is a fixed-order
sum: deterministic, and exact for max pooling (one term per window that chose the element).

* max pooling adds ``dy[p, q]`` where the forward's saved index is this element's ``h*W + w``
  (so ties and NaN follow the forward's choice, as torch's do);
* average pooling adds ``dy[p, q] / divisor(p, q)`` with the forward's own divisor
  (:func:`._pool_kernels.avg_divisor`);
* adaptive average pooling visits the outputs whose window ``[floor(i*H/OH), ceil((i+1)*H/OH))``
  holds ``h``: at most ``span`` of them per axis, from ``floor(h*OH/H)`` on.
"""

import triton
import triton.language as tl

from ._pool_kernels import avg_divisor


@triton.jit
def _in_coords(pid, C, H, W, CHANNELS_LAST: tl.constexpr, INT64: tl.constexpr, BLOCK: tl.constexpr):
    """Flat input index in memory order -> (n, c, h, w) and the flat index itself."""
    if INT64:
        pid = pid.to(tl.int64)
    e = pid * BLOCK + tl.arange(0, BLOCK)
    if CHANNELS_LAST:
        c = e % C
        t = e // C
        w = t % W
        t = t // W
        h = t % H
        n = t // H
    else:
        w = e % W
        t = e // W
        h = t % H
        t = t // H
        c = t % C
        n = t // C
    return e, n, c, h, w


@triton.jit
def _window_of(h, pad, k, dil, stride, P):
    """The output row whose window meets input row h through tap k, and whether there is one."""
    t = h + pad - k * dil
    tc = tl.maximum(t, 0)
    p = tc // stride
    return p, (t >= 0) & (tc - p * stride == 0) & (p < P)


@triton.jit
def _max_pool_grad_kernel(
    dy_ptr, idx_ptr, dx_ptr,
    # sizes: total inputs, input (C, H, W), output (P, Q)
    total, C, H, W, P, Q,
    # strides: input gradient (N, C, H, W), output gradient and indices (N, C, P, Q)
    sxn, sxc, sxh, sxw, syn, syc, syp, syq, sin, sic, sip, siq,
    # geometry
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    # meta
    KH: tl.constexpr, KW: tl.constexpr, CHANNELS_LAST: tl.constexpr, INT64: tl.constexpr, BLOCK: tl.constexpr,
):
    e, n, c, h, w = _in_coords(tl.program_id(0), C, H, W, CHANNELS_LAST, INT64, BLOCK)
    mask = e < total
    me = h * W + w
    acc = tl.zeros((BLOCK,), tl.float32)
    for kh in tl.static_range(KH):
        p, p_ok = _window_of(h, pad_h, kh, dil_h, stride_h, P)
        for kw in tl.static_range(KW):
            q, q_ok = _window_of(w, pad_w, kw, dil_w, stride_w, Q)
            ok = mask & p_ok & q_ok
            idx = tl.load(idx_ptr + n * sin + c * sic + p * sip + q * siq, mask=ok, other=-1)
            g = tl.load(dy_ptr + n * syn + c * syc + p * syp + q * syq, mask=ok & (idx == me), other=0.0)
            acc += g.to(tl.float32)
    tl.store(dx_ptr + n * sxn + c * sxc + h * sxh + w * sxw, acc.to(dx_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _avg_pool_grad_kernel(
    dy_ptr, dx_ptr,
    # sizes: total inputs, input (C, H, W), output (P, Q)
    total, C, H, W, P, Q,
    # strides: input gradient (N, C, H, W), output gradient (N, C, P, Q)
    sxn, sxc, sxh, sxw, syn, syc, syp, syq,
    # geometry; divisor > 0 overrides the window size
    stride_h, stride_w, pad_h, pad_w, divisor,
    # meta
    KH: tl.constexpr, KW: tl.constexpr, COUNT_INCLUDE_PAD: tl.constexpr, HAS_DIVISOR: tl.constexpr,
    CHANNELS_LAST: tl.constexpr, INT64: tl.constexpr, BLOCK: tl.constexpr,
):
    e, n, c, h, w = _in_coords(tl.program_id(0), C, H, W, CHANNELS_LAST, INT64, BLOCK)
    mask = e < total
    acc = tl.zeros((BLOCK,), tl.float32)
    for kh in tl.static_range(KH):
        p, p_ok = _window_of(h, pad_h, kh, 1, stride_h, P)
        for kw in tl.static_range(KW):
            q, q_ok = _window_of(w, pad_w, kw, 1, stride_w, Q)
            ok = mask & p_ok & q_ok
            g = tl.load(dy_ptr + n * syn + c * syc + p * syp + q * syq, mask=ok, other=0.0).to(tl.float32)
            div = avg_divisor(p * stride_h - pad_h, q * stride_w - pad_w, H, W, pad_h, pad_w, divisor, KH, KW,
                              COUNT_INCLUDE_PAD, HAS_DIVISOR)
            acc += tl.where(ok, g / div, 0.0)
    tl.store(dx_ptr + n * sxn + c * sxc + h * sxh + w * sxw, acc.to(dx_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _adaptive_avg_grad_kernel(
    dy_ptr, dx_ptr,
    # sizes: total inputs, input (C, H, W), output (P, Q), most windows per input row/column
    total, C, H, W, P, Q, span_h, span_w,
    # strides: input gradient (N, C, H, W), output gradient (N, C, P, Q)
    sxn, sxc, sxh, sxw, syn, syc, syp, syq,
    # meta
    CHANNELS_LAST: tl.constexpr, INT64: tl.constexpr, BLOCK: tl.constexpr,
):
    e, n, c, h, w = _in_coords(tl.program_id(0), C, H, W, CHANNELS_LAST, INT64, BLOCK)
    mask = e < total
    p0 = h * P // H
    q0 = w * Q // W
    acc = tl.zeros((BLOCK,), tl.float32)
    for dp in range(0, span_h):
        p = p0 + dp
        hs = p * H // P
        he = ((p + 1) * H + P - 1) // P
        p_ok = mask & (p < P) & (hs <= h) & (h < he)
        for dq in range(0, span_w):
            q = q0 + dq
            ws = q * W // Q
            we = ((q + 1) * W + Q - 1) // Q
            ok = p_ok & (q < Q) & (ws <= w) & (w < we)
            g = tl.load(dy_ptr + n * syn + c * syc + p * syp + q * syq, mask=ok, other=0.0).to(tl.float32)
            acc += tl.where(ok, g / ((he - hs) * (we - ws)).to(tl.float32), 0.0)
    tl.store(dx_ptr + n * sxn + c * sxc + h * sxh + w * sxw, acc.to(dx_ptr.dtype.element_ty), mask=mask)
