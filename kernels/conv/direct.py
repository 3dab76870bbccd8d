"""Direct convolution: every output tile is an FMA sum over (C/g, R, S), no data transformation.

Two Triton kernels share one launcher:

* ``_direct_kernel`` (any geometry with C/g > 1): a program owns BLOCK_P x BLOCK_Q output pixels
  of one image times BLOCK_N output channels of one group, and accumulates the outer product
  ``x[pixels, c] * w[c, channels]`` in fp32 for every tap (r, s) and input channel c of the
  group.  The tap's input offsets and padding mask are computed once per (r, s), outside the
  channel loop.
* ``_depthwise_kernel`` (C/g == 1: depthwise layers, channel multipliers, single-channel
  stems): a program owns BLOCK_P x BLOCK_Q pixels times BLOCK_C channels, each output channel
  reading only its own input channel.  Depthwise layers are bandwidth bound, so the tile is
  laid out along the contiguous dimension: BLOCK_C = 1 with a wide BLOCK_Q row for NCHW,
  a wide BLOCK_C for channels_last (the unit stride is specialised by Triton, so loads and
  stores along it are coalesced and, when aligned, vectorised).

Layouts: NCHW or channels_last input, any weight strides; all strides are kernel arguments and
the output follows the input's memory format.  fp32/fp16/bf16 with fp32 accumulation
(``input_precision`` is accepted for API uniformity: FMA in fp32 is always exact-product
"ieee").  Per-side padding, stride, dilation, groups, asymmetric kernels and bias are all
supported; 64-bit index arithmetic is switched on by ``_common.needs_int64``.

Reference: the definition of convolution (e.g. Chellapilla et al., "High Performance
Convolutional Neural Networks for Document Processing", 2006, section 2, "direct" loops).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from convbench.reference.geometry import ConvGeometry

from .. import _common
from .._static_spec import StaticSpec
from ._epilogue import NONE, Epilogue, apply_epilogue, sample_epilogue

ERROR_SCALE = 1.0


# --------------------------------------------------------------------------------------------
# configs
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DirectConfig:
    """General kernel: a BLOCK_P x BLOCK_Q pixel tile times BLOCK_N output channels."""

    block_p: int
    block_q: int
    block_n: int
    num_warps: int = 4

    @property
    def name(self) -> str:
        """Readable and unique among the module's configs (static spec names use it)."""
        return str(self)

    def __str__(self) -> str:
        return f"P{self.block_p}-Q{self.block_q}-N{self.block_n}-w{self.num_warps}"


@dataclass(frozen=True)
class DepthwiseConfig:
    """Depthwise kernel: a BLOCK_P x BLOCK_Q pixel tile times BLOCK_C channels."""

    block_p: int
    block_q: int
    block_c: int
    num_warps: int = 4

    @property
    def name(self) -> str:
        """Readable and unique among the module's configs (static spec names use it)."""
        return str(self)

    def __str__(self) -> str:
        return f"dw-P{self.block_p}-Q{self.block_q}-C{self.block_c}-w{self.num_warps}"


CONFIGS: tuple[DirectConfig, ...] = (
    DirectConfig(8, 16, 16),   # few output channels per group (ResNeXt, stems with K/g small)
    DirectConfig(8, 8, 32),
    DirectConfig(4, 16, 64),
    DirectConfig(4, 8, 64),    # small feature maps (7x7 .. 14x14)
)
DEPTHWISE_CONFIGS: tuple[DepthwiseConfig, ...] = (
    DepthwiseConfig(8, 32, 1),   # NCHW, wide rows
    DepthwiseConfig(16, 8, 1),   # NCHW, narrow feature maps (<= 8 wide)
    DepthwiseConfig(16, 16, 1),  # NCHW, 9..16 wide
    DepthwiseConfig(2, 8, 64),   # channels_last: vectorised along C
    DepthwiseConfig(4, 4, 32),   # channels_last, fewer channels
)


