"""The weight and bias gradients of ``conv2d`` (wgrad) as an implicit GEMM over N*P*Q.

Per group ``g`` and tap ``(r, s)``::

    dW[k, c, r, s] = sum_t dY[t, k] * X[t, c]        t = (n, p, q) runs over N*P*Q
    X[t, c] = x[n, c, p*stride_h - top + r*dil_h, q*stride_w - left + s*dil_w]   (0 in the padding)

a GEMM with M = K/g, N = C/g and a reduction of N*P*Q, whose B operand is gathered from the
input inside the kernel (no column matrix).  A program owns a BLOCK_M x BLOCK_N tile of one tap
of one group (grid axis 0: tiles x taps, axis 1: groups) and one contiguous slice of the
reduction (axis 2: splits).  The reduction is long exactly where the GEMM is small (ResNet's last
stages: N*P*Q = 49*N, K*C*R*S a few hundred tiles), so it is split over programs; each split
writes its fp32 partial tile to a workspace and :func:`_split_sum_kernel` adds the partials in a
fixed order and casts: deterministic, no atomics.  With one split the tile is stored directly.

The reduction index is decoded to ``(n, p, q)`` per element, so any memory format works (the
strides of ``x`` and ``dY`` are arguments).  ``tl.dot`` takes every dtype (fp16/bf16 on tensor
cores, fp32 "tf32" on tensor cores or "ieee" exact) with fp32 accumulation; C/g or K/g below 16
are masked (C/g == 1, depthwise, would use 1/16 of each tile: :mod:`.depthwise_grad` takes it).

The bias gradient ``db[k] = sum_t dY[t, k]`` is :func:`_bias_grad_kernel`: BLOCK_K channels per
program, the same split reduction.

Reference: the wgrad formulation of Chetlur et al., "cuDNN: Efficient Primitives for Deep
Learning" (2014), and CUTLASS's implicit-GEMM wgrad (split-K "parallel" reduction); re-derived.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from convbench.reference.geometry import ConvGeometry

from .. import _common
from .._static_spec import StaticSpec
from ._gemm import DTYPE_NAME
from .direct import spec_signature


@dataclass(frozen=True)
class WgradConfig:
    """A BLOCK_M (output channels) x BLOCK_N (input channels) tile, BLOCK_T reduction steps."""

    block_m: int
    block_n: int
    block_t: int
    num_warps: int = 4
    num_stages: int = 3

    @property
    def name(self) -> str:
        return f"BM{self.block_m}-BN{self.block_n}-BT{self.block_t}-w{self.num_warps}-s{self.num_stages}"

    def __str__(self) -> str:
        return self.name


#: every block >= 16 (tl.dot); BLOCK_T 32 keeps the fp32 "ieee" dot's operands in registers
CONFIGS: tuple[WgradConfig, ...] = (
    WgradConfig(64, 64, 32, 4, 3),
    WgradConfig(128, 64, 32, 8, 3),
    WgradConfig(64, 128, 32, 8, 3),
    WgradConfig(32, 32, 32, 4, 3),
    WgradConfig(16, 16, 64, 4, 3),   # depthwise and tiny channel counts
    WgradConfig(64, 64, 64, 4, 3),   # 16-bit, long reductions
)

#: the smallest BLOCK_M Triton lowers to wgmma on sm_90 (smaller tiles take mma.sync there)
WGMMA_MIN_ROWS = 64

#: programs worth keeping in flight: two waves of an H200's 132 SMs
TARGET_PROGRAMS = 264
#: each split reduces at least this many BLOCK_T steps (fewer would cost more in partials than
#: it buys in parallelism)
MIN_STEPS_PER_SPLIT = 8
MAX_SPLITS = 128


def configs(dtype: torch.dtype | None = None) -> tuple[WgradConfig, ...]:
    if dtype == torch.float32:  # 128-wide fp32 tiles would need 96 KB per stage pair: keep them small
        return tuple(c for c in CONFIGS if c.block_t <= 32)
    return CONFIGS


def _block(size: int) -> int:
    return 16 if size <= 16 else 32 if size <= 32 else 64


def default_config(geom: ConvGeometry, dtype: torch.dtype) -> WgradConfig:
    """The tile follows K/g and C/g (16, 32 or 64 wide); depthwise-sized problems take the
    16 x 16 tile with a longer reduction step."""
    bm, bn = _block(geom.k_per_group), _block(geom.c_per_group)
    if bm == 16 and bn == 16:
        return CONFIGS[4]
    if bm == 64 and bn == 64:
        return CONFIGS[5] if dtype != torch.float32 and geom.n * geom.p * geom.q >= 4096 else CONFIGS[0]
    return WgradConfig(bm, bn, 32, 4, 3)


def split_count(geom: ConvGeometry, config: WgradConfig, reduction: int) -> int:
    """How many slices of the N*P*Q reduction run in parallel: enough programs to fill the GPU,
    each slice at least MIN_STEPS_PER_SPLIT steps long."""
    tiles = (triton.cdiv(geom.k_per_group, config.block_m) * triton.cdiv(geom.c_per_group, config.block_n)
             * geom.r * geom.s * geom.groups)
    steps = triton.cdiv(reduction, config.block_t)
    wanted = max(1, TARGET_PROGRAMS // tiles)
    return max(1, min(wanted, steps // MIN_STEPS_PER_SPLIT, MAX_SPLITS))


@triton.jit
def _wgrad_kernel(
    x_ptr, dy_ptr, out_ptr,
    # sizes: the reduction runs over T = N*P*Q of the gradient
    H, W, C_PER_G, K_PER_G, P, Q, T, chunk,
    # strides: input (N, C, H, W), grad_output (N, K, P, Q), output (K, C/g, R, S) or the
    # fp32 workspace (splits, K, C/g, R, S) when SPLIT
    sxn, sxc, sxh, sxw,
    syn, syk, syp, syq,
    sok, soc, sor, sos, sosplit,
    S, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    INT64: tl.constexpr, INPUT_PRECISION: tl.constexpr, DOT_UPCAST: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr,
):
    tiles_m = tl.cdiv(K_PER_G, BLOCK_M)
    tiles_n = tl.cdiv(C_PER_G, BLOCK_N)
    pid = tl.program_id(0)
    tap = pid // (tiles_m * tiles_n)
    tile = pid % (tiles_m * tiles_n)
    r = tap // S
    s = tap % S
    g = tl.program_id(1)
    split = tl.program_id(2)
    kg = (tile // tiles_n) * BLOCK_M + tl.arange(0, BLOCK_M)
    cg = (tile % tiles_n) * BLOCK_N + tl.arange(0, BLOCK_N)
    t_arange = tl.arange(0, BLOCK_T)
    if INT64:
        kg, cg, g, t_arange = kg.to(tl.int64), cg.to(tl.int64), g.to(tl.int64), t_arange.to(tl.int64)
    k_ok = kg < K_PER_G
    c_ok = cg < C_PER_G
    dy_k = (g * K_PER_G + kg) * syk
    x_c = (g * C_PER_G + cg) * sxc
    off_h = r * dil_h - pad_h
    off_w = s * dil_w - pad_w

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
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
        # A = dY^T tile (BLOCK_M x BLOCK_T), B = gathered input tile (BLOCK_T x BLOCK_N)
        a = tl.load(dy_ptr + (dy_k[:, None] + (n * syn + p * syp + q * syq)[None, :]),
                    mask=k_ok[:, None] & t_ok[None, :], other=0.0)
        b = tl.load(x_ptr + ((n * sxn + ih * sxh + iw * sxw)[:, None] + x_c[None, :]),
                    mask=x_ok[:, None] & c_ok[None, :], other=0.0)
        if DOT_UPCAST:  # interpreter only: its tl.dot multiplies bf16 bit patterns
            a, b = a.to(tl.float32), b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)

    k = g * K_PER_G + kg
    out = out_ptr + split * sosplit + r * sor + s * sos + (k * sok)[:, None] + (cg * soc)[None, :]
    tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=k_ok[:, None] & c_ok[None, :])


@triton.jit
def _split_sum_kernel(ws_ptr, out_ptr, numel, splits, sws, BLOCK: tl.constexpr):
    """out[i] = sum over the splits of ws[split, i], in split order (deterministic)."""
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = i < numel
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for split in range(0, splits):
        acc += tl.load(ws_ptr + split * sws + i, mask=ok, other=0.0)
    tl.store(out_ptr + i, acc.to(out_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _bias_grad_kernel(dy_ptr, out_ptr, K, P, Q, T, chunk, syn, syk, syp, syq, sosplit,
                      INT64: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_T: tl.constexpr):
    """out[split, k] = sum over one slice of t = (n, p, q) of dY[n, k, p, q] (fp32)."""
    k = tl.program_id(0) * BLOCK_K + tl.arange(0, BLOCK_K)
    t_arange = tl.arange(0, BLOCK_T)
    if INT64:
        k, t_arange = k.to(tl.int64), t_arange.to(tl.int64)
    k_ok = k < K
    split = tl.program_id(1)
    t_begin = split * chunk
    t_end = tl.minimum(t_begin + chunk, T)
    acc = tl.zeros((BLOCK_T, BLOCK_K), dtype=tl.float32)
    for t0 in range(t_begin, t_end, BLOCK_T):
        t = t0 + t_arange
        t_ok = t < t_end
        n = t // (P * Q)
        pq = t % (P * Q)
        off = n * syn + (pq // Q) * syp + (pq % Q) * syq
        acc += tl.load(dy_ptr + (off[:, None] + (k * syk)[None, :]), mask=t_ok[:, None] & k_ok[None, :],
                       other=0.0).to(tl.float32)
    tl.store(out_ptr + split * sosplit + k, tl.sum(acc, axis=0), mask=k_ok)


SUM_BLOCK = 1024
BIAS_BLOCK_K, BIAS_BLOCK_T = 64, 32


def _launch_args(x, dy, out, geom: ConvGeometry, config: WgradConfig, input_precision: str, splits: int,
                 chunk: int, int64: bool):
    top, _, left, _ = geom.padding
    if out.dim() == 4:  # one split: the weight gradient itself
        o_strides = (*out.stride(), 0)
    else:
        o_strides = (*out.stride()[1:], out.stride(0))
    p, q = dy.shape[2], dy.shape[3]
    args = (x, dy, out, geom.h, geom.w, geom.c_per_group, geom.k_per_group, p, q, geom.n * p * q, chunk,
            *x.stride(), *dy.stride(), *o_strides, geom.s, *geom.stride, top, left, *geom.dilation)
    meta = dict(INT64=int64, INPUT_PRECISION=input_precision if x.dtype == torch.float32 else "ieee",
                DOT_UPCAST=_common.interpreting() and x.dtype == torch.bfloat16,
                BLOCK_M=config.block_m, BLOCK_N=config.block_n, BLOCK_T=config.block_t)
    grid = (triton.cdiv(geom.k_per_group, config.block_m) * triton.cdiv(geom.c_per_group, config.block_n)
            * geom.r * geom.s, geom.groups, splits)
    return grid, args, meta


def _resolve(config, geom: ConvGeometry, dtype: torch.dtype) -> WgradConfig:
    if config is None:
        return default_config(geom, dtype)
    if isinstance(config, str):
        named = {c.name: c for c in CONFIGS}
        if config not in named:
            raise ValueError(f"config={config!r} is not a wgrad config; choose one of {list(named)}")
        return named[config]
    if not isinstance(config, WgradConfig):
        raise ValueError(f"config must be a WgradConfig or its name, got {config!r}")
    return config


def launch(x, dy, geom: ConvGeometry, *, input_precision: str = "ieee", config=None,
           splits: int | None = None) -> torch.Tensor:
    """The weight gradient (K, C/g, R, S) in ``x``'s dtype, contiguous.  ``dy`` is (N, K, P', Q')
    with P' <= geom.p and Q' <= geom.q (rows past P' count as zero gradient: the weight gradient
    of a transposed convolution with output_padding uses that); ``splits`` overrides the
    heuristic split of the reduction (deterministic for any value)."""
    cfg = _resolve(config, geom, x.dtype)
    t = geom.n * dy.shape[2] * dy.shape[3]
    if splits is None:
        splits = split_count(geom, cfg, t)
    if isinstance(splits, bool) or not isinstance(splits, int) or splits < 1:
        raise ValueError(f"splits must be a positive int, got {splits!r}")
    chunk = triton.cdiv(triton.cdiv(t, splits), cfg.block_t) * cfg.block_t
    splits = max(1, triton.cdiv(t, chunk))  # no empty slices
    dw = _common.empty_output((geom.k, geom.c_per_group, geom.r, geom.s), x, memory_format=torch.contiguous_format)
    target = dw if splits == 1 else torch.empty((splits, *dw.shape), dtype=torch.float32, device=x.device)
    grid, args, meta = _launch_args(x, dy, target, geom, cfg, input_precision, splits, chunk,
                                    _common.needs_int64(x, dy, target))
    _wgrad_kernel[grid](*args, **meta, num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    if splits > 1:
        _split_sum_kernel[(triton.cdiv(dw.numel(), SUM_BLOCK),)](target, dw, dw.numel(), splits, target.stride(0),
                                                                BLOCK=SUM_BLOCK, num_warps=4)
    return dw


def launch_bias(dy, *, splits: int | None = None) -> torch.Tensor:
    """``dy.sum((0, 2, 3))`` in fp32 arithmetic, in ``dy``'s dtype: the bias gradient."""
    n, k, p, q = dy.shape
    t = n * p * q
    block_k, block_t = BIAS_BLOCK_K, BIAS_BLOCK_T
    if splits is None:
        splits = max(1, min(TARGET_PROGRAMS // triton.cdiv(k, block_k), t // (block_t * MIN_STEPS_PER_SPLIT),
                            MAX_SPLITS))
    chunk = triton.cdiv(triton.cdiv(t, splits), block_t) * block_t
    splits = max(1, triton.cdiv(t, chunk))
    db = _common.empty_output((k,), dy)
    part = torch.empty((splits, k), dtype=torch.float32, device=dy.device)
    _bias_grad_kernel[(triton.cdiv(k, block_k), splits)](dy, part, k, p, q, t, chunk, *dy.stride(), part.stride(0),
                                                         INT64=_common.needs_int64(dy), BLOCK_K=block_k,
                                                         BLOCK_T=block_t, num_warps=4)
    _split_sum_kernel[(triton.cdiv(k, SUM_BLOCK),)](part, db, k, splits, part.stride(0), BLOCK=SUM_BLOCK,
                                                   num_warps=4)
    return db


