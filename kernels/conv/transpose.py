"""Transposed convolution by output-phase (sub-pixel) decomposition, no zero insertion.

Output pixel ``oh`` receives ``x[ih] * w[r]`` for every tap ``r`` with
``oh + pad - r*dil == ih*stride``.  Split the output rows by phase ``ph = oh % stride``: within
one phase the taps that contribute are fixed, those with ``(ph + pad - r*dil) % stride == 0``
(with dilation a phase can own all R taps or none), and output row ``oh = ph + i*stride`` reads
input row ``ih = i + (ph + pad - r*dil) / stride``, a plain shift.  So each of the stride_h x
stride_w phases is a dense implicit GEMM: M = N * P/s_h * Q/s_w output pixels of the phase,
N = K/g output channels, reduction over (C/g) x (taps of the phase).  Zero insertion would
spend (s^2 - 1)/s^2 of its multiplies on zeros; this does none of them.

The taps of a phase solve ``r*dil = ph + pad (mod stride)``: they start at a first solution
(from gcd(dil, stride) and a modular inverse computed on the host) and repeat every
``stride / gcd`` taps, so the kernel loops over exactly those taps with no per-tap branch.
One launch covers every phase (grid axis 2), group and channel block (axis 1) and pixel tile
(axis 0).  With C/g >= 16 and K/g >= 16 the reduction runs on ``tl.dot`` (tensor cores for
fp16/bf16; fp32 with ``input_precision`` "ieee" or "tf32"); otherwise an fp32 FMA outer product
per input channel.  Phases whose tap set is empty still store (the bias, or zero).

Layouts: NCHW or channels_last input, any weight strides (weight is C x K/g x R x S), output in
the input's memory format.  stride, padding, output_padding, dilation, groups and bias; 64-bit
index arithmetic where ``_common.needs_int64`` says so.

Reference: Shi et al., "Real-Time Single Image and Video Super-Resolution Using an Efficient
Sub-Pixel Convolutional Neural Network" (2016); the phase split is the polyphase decomposition
of a strided filter bank.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from convbench.reference.geometry import ConvGeometry, ConvTransposeGeometry

from .. import _common
from .._static_spec import StaticSpec
from .direct import _pixel_tile, spec_signature

ERROR_SCALE = 1.0


@dataclass(frozen=True)
class PhaseConfig:
    """A BLOCK_P x BLOCK_Q tile of one phase's pixels times BLOCK_N output channels."""

    block_p: int
    block_q: int
    block_n: int
    block_k: int      # input channels per tl.dot step (1 on the FMA path)
    use_dot: bool
    num_warps: int = 4
    num_stages: int = 3

    @property
    def name(self) -> str:
        """Readable and unique among the module's configs (static spec names use it)."""
        return str(self)

    def __str__(self) -> str:
        kind = f"dot-K{self.block_k}" if self.use_dot else "fma"
        return f"{kind}-P{self.block_p}-Q{self.block_q}-N{self.block_n}-w{self.num_warps}-s{self.num_stages}"


#: BLOCK_K = 16 keeps tf32 operands in registers without spilling (32 spills on sm_80)
DOT_CONFIGS: tuple[PhaseConfig, ...] = (
    PhaseConfig(8, 8, 64, 16, True, 4, 3),
    PhaseConfig(8, 8, 128, 16, True, 4, 3),
    PhaseConfig(8, 8, 32, 16, True, 4, 2),  # 64-row tile: the least wgmma takes on sm_90
)
#: (8, 8, 16) would be the natural small tile, but ptxas spills 8 bytes of it on sm_90
FMA_CONFIGS: tuple[PhaseConfig, ...] = (
    PhaseConfig(16, 8, 16, 1, False, 4, 1),
    PhaseConfig(8, 16, 32, 1, False, 4, 1),
)
CONFIGS = DOT_CONFIGS + FMA_CONFIGS


def uses_dot(geom: "ConvTransposeGeometry | PhaseProblem") -> bool:
    """``tl.dot`` needs every dimension >= 16: both C/g and K/g."""
    return geom.c_per_group >= 16 and geom.k_per_group >= 16