def configs(dtype: torch.dtype | None = None) -> tuple:
    """Every config a direct launch may use, general and depthwise (any dtype: FMA, no shared
    memory tiles); :func:`configs_for` says which of them apply to a geometry."""
    return CONFIGS + DEPTHWISE_CONFIGS


def configs_for(geom: ConvGeometry) -> tuple:
    """The configs that apply to ``geom`` (the kernel is chosen by C/g)."""
    return DEPTHWISE_CONFIGS if geom.c_per_group == 1 else CONFIGS


def depthwise_tile(channels: int, width: int, channels_last: bool, interpreter: bool = False) -> DepthwiseConfig:
    """The depthwise tile for an output of ``channels`` x ``width``-wide rows (the forward's and,
    in :mod:`.depthwise_grad`, the input gradient's): along the channels for channels_last (and
    in the interpreter), along the row for NCHW."""
    if (channels_last or interpreter) and channels >= 32:
        return DEPTHWISE_CONFIGS[3] if channels >= 64 else DEPTHWISE_CONFIGS[4]
    if width <= 8:
        return DEPTHWISE_CONFIGS[1]
    return DEPTHWISE_CONFIGS[2] if width <= 16 else DEPTHWISE_CONFIGS[0]


def default_config(geom: ConvGeometry, channels_last: bool = False, interpreter: bool = False):
    """Heuristic: the contiguous dimension picks the depthwise tile; K/g picks BLOCK_N.

    ``interpreter``: the CPU interpreter pays per program and per tile op, not per memory
    transaction, so there the depthwise kernel takes the channel-wide tile in either layout (a
    960-channel layer at 1x1: 15 programs instead of 960; MobileNetV2's forward at 32x32 in
    16 s instead of 190 s).  Every config is tested in either layout, so correctness does not
    depend on which one the heuristic names."""
    if geom.c_per_group == 1:
        return depthwise_tile(geom.k, geom.q, channels_last, interpreter)
    if geom.k_per_group <= 16:
        return CONFIGS[0]
    if geom.k_per_group <= 32:
        return CONFIGS[1]
    return CONFIGS[3] if geom.q <= 8 else CONFIGS[2]


# --------------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------------
@triton.jit
def _pixel_tile(pid, P, Q, BLOCK_P: tl.constexpr, BLOCK_Q: tl.constexpr):
    """(n, p, q) of a BLOCK_P x BLOCK_Q output tile; q varies fastest, in runs of BLOCK_Q."""
    tiles_q = tl.cdiv(Q, BLOCK_Q)
    tiles_p = tl.cdiv(P, BLOCK_P)
    tq = pid % tiles_q
    rest = pid // tiles_q
    tp = rest % tiles_p
    n = rest // tiles_p
    m = tl.arange(0, BLOCK_P * BLOCK_Q)
    p = tp * BLOCK_P + m // BLOCK_Q
    q = tq * BLOCK_Q + m % BLOCK_Q
    return n, p, q


