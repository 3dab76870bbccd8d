"""The input and weight gradients of a conv2d with C/g == 1 (depthwise layers, channel multipliers,
single-channel stems), by direct summation instead of a GEMM.

The GEMM-shaped backward kernels (:mod:`.transpose`'s phase dgrad, :mod:`.wgrad`) give each group
its own programs and a tile at least 16 wide along C/g and K/g: a depthwise layer there uses one
column of a 16 x 16 tile, and MobileNetV2 needs 9 x 7,136 wgrad programs per step.  Here the
channels are the tile's vector dimension instead, as in :mod:`.direct`'s depthwise forward:

* dgrad ``_dgrad_kernel``: a program owns BLOCK_P x BLOCK_Q input pixels of one image times
  BLOCK_C input channels and gathers, per tap (r, s) and multiplier j::

      dx[n, c, h, w] += dy[n, c*m + j, p, q] * w[c*m + j, 0, r, s]
      where p = (h + pad_top - r*dil_h) / stride_h is whole and in [0, P), likewise q

  (no zero insertion, no atomics: every dx element is written once, by its own program).
* wgrad ``_wgrad_kernel``: a program owns one tap and BLOCK_K output channels and reduces a
  slice of t = (n, p, q)::

      dw[k, 0, r, s] = sum_t dy[n, k, p, q] * x[n, k // m, p*stride_h - pad_top + r*dil_h, ...]

  accumulating a BLOCK_T x BLOCK_K tile of fp32 products and summing it at the end.  Long
  reductions (few channels, many pixels) are split over programs and the fp32 partials added in
  a fixed order by :func:`.wgrad._split_sum_kernel`: deterministic.

Both read any memory format (strides are arguments); the tile follows the contiguous dimension
(channels for channels_last, pixels for NCHW).  fp32/fp16/bf16 with fp32 accumulation;
``input_precision`` does not apply (FMA, not ``tl.dot``: products are exact in fp32).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from convbench.reference.geometry import ConvGeometry

from .. import _common
from .._static_spec import StaticSpec
from .direct import DEPTHWISE_CONFIGS, DepthwiseConfig, _pixel_tile, depthwise_tile, spec_signature
from .wgrad import MAX_SPLITS, MIN_STEPS_PER_SPLIT, SUM_BLOCK, TARGET_PROGRAMS, _split_sum_kernel


def applies(geom: ConvGeometry) -> bool:
    """Whether the gradients of ``geom`` take this module's kernels: one input channel per group."""
    return geom.c_per_group == 1


# --------------------------------------------------------------------------------------------
# configs
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DepthwiseWgradConfig:
    """A BLOCK_T (reduction steps) x BLOCK_K (output channels) tile of products per program."""

    block_t: int
    block_k: int
    num_warps: int = 4

    @property
    def name(self) -> str:
        return str(self)

    def __str__(self) -> str:
        return f"dw-T{self.block_t}-K{self.block_k}-w{self.num_warps}"


WGRAD_CONFIGS: tuple[DepthwiseWgradConfig, ...] = (
    DepthwiseWgradConfig(32, 64),    # channels_last: 64 contiguous channels per row
    DepthwiseWgradConfig(128, 8),    # NCHW: 128 contiguous pixels per channel
    DepthwiseWgradConfig(64, 16),    # NCHW, fewer pixels per image
)


def dgrad_config(geom: ConvGeometry, channels_last: bool, interpreter: bool = False) -> DepthwiseConfig:
    """The depthwise forward's tile heuristic, applied to the input gradient's C x H x W."""
    return depthwise_tile(geom.c, geom.w, channels_last, interpreter)


def wgrad_config(geom: ConvGeometry, channels_last: bool, interpreter: bool = False) -> DepthwiseWgradConfig:
    """Channels along the tile for channels_last (and in the interpreter, which pays per program
    and per tile operation, not per memory transaction); pixels along it for NCHW."""
    if channels_last or interpreter:
        return WGRAD_CONFIGS[0]
    return WGRAD_CONFIGS[1] if geom.p * geom.q >= 128 else WGRAD_CONFIGS[2]