def configs(dtype: torch.dtype | None = None) -> tuple[PhaseConfig, ...]:
    """Every config a phase launch may use; :func:`configs_for` says which apply to a geometry."""
    return CONFIGS


def configs_for(geom: "ConvTransposeGeometry | PhaseProblem") -> tuple[PhaseConfig, ...]:
    """Every config that applies: the FMA path fits any geometry, ``tl.dot`` needs 16 x 16."""
    return CONFIGS if uses_dot(geom) else FMA_CONFIGS


def default_config(geom: "ConvTransposeGeometry | PhaseProblem", dtype: torch.dtype = torch.float16,
                   input_precision: str = "ieee", interpreter: bool = False) -> PhaseConfig:
    """Heuristic: ``tl.dot`` where it fits and buys tensor cores (fp16, bf16, tf32); the FMA
    path otherwise, including fp32 "ieee", where ``tl.dot`` is an FMA loop that needs far more
    registers.  The GEMM's N (= K/g) picks the channel block.

    ``interpreter``: the CPU interpreter pays per tile operation, not per register, so there
    fp32 "ieee" takes ``tl.dot`` too where it fits (exact fp32 products either way): one step per
    16 input channels instead of one per channel (a 960-channel 1x1 dgrad: 7 s -> under 1 s)."""
    exact_fp32 = dtype == torch.float32 and input_precision == "ieee" and not interpreter
    if not uses_dot(geom) or exact_fp32:
        return FMA_CONFIGS[0] if geom.k_per_group <= 16 else FMA_CONFIGS[1]
    if geom.k_per_group <= 32:
        return DOT_CONFIGS[2]
    return DOT_CONFIGS[1] if geom.k_per_group >= 128 else DOT_CONFIGS[0]