@triton.jit
def _direct_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr,
    # the fused epilogue's scale, shift (K,) and residual (the output's layout); read only when asked
    scale_ptr, shift_ptr, res_ptr,
    # sizes
    H, W, C_PER_G, K_PER_G, P, Q,
    # strides: input (N, C, H, W), weight (K, C/g, R, S), output (N, K, P, Q)
    sxn, sxc, sxh, sxw,
    swk, swc, swr, sws,
    syn, syk, syp, syq,
    # geometry
    R, S, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w,
    # meta
    HAS_BIAS: tl.constexpr, INT64: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr, HAS_RES: tl.constexpr, ACT: tl.constexpr,
):
    n, p, q = _pixel_tile(tl.program_id(0), P, Q, BLOCK_P, BLOCK_Q)
    kg = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)  # channel within the group
    g = tl.program_id(2)
    if INT64:
        n, p, q, kg, g = n.to(tl.int64), p.to(tl.int64), q.to(tl.int64), kg.to(tl.int64), g.to(tl.int64)
    k = g * K_PER_G + kg
    pix_ok = (p < P) & (q < Q)
    k_ok = kg < K_PER_G

    x_base = x_ptr + n * sxn + g * C_PER_G * sxc
    acc = tl.zeros((BLOCK_P * BLOCK_Q, BLOCK_N), dtype=tl.float32)
    for r in range(R):
        ih = p * stride_h - pad_top + r * dil_h
        h_ok = pix_ok & (ih >= 0) & (ih < H)
        for s in range(S):
            iw = q * stride_w - pad_left + s * dil_w
            ok = h_ok & (iw >= 0) & (iw < W)
            # offsets (not pointers) stay live across the channel loop: fewer registers
            x_off = ih * sxh + iw * sxw
            w_off = k * swk + r * swr + s * sws
            for c in range(C_PER_G):
                xv = tl.load(x_base + (x_off + c * sxc), mask=ok, other=0.0).to(tl.float32)
                wv = tl.load(w_ptr + (w_off + c * swc), mask=k_ok, other=0.0).to(tl.float32)
                acc += xv[:, None] * wv[None, :]

    if HAS_BIAS:
        acc += tl.load(b_ptr + k, mask=k_ok, other=0.0).to(tl.float32)[None, :]
    mask = pix_ok[:, None] & k_ok[None, :]
    acc = apply_epilogue(acc, k, k_ok, n * syn + p * syp + q * syq, k * syk, mask, scale_ptr, shift_ptr, res_ptr,
                         HAS_SCALE, HAS_SHIFT, HAS_RES, ACT)
    y_ptrs = y_ptr + n * syn + (p * syp + q * syq)[:, None] + (k * syk)[None, :]
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _depthwise_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr,
    scale_ptr, shift_ptr, res_ptr,
    # sizes (C/g == 1; K_PER_G is the channel multiplier, output channel k reads k // K_PER_G)
    H, W, K, K_PER_G, P, Q,
    # strides: input (N, C, H, W), weight (K, 1, R, S), output (N, K, P, Q)
    sxn, sxc, sxh, sxw,
    swk, swr, sws,
    syn, syk, syp, syq,
    # geometry (R, S constexpr: constant-trip tap loops)
    stride_h, stride_w, pad_top, pad_left, dil_h, dil_w,
    R: tl.constexpr, S: tl.constexpr,
    # meta
    HAS_BIAS: tl.constexpr, INT64: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_C: tl.constexpr,
    HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr, HAS_RES: tl.constexpr, ACT: tl.constexpr,
):
    n, p, q = _pixel_tile(tl.program_id(0), P, Q, BLOCK_P, BLOCK_Q)
    k = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    if INT64:
        n, p, q, k = n.to(tl.int64), p.to(tl.int64), q.to(tl.int64), k.to(tl.int64)
    pix_ok = (p < P) & (q < Q)
    k_ok = k < K

    x_base = x_ptr + n * sxn + ((k // K_PER_G) * sxc)[None, :]
    acc = tl.zeros((BLOCK_P * BLOCK_Q, BLOCK_C), dtype=tl.float32)
    for r in range(R):
        ih = p * stride_h - pad_top + r * dil_h
        h_ok = pix_ok & (ih >= 0) & (ih < H)
        for s in range(S):
            iw = q * stride_w - pad_left + s * dil_w
            ok = h_ok & (iw >= 0) & (iw < W)
            xv = tl.load(x_base + (ih * sxh + iw * sxw)[:, None], mask=ok[:, None] & k_ok[None, :], other=0.0)
            wv = tl.load(w_ptr + k * swk + r * swr + s * sws, mask=k_ok, other=0.0)
            acc += xv.to(tl.float32) * wv.to(tl.float32)[None, :]

    if HAS_BIAS:
        acc += tl.load(b_ptr + k, mask=k_ok, other=0.0).to(tl.float32)[None, :]
    mask = pix_ok[:, None] & k_ok[None, :]
    acc = apply_epilogue(acc, k, k_ok, n * syn + p * syp + q * syq, k * syk, mask, scale_ptr, shift_ptr, res_ptr,
                         HAS_SCALE, HAS_SHIFT, HAS_RES, ACT)
    y_ptrs = y_ptr + n * syn + (p * syp + q * syq)[:, None] + (k * syk)[None, :]
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=mask)


# --------------------------------------------------------------------------------------------
# launcher
# --------------------------------------------------------------------------------------------
def unsupported(geom: ConvGeometry, dtype: torch.dtype):
    """Direct convolution applies to every valid geometry and dtype."""
    return None


def workspace_bytes(geom: ConvGeometry, itemsize: int) -> int:
    return 0


def multiplies(geom: ConvGeometry) -> int:
    return geom.flops // 2


def _launch_args(x, weight, bias, y, geom: ConvGeometry, config, int64: bool, epilogue: Epilogue = NONE):
    """(kernel, grid, positional args, constexpr kwargs) for one launch."""
    top, _, left, _ = geom.padding
    (sh, sw), (dh, dw) = geom.stride, geom.dilation
    b = bias if bias is not None else y  # never read when HAS_BIAS is False
    fused = epilogue.pointers(y)
    meta = dict(HAS_BIAS=bias is not None, INT64=int64, BLOCK_P=config.block_p, BLOCK_Q=config.block_q,
                **epilogue.meta())
    pixel_tiles = geom.n * triton.cdiv(geom.p, config.block_p) * triton.cdiv(geom.q, config.block_q)
    if isinstance(config, DepthwiseConfig):
        args = (x, weight, b, y, *fused, geom.h, geom.w, geom.k, geom.k_per_group, geom.p, geom.q,
                *x.stride(), weight.stride(0), weight.stride(2), weight.stride(3), *y.stride(),
                sh, sw, top, left, dh, dw)
        meta.update(R=geom.r, S=geom.s, BLOCK_C=config.block_c)
        grid = (pixel_tiles, triton.cdiv(geom.k, config.block_c))
        return _depthwise_kernel, grid, args, meta
    args = (x, weight, b, y, *fused, geom.h, geom.w, geom.c_per_group, geom.k_per_group, geom.p, geom.q,
            *x.stride(), *weight.stride(), *y.stride(), geom.r, geom.s, sh, sw, top, left, dh, dw)
    meta.update(BLOCK_N=config.block_n)
    grid = (pixel_tiles, triton.cdiv(geom.k_per_group, config.block_n), geom.groups)
    return _direct_kernel, grid, args, meta


def plan(x, weight, bias, geom: ConvGeometry, *, input_precision: str = "ieee", config=None,
         epilogue: Epilogue = NONE):
    """Validate, allocate the output and bind the launch: ``(launches, output)``, where each of
    ``launches`` is a zero-argument callable (here one) writing into ``output``."""
    _common.check_launch(x, weight, bias, geom, input_precision)
    if config is None:
        config = default_config(geom, _common.is_channels_last(x), _common.interpreting())
    elif config not in configs_for(geom):
        raise ValueError(f"config {config} does not apply to {geom}; choose one of "
                         f"{[str(c) for c in configs_for(geom)]}")
    y = _common.empty_output(geom.output_shape, x)
    kernel, grid, args, meta = _launch_args(x, weight, bias, y, geom, config,
                                            _common.needs_int64(x, weight, y), epilogue)
    bound = kernel[grid]

    def run() -> None:
        bound(*args, **meta, num_warps=config.num_warps)
    return (run,), y


def launch(x, weight, bias, geom: ConvGeometry, *, input_precision: str = "ieee", config=None,
           epilogue: Epilogue = NONE) -> torch.Tensor:
    """Direct convolution of ``x`` (NCHW-shaped, any memory format) with ``weight`` (KCRS);
    ``epilogue`` fused into the store (:mod:`._epilogue`)."""
    launches, y = plan(x, weight, bias, geom, input_precision=input_precision, config=config, epilogue=epilogue)
    for run in launches:
        run()
    return y


# --------------------------------------------------------------------------------------------
# static compile check
# --------------------------------------------------------------------------------------------
_TRITON_DTYPE = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
#: representative layers the specs are built from (their launch arguments, not just types)
_SPEC_GEOMETRY = ConvGeometry(32, 64, 56, 56, 64, 3, 3, padding=(1, 1, 1, 1), groups=2)
_SPEC_DEPTHWISE = ConvGeometry(32, 144, 56, 56, 144, 3, 3, padding=(1, 1, 1, 1), groups=144)


def spec_signature(fn, args, meta):
    """What the JIT would build for these launch arguments: the signature (ints equal to 1 become
    constexprs, as Triton specialises them), the constexpr values, and the arguments it marks
    divisible by 16 (pointers, which torch allocates aligned, and ints that are multiples)."""
    signature, constexprs, divisible = {}, dict(meta), []
    for name, value in zip(fn.arg_names, args):
        if isinstance(value, torch.Tensor):
            signature[name] = "*" + _TRITON_DTYPE[value.dtype]
            divisible.append(name)
        elif value == 1:
            signature[name], constexprs[name] = "constexpr", 1
        else:
            signature[name] = "i32" if -(2**31) <= value < 2**31 else "i64"
            if value % 16 == 0:
                divisible.append(name)
    for name in meta:
        signature[name] = "constexpr"
    return signature, constexprs, tuple(divisible)


def static_specs() -> list[StaticSpec]:
    """The default configs (one per kernel path and layout) in fp32, fp16 and bf16; every other
    config once, in fp16 (the configs are not dtype-specific; the layout is part of the config)."""
    specs = []
    for dtype, tname in _TRITON_DTYPE.items():
        for geom, configs in ((_SPEC_GEOMETRY, CONFIGS), (_SPEC_DEPTHWISE, DEPTHWISE_CONFIGS)):
            for config in configs:
                channels_last = isinstance(config, DepthwiseConfig) and config.block_c > 1
                default = config == default_config(geom, channels_last)
                if not default and dtype != torch.float16:
                    continue
                fmt = torch.channels_last if channels_last else torch.contiguous_format
                x = torch.empty(geom.input_shape, dtype=dtype, device="meta", memory_format=fmt)
                w = torch.empty(geom.weight_shape, dtype=dtype, device="meta")
                b = torch.empty((geom.k,), dtype=dtype, device="meta")
                y = torch.empty(geom.output_shape, dtype=dtype, device="meta", memory_format=fmt)
                fn, _, args, meta = _launch_args(x, w, b, y, geom, config, False)
                signature, constexprs, divisible = spec_signature(fn, args, meta)
                specs.append(StaticSpec(
                    name=f"conv.direct/{tname}/{config}", fn=fn, signature=signature,
                    constexprs=constexprs, num_warps=config.num_warps, num_stages=1,
                    default=default, divisible_by_16=divisible))
                if default and dtype == torch.float16:  # the fused epilogue (scale, shift, residual, SiLU)
                    epi = sample_epilogue(geom.output_shape, dtype, fmt)
                    fn, _, args, meta = _launch_args(x, w, b, y, geom, config, False, epi)
                    signature, constexprs, divisible = spec_signature(fn, args, meta)
                    specs.append(StaticSpec(
                        name=f"conv.direct.fused/{tname}/{config}", fn=fn, signature=signature,
                        constexprs=constexprs, num_warps=config.num_warps, num_stages=1,
                        default=True, divisible_by_16=divisible))
    return specs