# --------------------------------------------------------------------------------------------
# static specs
# --------------------------------------------------------------------------------------------
#: ResNet-50's last 3x3 stage (N*P*Q = 49*N: the split case) and a grouped 3x3 layer with 4
#: channels per group (the 16 x 16 tile; depthwise layers take :mod:`.depthwise_grad` instead)
_SPEC_GEOMETRY = ConvGeometry(32, 512, 7, 7, 512, 3, 3, padding=(1, 1, 1, 1))
_SPEC_GROUPED = ConvGeometry(32, 128, 56, 56, 128, 3, 3, padding=(1, 1, 1, 1), groups=32)


def static_specs() -> list[StaticSpec]:
    """The default config of each spec geometry in fp32 ("tf32"), fp16 and bf16, split into a
    workspace, channels_last; every other config once in fp16; the split-sum and bias kernels."""
    specs = []
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        label = "tf32" if dtype == torch.float32 else DTYPE_NAME[dtype]
        precision = "tf32" if dtype == torch.float32 else "ieee"
        for geom in (_SPEC_GEOMETRY, _SPEC_GROUPED):
            x = torch.empty(geom.input_shape, dtype=dtype, device="meta").to(memory_format=torch.channels_last)
            dy = torch.empty(geom.output_shape, dtype=dtype, device="meta").to(memory_format=torch.channels_last)
            ws = torch.empty((4, geom.k, geom.c_per_group, geom.r, geom.s), dtype=torch.float32, device="meta")
            default = default_config(geom, dtype)
            for cfg in dict.fromkeys((default, *configs(dtype))):  # the default may lie outside the list
                if cfg != default and (dtype != torch.float16 or geom is _SPEC_GROUPED):
                    continue
                _, args, meta = _launch_args(x, dy, ws, geom, cfg, precision, 4, 64, False)
                meta["DOT_UPCAST"] = False  # what a GPU launch uses
                signature, constexprs, divisible = spec_signature(_wgrad_kernel, args, meta)
                specs.append(StaticSpec(
                    name=f"conv.wgrad/{label}/{'grouped' if geom.groups > 1 else 'dense'}/{cfg}", fn=_wgrad_kernel,
                    signature=signature, constexprs=constexprs, num_warps=cfg.num_warps,
                    num_stages=cfg.num_stages, default=cfg == default, expect_tensor_cores=True,
                    expect_wgmma=cfg.block_m >= WGMMA_MIN_ROWS,
                    divisible_by_16=divisible))
    specs.append(StaticSpec(
        name="conv.wgrad/split_sum/fp16", fn=_split_sum_kernel,
        signature={"ws_ptr": "*fp32", "out_ptr": "*fp16", "numel": "i32", "splits": "i32", "sws": "i32",
                   "BLOCK": "constexpr"},
        constexprs={"BLOCK": SUM_BLOCK}, num_warps=4, num_stages=1, default=True,
        divisible_by_16=("ws_ptr", "out_ptr")))
    dy = torch.empty(_SPEC_GEOMETRY.output_shape, dtype=torch.float16, device="meta").to(
        memory_format=torch.channels_last)
    part = torch.empty((4, _SPEC_GEOMETRY.k), dtype=torch.float32, device="meta")
    n, k, p, q = dy.shape
    args = (dy, part, k, p, q, n * p * q, 64 * 32, *dy.stride(), part.stride(0))
    meta = dict(INT64=False, BLOCK_K=BIAS_BLOCK_K, BLOCK_T=BIAS_BLOCK_T)
    signature, constexprs, divisible = spec_signature(_bias_grad_kernel, args, meta)
    specs.append(StaticSpec(
        name="conv.wgrad/bias/fp16-cl", fn=_bias_grad_kernel, signature=signature, constexprs=constexprs,
        num_warps=4, num_stages=1, default=True, divisible_by_16=divisible))
    return specs