@triton.jit
def _first_tap(t, tap_gcd, step, inv, R):
    """The first tap r with r*dil = t (mod stride), or R when there is none (then the phase
    owns no tap of this axis).  Host-computed: tap_gcd = gcd(dil, stride), step = stride/tap_gcd,
    inv = (dil/tap_gcd)^-1 mod step."""
    first = ((t // tap_gcd) * inv) % step
    return tl.where(t % tap_gcd == 0, first, R)


@triton.jit
def _phase_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr,
    # sizes
    H, W, C_PER_G, K_PER_G, P, Q,
    # strides: input (N, C, H, W), weight (C, K/g, R, S), output (N, K, P, Q)
    sxn, sxc, sxh, sxw,
    swc, swk, swr, sws,
    syn, syk, syp, syq,
    # geometry, and the tap arithmetic of each axis (see _first_tap)
    R, S, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    gcd_h, step_h, inv_h, gcd_w, step_w, inv_w,
    # meta
    HAS_BIAS: tl.constexpr, INT64: tl.constexpr, USE_DOT: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    DOT_UPCAST: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    # the phase (ph, pw) and its pixel tile: output (ph + i*stride_h, pw + j*stride_w)
    ph = tl.program_id(2) // stride_w
    pw = tl.program_id(2) % stride_w
    n, i, j = _pixel_tile(tl.program_id(0), tl.cdiv(P, stride_h), tl.cdiv(Q, stride_w), BLOCK_P, BLOCK_Q)
    tiles_k = tl.cdiv(K_PER_G, BLOCK_N)
    g = tl.program_id(1) // tiles_k
    kg = (tl.program_id(1) % tiles_k) * BLOCK_N + tl.arange(0, BLOCK_N)
    if INT64:
        n, i, j, g, kg = n.to(tl.int64), i.to(tl.int64), j.to(tl.int64), g.to(tl.int64), kg.to(tl.int64)
    oh = ph + i * stride_h
    ow = pw + j * stride_w
    pix_ok = (oh < P) & (ow < Q)
    k_ok = kg < K_PER_G

    x_base = x_ptr + n * sxn + g * C_PER_G * sxc
    w_base = w_ptr + g * C_PER_G * swc
    acc = tl.zeros((BLOCK_P * BLOCK_Q, BLOCK_N), dtype=tl.float32)
    # only the taps of this phase: solutions of r*dil = ph + pad (mod stride), `step` apart
    for r in range(_first_tap(ph + pad_h, gcd_h, step_h, inv_h, R), R, step_h):
        ih = i + (ph + pad_h - r * dil_h) // stride_h  # exact division
        h_ok = pix_ok & (ih >= 0) & (ih < H)
        for s in range(_first_tap(pw + pad_w, gcd_w, step_w, inv_w, S), S, step_w):
            iw = j + (pw + pad_w - s * dil_w) // stride_w
            ok = h_ok & (iw >= 0) & (iw < W)
            # offsets (not pointers) stay live across the channel loop: fewer registers
            x_off = ih * sxh + iw * sxw
            w_off = kg * swk + r * swr + s * sws
            if USE_DOT:
                for c0 in range(0, C_PER_G, BLOCK_K):
                    c = c0 + tl.arange(0, BLOCK_K)
                    c_ok = c < C_PER_G
                    a = tl.load(x_base + (x_off[:, None] + (c * sxc)[None, :]),
                                mask=ok[:, None] & c_ok[None, :], other=0.0)
                    b = tl.load(w_base + (w_off[None, :] + (c * swc)[:, None]),
                                mask=c_ok[:, None] & k_ok[None, :], other=0.0)
                    if DOT_UPCAST:  # interpreter only: see _launch_args
                        a, b = a.to(tl.float32), b.to(tl.float32)
                    acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)
            else:
                for c in range(C_PER_G):
                    xv = tl.load(x_base + (x_off + c * sxc), mask=ok, other=0.0).to(tl.float32)
                    wv = tl.load(w_base + (w_off + c * swc), mask=k_ok, other=0.0).to(tl.float32)
                    acc += xv[:, None] * wv[None, :]

    k = g * K_PER_G + kg
    if HAS_BIAS:
        acc += tl.load(b_ptr + k, mask=k_ok, other=0.0).to(tl.float32)[None, :]
    y_ptrs = y_ptr + n * syn + (oh * syp + ow * syq)[:, None] + (k * syk)[None, :]
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=pix_ok[:, None] & k_ok[None, :])


@dataclass(frozen=True)
class PhaseProblem:
    """A phase launch's sizes with the output size given rather than derived: the input
    gradient of ``conv2d`` is a transposed convolution of the output gradient, but its output
    (the input's H x W) is not a function of (P, padding, output_padding) when the forward's
    padding is asymmetric ('same' with an even kernel) or the stride leaves rows unread.  Only the
    top/left padding matters to the phase arithmetic (``oh = i*stride - pad + r*dil``)."""

    n: int
    h: int            # the phase launch's input: the conv's P x Q output gradient
    w: int
    c_per_group: int  # its input channels per group: the conv's K/g
    k_per_group: int  # its output channels per group: the conv's C/g
    p: int            # its output: the conv's H x W input
    q: int
    r: int
    s: int
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int

    @property
    def k(self) -> int:
        return self.k_per_group * self.groups

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.k, self.p, self.q)

    @classmethod
    def input_grad_of(cls, geom: ConvGeometry) -> "PhaseProblem":
        top, _, left, _ = geom.padding
        return cls(geom.n, geom.p, geom.q, geom.k_per_group, geom.c_per_group, geom.h, geom.w, geom.r, geom.s,
                   geom.stride, (top, left), geom.dilation, geom.groups)