def wgrad_splits(geom: ConvGeometry, config: DepthwiseWgradConfig, reduction: int) -> int:
    """Slices of the N*P*Q reduction run in parallel (as :func:`.wgrad.split_count`): enough
    programs for two waves, each slice at least MIN_STEPS_PER_SPLIT steps of BLOCK_T."""
    tiles = geom.r * geom.s * triton.cdiv(geom.k, config.block_k)
    steps = triton.cdiv(reduction, config.block_t)
    return max(1, min(max(1, TARGET_PROGRAMS // tiles), steps // MIN_STEPS_PER_SPLIT, MAX_SPLITS))


# --------------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------------
@triton.jit
def _dgrad_kernel(
    dy_ptr, w_ptr, dx_ptr,
    # sizes: dx is (N, C, H, W), dy (N, C*M, P, Q); M = K_PER_G is the channel multiplier
    H, W, C, K_PER_G, P, Q,
    # strides: grad_output (N, K, P, Q), weight (K, 1, R, S), input gradient (N, C, H, W)
    syn, syk, syp, syq,
    swk, swr, sws,
    sxn, sxc, sxh, sxw,
    stride_h, stride_w, pad_top, pad_left, dil_h, dil_w,
    R: tl.constexpr, S: tl.constexpr, INT64: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_C: tl.constexpr,
):
    n, h, w = _pixel_tile(tl.program_id(0), H, W, BLOCK_P, BLOCK_Q)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    if INT64:
        n, h, w, c = n.to(tl.int64), h.to(tl.int64), w.to(tl.int64), c.to(tl.int64)
    pix_ok = (h < H) & (w < W)
    c_ok = c < C

    acc = tl.zeros((BLOCK_P * BLOCK_Q, BLOCK_C), dtype=tl.float32)
    for r in range(R):
        ph = h + pad_top - r * dil_h  # = p * stride_h when output row p used input row h at tap r
        p = ph // stride_h  # only read where ph >= 0, so floor and truncation agree
        h_ok = pix_ok & (ph >= 0) & (p * stride_h == ph) & (p < P)
        for s in range(S):
            qw = w + pad_left - s * dil_w
            q = qw // stride_w
            ok = h_ok & (qw >= 0) & (q * stride_w == qw) & (q < Q)
            dy_pix = (n * syn + p * syp + q * syq)[:, None]
            mask = ok[:, None] & c_ok[None, :]
            for j in range(K_PER_G):
                k = c * K_PER_G + j
                dyv = tl.load(dy_ptr + (dy_pix + (k * syk)[None, :]), mask=mask, other=0.0)
                wv = tl.load(w_ptr + (k * swk + r * swr + s * sws), mask=c_ok, other=0.0)
                acc += dyv.to(tl.float32) * wv.to(tl.float32)[None, :]

    dx_ptrs = dx_ptr + n * sxn + (h * sxh + w * sxw)[:, None] + (c * sxc)[None, :]
    tl.store(dx_ptrs, acc.to(dx_ptr.dtype.element_ty), mask=pix_ok[:, None] & c_ok[None, :])


@triton.jit
def _wgrad_kernel(
    x_ptr, dy_ptr, out_ptr,
    # sizes: the reduction runs over T = N*P*Q of the gradient; K_PER_G is the channel multiplier
    H, W, K, K_PER_G, P, Q, T, chunk,
    # strides: input (N, C, H, W), grad_output (N, K, P, Q), output (K, 1, R, S) or the fp32
    # workspace (splits, K, 1, R, S)
    sxn, sxc, sxh, sxw,
    syn, syk, syp, syq,
    sok, sor, sos, sosplit,
    S, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w,
    INT64: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr,
):
    tiles_k = tl.cdiv(K, BLOCK_K)
    tap = tl.program_id(0) // tiles_k
    r = tap // S
    s = tap % S
    split = tl.program_id(1)
    k = (tl.program_id(0) % tiles_k) * BLOCK_K + tl.arange(0, BLOCK_K)
    t_arange = tl.arange(0, BLOCK_T)
    if INT64:
        k, t_arange = k.to(tl.int64), t_arange.to(tl.int64)
    k_ok = k < K
    dy_k = (k * syk)[None, :]
    x_c = ((k // K_PER_G) * sxc)[None, :]
    off_h = r * dil_h - pad_top
    off_w = s * dil_w - pad_left

    acc = tl.zeros((BLOCK_T, BLOCK_K), dtype=tl.float32)
    t_begin = split * chunk
    t_end = tl.minimum(t_begin + chunk, T)
    for t0 in range(t_begin, t_end, BLOCK_T):
        t = t0 + t_arange
        t_ok = t < t_end
        n = t // (P * Q)
        pq = t % (P * Q)
        p = pq // Q
        q = pq % Q
        ih = p * stride_h + off_h
        iw = q * stride_w + off_w
        x_ok = t_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        dyv = tl.load(dy_ptr + ((n * syn + p * syp + q * syq)[:, None] + dy_k),
                      mask=t_ok[:, None] & k_ok[None, :], other=0.0)
        xv = tl.load(x_ptr + ((n * sxn + ih * sxh + iw * sxw)[:, None] + x_c),
                     mask=x_ok[:, None] & k_ok[None, :], other=0.0)
        acc += dyv.to(tl.float32) * xv.to(tl.float32)

    out = out_ptr + split * sosplit + r * sor + s * sos + k * sok
    tl.store(out, tl.sum(acc, axis=0).to(out_ptr.dtype.element_ty), mask=k_ok)


# --------------------------------------------------------------------------------------------
# launchers
# --------------------------------------------------------------------------------------------
def _dgrad_args(dy, weight, dx, geom: ConvGeometry, config: DepthwiseConfig, int64: bool):
    top, _, left, _ = geom.padding
    (sh, sw), (dh, dw) = geom.stride, geom.dilation
    args = (dy, weight, dx, geom.h, geom.w, geom.c, geom.k_per_group, geom.p, geom.q,
            *dy.stride(), weight.stride(0), weight.stride(2), weight.stride(3), *dx.stride(),
            sh, sw, top, left, dh, dw)
    meta = dict(R=geom.r, S=geom.s, INT64=int64, BLOCK_P=config.block_p, BLOCK_Q=config.block_q,
                BLOCK_C=config.block_c)
    grid = (geom.n * triton.cdiv(geom.h, config.block_p) * triton.cdiv(geom.w, config.block_q),
            triton.cdiv(geom.c, config.block_c))
    return grid, args, meta


def launch_input_grad(dy, weight, geom: ConvGeometry, *, config: DepthwiseConfig | None = None) -> torch.Tensor:
    """dgrad of a C/g == 1 conv2d: the input gradient (N, C, H, W) in ``dy``'s memory format,
    from ``dy`` (N, K, P, Q) and the weight (K, 1, R, S)."""
    if not applies(geom):
        raise ValueError(f"the depthwise dgrad takes C/g == 1, got {geom}")
    if config is None:
        config = dgrad_config(geom, _common.is_channels_last(dy), _common.interpreting())
    elif config not in DEPTHWISE_CONFIGS:
        raise ValueError(f"config {config} is not a depthwise config; choose one of "
                         f"{[str(c) for c in DEPTHWISE_CONFIGS]}")
    dx = _common.empty_output(geom.input_shape, dy)
    grid, args, meta = _dgrad_args(dy, weight, dx, geom, config, _common.needs_int64(dy, weight, dx))
    _dgrad_kernel[grid](*args, **meta, num_warps=config.num_warps)
    return dx


def _wgrad_args(x, dy, out, geom: ConvGeometry, config: DepthwiseWgradConfig, chunk: int, int64: bool):
    top, _, left, _ = geom.padding
    o_strides = (out.stride(0), out.stride(2), out.stride(3), 0) if out.dim() == 4 else \
        (out.stride(1), out.stride(3), out.stride(4), out.stride(0))
    p, q = dy.shape[2], dy.shape[3]
    args = (x, dy, out, geom.h, geom.w, geom.k, geom.k_per_group, p, q, geom.n * p * q, chunk,
            *x.stride(), *dy.stride(), *o_strides, geom.s, *geom.stride, top, left, *geom.dilation)
    meta = dict(INT64=int64, BLOCK_T=config.block_t, BLOCK_K=config.block_k)
    return args, meta


def launch_weight_grad(x, dy, geom: ConvGeometry, *, config: DepthwiseWgradConfig | None = None,
                       splits: int | None = None) -> torch.Tensor:
    """wgrad of a C/g == 1 conv2d: the weight gradient (K, 1, R, S) in ``x``'s dtype, contiguous.
    ``dy`` is (N, K, P', Q') with P' <= geom.p, Q' <= geom.q (as :func:`.wgrad.launch`);
    ``splits`` overrides the heuristic split of the reduction (deterministic for any value)."""
    if not applies(geom):
        raise ValueError(f"the depthwise wgrad takes C/g == 1, got {geom}")
    if config is None:
        config = wgrad_config(geom, _common.is_channels_last(x), _common.interpreting())
    elif config not in WGRAD_CONFIGS:
        raise ValueError(f"config {config} is not a depthwise wgrad config; choose one of "
                         f"{[str(c) for c in WGRAD_CONFIGS]}")
    t = geom.n * dy.shape[2] * dy.shape[3]
    if splits is None:
        splits = wgrad_splits(geom, config, t)
    if isinstance(splits, bool) or not isinstance(splits, int) or splits < 1:
        raise ValueError(f"splits must be a positive int, got {splits!r}")
    chunk = triton.cdiv(triton.cdiv(t, splits), config.block_t) * config.block_t
    splits = max(1, triton.cdiv(t, chunk))  # no empty slices
    dw = _common.empty_output(geom.weight_shape, x, memory_format=torch.contiguous_format)
    target = dw if splits == 1 else torch.empty((splits, *dw.shape), dtype=torch.float32, device=x.device)
    args, meta = _wgrad_args(x, dy, target, geom, config, chunk, _common.needs_int64(x, dy, target))
    grid = (geom.r * geom.s * triton.cdiv(geom.k, config.block_k), splits)
    _wgrad_kernel[grid](*args, **meta, num_warps=config.num_warps)
    if splits > 1:
        _split_sum_kernel[(triton.cdiv(dw.numel(), SUM_BLOCK),)](target, dw, dw.numel(), splits, target.stride(0),
                                                                BLOCK=SUM_BLOCK, num_warps=4)
    return dw


# --------------------------------------------------------------------------------------------
# static specs
# --------------------------------------------------------------------------------------------
#: MobileNetV2's first expanded depthwise layer (stride 1) and a stride-2 one, batch 32
_SPEC_GEOMETRIES = (ConvGeometry(32, 144, 56, 56, 144, 3, 3, padding=(1, 1, 1, 1), groups=144),
                    ConvGeometry(32, 144, 56, 56, 144, 3, 3, stride=(2, 2), padding=(1, 1, 1, 1), groups=144))


def _spec(kernel: str, fn, args, meta, config, dtype_name: str, geom: ConvGeometry, channels_last: bool,
          default: bool) -> StaticSpec:
    signature, constexprs, divisible = spec_signature(fn, args, meta)
    layout = "cl" if channels_last else "nchw"
    return StaticSpec(name=f"conv.{kernel}/{dtype_name}/s{geom.stride[0]}/{layout}/{config}", fn=fn,
                      signature=signature, constexprs=constexprs, num_warps=config.num_warps, num_stages=1,
                      default=default, divisible_by_16=divisible)


def static_specs() -> list[StaticSpec]:
    """Each kernel's default config per layout in fp32, fp16 and bf16 (stride 1); every config
    once in fp16, NCHW, stride 2."""
    specs = []
    runs = [(dtype, name, _SPEC_GEOMETRIES[0], cl, None) for dtype, name in
            ((torch.float32, "fp32"), (torch.float16, "fp16"), (torch.bfloat16, "bf16")) for cl in (False, True)]
    runs.append((torch.float16, "fp16", _SPEC_GEOMETRIES[1], False, "all"))
    for dtype, name, geom, channels_last, which in runs:
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        x = torch.empty(geom.input_shape, dtype=dtype, device="meta", memory_format=fmt)
        w = torch.empty(geom.weight_shape, dtype=dtype, device="meta")
        dy = torch.empty(geom.output_shape, dtype=dtype, device="meta", memory_format=fmt)
        ws = torch.empty((4, *geom.weight_shape), dtype=torch.float32, device="meta")
        d_default, w_default = dgrad_config(geom, channels_last), wgrad_config(geom, channels_last)
        for cfg in (DEPTHWISE_CONFIGS if which else (d_default,)):
            _, args, meta = _dgrad_args(dy, w, x, geom, cfg, False)
            specs.append(_spec("depthwise_dgrad", _dgrad_kernel, args, meta, cfg, name, geom, channels_last,
                               cfg == d_default))
        for cfg in (WGRAD_CONFIGS if which else (w_default,)):
            args, meta = _wgrad_args(x, dy, ws, geom, cfg, 64 * cfg.block_t, False)
            specs.append(_spec("depthwise_wgrad", _wgrad_kernel, args, meta, cfg, name, geom, channels_last,
                               cfg == w_default))
    return specs