def launch_input_grad(dy, weight, geom: ConvGeometry, *, input_precision: str = "ieee",
                      config: PhaseConfig | None = None) -> torch.Tensor:
    """dgrad: the input gradient (N, C, H, W) of ``conv2d`` with geometry ``geom``, from the output
    gradient ``dy`` (N, K, P, Q) and the forward weight (K, C/g, R, S), which is exactly the weight
    of the transposed convolution.  The phase decomposition means a strided layer's gradient is
    computed without zero insertion; output in ``dy``'s memory format."""
    problem = PhaseProblem.input_grad_of(geom)
    if config is None:
        config = default_config(problem, dy.dtype, input_precision, _common.interpreting())
    elif config not in configs_for(problem):
        raise ValueError(f"config {config} does not apply to the input gradient of {geom}; choose one of "
                         f"{[str(c) for c in configs_for(problem)]}")
    dx = _common.empty_output(problem.output_shape, dy)
    grid, args, meta = _launch_args(dy, weight, None, dx, problem, config, input_precision,
                                    _common.needs_int64(dy, weight, dx))
    _phase_kernel[grid](*args, **meta, num_warps=config.num_warps, num_stages=config.num_stages)
    return dx


def workspace_bytes(geom: ConvTransposeGeometry, itemsize: int) -> int:
    return 0


def multiplies(geom: ConvTransposeGeometry) -> int:
    """Only the useful products: every input pixel meets every tap once."""
    return geom.flops // 2


def _tap_arithmetic(stride: int, dil: int) -> tuple[int, int, int]:
    """(gcd, step, inverse) for solving r*dil = t (mod stride): see ``_first_tap``."""
    g = math.gcd(stride, dil)
    step = stride // g
    return g, step, (pow(dil // g, -1, step) if step > 1 else 0)


def _launch_args(x, weight, bias, y, geom: "ConvTransposeGeometry | PhaseProblem", config: PhaseConfig,
                 input_precision: str, int64: bool):
    (sh, sw), (dh, dw), (pad_h, pad_w) = geom.stride, geom.dilation, geom.padding
    b = bias if bias is not None else y  # never read when HAS_BIAS is False
    args = (x, weight, b, y, geom.h, geom.w, geom.c_per_group, geom.k_per_group, geom.p, geom.q,
            *x.stride(), *weight.stride(), *y.stride(), geom.r, geom.s, sh, sw, pad_h, pad_w, dh, dw,
            *_tap_arithmetic(sh, dh), *_tap_arithmetic(sw, dw))
    # The Triton 3.6 interpreter multiplies the raw uint16 bits of bf16 operands in tl.dot;
    # there (only) bf16 tiles are widened to fp32 first, which is exact (bf16 x bf16 products
    # fit in fp32), so the result matches a bf16 tensor-core dot with fp32 accumulation.
    upcast = _common.interpreting() and x.dtype == torch.bfloat16
    meta = dict(HAS_BIAS=bias is not None, INT64=int64, USE_DOT=config.use_dot,
                INPUT_PRECISION=input_precision if x.dtype == torch.float32 else "ieee",
                DOT_UPCAST=upcast,
                BLOCK_P=config.block_p, BLOCK_Q=config.block_q, BLOCK_N=config.block_n,
                BLOCK_K=config.block_k)
    grid = (geom.n * triton.cdiv(triton.cdiv(geom.p, sh), config.block_p)
            * triton.cdiv(triton.cdiv(geom.q, sw), config.block_q),
            geom.groups * triton.cdiv(geom.k_per_group, config.block_n), sh * sw)
    return grid, args, meta


def launch(x, weight, bias, geom: ConvTransposeGeometry, *, input_precision: str = "ieee",
           config: PhaseConfig | None = None) -> torch.Tensor:
    """``conv_transpose2d`` of ``x`` (NCHW-shaped, any memory format), weight C x K/g x R x S."""
    _common.check_launch(x, weight, bias, geom, input_precision)
    if config is None:
        config = default_config(geom, x.dtype, input_precision, _common.interpreting())
    elif config not in configs_for(geom):
        raise ValueError(f"config {config} does not apply to {geom}; choose one of "
                         f"{[str(c) for c in configs_for(geom)]}")
    y = _common.empty_output(geom.output_shape, x)
    grid, args, meta = _launch_args(x, weight, bias, y, geom, config, input_precision,
                                    _common.needs_int64(x, weight, y))
    _phase_kernel[grid](*args, **meta, num_warps=config.num_warps, num_stages=config.num_stages)
    return y


_TRITON_DTYPE = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
#: a representative decoder layer (stride-2 upsampling, 4x4 kernel) the specs are built from
_SPEC_GEOMETRY = ConvTransposeGeometry(16, 128, 28, 28, 64, 4, 4, stride=(2, 2), padding=(1, 1))
_SPEC_FMA_GEOMETRY = ConvTransposeGeometry(16, 8, 28, 28, 3, 4, 4, stride=(2, 2), padding=(1, 1))


def static_specs() -> list[StaticSpec]:
    """The default config of each path (tl.dot, FMA) in every dtype (fp32 is "tf32" on the dot
    path, "ieee" on the FMA path); every other config once: dot configs in fp16 (tensor cores),
    FMA configs in fp32 (what the FMA path is the default for)."""
    specs = []
    for dtype, tname in _TRITON_DTYPE.items():
        for geom, configs in ((_SPEC_GEOMETRY, DOT_CONFIGS), (_SPEC_FMA_GEOMETRY, FMA_CONFIGS)):
            x = torch.empty(geom.input_shape, dtype=dtype, device="meta")
            w = torch.empty(geom.weight_shape, dtype=dtype, device="meta")
            b = torch.empty((geom.k,), dtype=dtype, device="meta")
            y = torch.empty(geom.output_shape, dtype=dtype, device="meta")
            for config in configs:
                # fp32: the dot configs are meant for tf32, the FMA path is the "ieee" default
                precision = "tf32" if dtype == torch.float32 and config.use_dot else "ieee"
                default = config == default_config(geom, dtype, precision)
                if not default and dtype != (torch.float16 if config.use_dot else torch.float32):
                    continue
                _, args, meta = _launch_args(x, w, b, y, geom, config, precision, False)
                meta["DOT_UPCAST"] = False  # what a GPU launch uses, even when listed under the interpreter
                signature, constexprs, divisible = spec_signature(_phase_kernel, args, meta)
                label = "tf32" if precision == "tf32" else tname
                specs.append(StaticSpec(
                    name=f"conv.transpose/{label}/{config}", fn=_phase_kernel, signature=signature,
                    constexprs=constexprs, num_warps=config.num_warps, num_stages=config.num_stages,
                    default=default,
                    expect_tensor_cores=config.use_dot, divisible_by_16=divisible))
    # dgrad (the input gradient of conv2d) on ResNet-50's stride-2 3x3 and 1x1 layers, channels_last
    for geom in _DGRAD_GEOMETRIES:
        problem = PhaseProblem.input_grad_of(geom)
        for dtype, tname in _TRITON_DTYPE.items():
            precision = "tf32" if dtype == torch.float32 else "ieee"
            dy = torch.empty((geom.n, geom.k, geom.p, geom.q), dtype=dtype, device="meta").to(
                memory_format=torch.channels_last)
            w = torch.empty(geom.weight_shape, dtype=dtype, device="meta")
            dx = torch.empty(geom.input_shape, dtype=dtype, device="meta").to(memory_format=torch.channels_last)
            config = default_config(problem, dtype, precision)
            _, args, meta = _launch_args(dy, w, None, dx, problem, config, precision, False)
            meta["DOT_UPCAST"] = False
            signature, constexprs, divisible = spec_signature(_phase_kernel, args, meta)
            label = "tf32" if precision == "tf32" else tname
            specs.append(StaticSpec(
                name=f"conv.dgrad/{label}/{geom.r}x{geom.s}s{geom.stride[0]}/{config}", fn=_phase_kernel,
                signature=signature, constexprs=constexprs, num_warps=config.num_warps,
                num_stages=config.num_stages, default=True, expect_tensor_cores=config.use_dot,
                divisible_by_16=divisible))
    return specs


#: the input gradients the dgrad specs compile: ResNet-50 layer2's stride-2 3x3 and its 1x1
_DGRAD_GEOMETRIES = (
    ConvGeometry(32, 128, 56, 56, 128, 3, 3, stride=(2, 2), padding=(1, 1, 1, 1)),
    ConvGeometry(32, 512, 28, 28, 128, 1, 1),
)
