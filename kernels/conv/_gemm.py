"""The GEMM shared by the GEMM-family convolutions: configs, tile helpers and a plain GEMM kernel.

A convolution as a GEMM, per group ``g`` (Chetlur et al., "cuDNN: Efficient Primitives for Deep
Learning", 2014)::

    out[(n, p, q), k] = sum_red A[(n, p, q), red] * B[red, k]     M = N*P*Q, N_gemm = K/g,
                                                                  K_gemm = C/g * R * S
``A`` is the column matrix (``im2col`` writes it into a workspace; ``implicit_gemm`` gathers it
from the input inside its own kernel) and ``B`` the weight seen as a (C/g*R*S) x (K/g) matrix.
The output row ``(n, p, q)`` is stored at ``n*stride_n + (p*Q + q)*stride_q``, which is right for
both NCHW and channels_last outputs (``stride_p == Q*stride_q`` in both), and channel ``k`` at
``k*stride_k``: the output is written straight in the input's memory format.

This module holds what both algorithms use: :class:`GemmConfig` and :data:`CONFIGS` with the
``default_config`` heuristic, the grouped (``GROUP_M``) tile swizzle, the bias + store epilogue,
and :func:`_gemm_kernel`, a GEMM whose A rows are addressed as ``(n, p*Q + q)``: im2col runs it
on its workspace, and implicit_gemm runs it directly on the input for the 1x1 / stride-1 /
no-padding fast path, where the input already *is* the column matrix.  :class:`Launch`
records one launch argument by argument, so the static specs are built from exactly what the
launchers pass (with Triton's specialisation of 1s and multiples of 16).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .. import _common
from .._static_spec import StaticSpec
from ._epilogue import NONE, Epilogue, apply_epilogue

#: dtype -> Triton pointer type string (for static specs)
TRITON_PTR = {torch.float32: "*fp32", torch.float16: "*fp16", torch.bfloat16: "*bf16"}
DTYPE_NAME = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}

#: shared memory a config may use: sm_80's 163 KB per block, with some room for the epilogue
SMEM_LIMIT = 160 * 1024


@dataclass(frozen=True)
class GemmConfig:
    block_m: int
    block_n: int
    block_k: int
    num_warps: int
    num_stages: int
    group_m: int = 8

    @property
    def name(self) -> str:
        return (f"BM{self.block_m}-BN{self.block_n}-BK{self.block_k}"
                f"-w{self.num_warps}-s{self.num_stages}-g{self.group_m}")

    def smem_bytes(self, itemsize: int) -> int:
        """Shared memory of the pipelined A and B tiles (Triton's main shared-memory user)."""
        return self.num_stages * (self.block_m + self.block_n) * self.block_k * itemsize

    def fits(self, dtype: torch.dtype) -> bool:
        return self.smem_bytes(torch.empty((), dtype=dtype).element_size()) <= SMEM_LIMIT


#: Every block dimension >= 16 (tl.dot needs it of the *blocks*; masking covers a problem
#: dimension below that, so C/g, K/g and the reduction may be anything >= 1).  BK=64 configs
#: serve 16-bit inputs only (fp32 would need 192 KB of shared memory); the fp32 ones keep BK
#: small because the fp32 "ieee" dot is an FMA loop whose operand fragments live in registers
#: (BK=32 at 128x128 spills on sm_90).  BN=16 serves K/g <= 16 (small heads, grouped and
#: depthwise layers, where the group is a grid axis and each program owns one group's columns).
CONFIGS: tuple[GemmConfig, ...] = (
    GemmConfig(128, 128, 64, 8, 3),    # large, 16-bit
    GemmConfig(128, 128, 16, 8, 4),    # large, fp32
    GemmConfig(128, 64, 64, 8, 4),     # K/g <= 64, 16-bit (4 warps spill on sm_80)
    GemmConfig(128, 64, 32, 8, 4),     # K/g <= 64, fp32
    GemmConfig(128, 64, 16, 8, 4),     # K/g <= 64, fp32 with the flat (r, s, c) loop (BK=32 spills on sm_80)
    GemmConfig(64, 128, 32, 8, 3),     # few output pixels, many channels
    GemmConfig(64, 64, 32, 4, 3),      # small problems
    GemmConfig(64, 32, 32, 4, 3, 4),   # K/g <= 32 (4 warps: one warpgroup, so wgmma on sm_90)
    GemmConfig(128, 32, 32, 4, 3, 4),  # K/g <= 32 with many output pixels (stems, early layers)
    GemmConfig(64, 16, 32, 4, 3, 4),   # K/g <= 16
    GemmConfig(64, 16, 16, 4, 2, 4),   # K/g <= 16 with a tiny reduction (depthwise 3x3: 9)
)


def configs_for(dtype: torch.dtype) -> tuple[GemmConfig, ...]:
    """The configs whose shared memory fits for this dtype."""
    return tuple(c for c in CONFIGS if c.fits(dtype))


def default_config(m: int, n: int, k_red: int, dtype: torch.dtype) -> GemmConfig:
    """Heuristic for an (m x k_red) @ (k_red x n) GEMM: N tile from n, M tile from the tile count.

    128-row tiles when there are at least 64 of them, else 64-row tiles; the N tile is the
    smallest of 16/32/64/128 that covers ``n``; BK=16 for a reduction of at most 16, else BK=64
    for 16-bit inputs with a reduction of at least 64 and the smallest BK for fp32 (register
    pressure of the fp32 dot).
    """
    if k_red <= 16:
        bk = 16
    else:
        bk = 64 if dtype != torch.float32 and k_red >= 64 else 32 if dtype != torch.float32 else 16
    block_n = 16 if n <= 16 else 32 if n <= 32 else 64 if n <= 64 else 128
    block_m = 128 if m >= 128 * 64 else 64
    usable = configs_for(dtype)
    candidates = [c for c in usable if (c.block_m, c.block_n) == (block_m, block_n)]
    if not candidates:  # no 128-row tile of this width: take the 64-row one
        candidates = [c for c in usable if c.block_n == block_n]
    return min(candidates, key=lambda c: (abs(c.block_k - bk), -c.block_m))


def flat_reduction(c_per_group: int, block_k: int) -> bool:
    """Whether the gather walks the reduction as one flat (r, s, c) index rather than (tap,
    channel block): when C/g < BLOCK_K, every channel block of the tap loop would be partly
    empty (a C=3 stem fills 3 of 16 lanes), while the flat loop wastes only its last step."""
    return c_per_group < block_k


def resolve_config(config, dtype: torch.dtype, default: GemmConfig) -> GemmConfig:
    """``config=None`` -> the heuristic's; otherwise a :class:`GemmConfig` that fits ``dtype``."""
    if config is None:
        return default
    if not isinstance(config, GemmConfig):
        raise TypeError(f"config must be a GemmConfig or None, got {type(config).__name__}")
    if min(config.block_m, config.block_n, config.block_k) < 16:
        raise ValueError(f"config {config.name}: every block dimension must be >= 16 for tl.dot")
    if not config.fits(dtype):
        raise ValueError(f"config {config.name} needs more than {SMEM_LIMIT} bytes of shared memory for {dtype}")
    return config


# ----------------------------------------------------------------------------------------------
# tile helpers shared with implicit_gemm
# ----------------------------------------------------------------------------------------------
@triton.jit
def swizzled_tile(M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
    """(pid_m, pid_n) of this program, walking GROUP_M row tiles per column sweep (L2 reuse)."""
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    per_group = GROUP_M * num_pid_n
    first_m = (pid // per_group) * GROUP_M
    group_rows = tl.minimum(num_pid_m - first_m, GROUP_M)
    pid_m = first_m + (pid % per_group) % group_rows
    pid_n = (pid % per_group) // group_rows
    return pid_m, pid_n


@triton.jit
def gemm_tile(M, KG, PQ, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
              GROUP_M: tl.constexpr, USE_INT64: tl.constexpr):
    """This program's tile of a convolution seen as a GEMM (rows (n, pq) of M = N*P*Q, columns k
    of one group's KG, group g = program_id(1)): (g, row offsets, column offsets, reduction offsets
    of one BLOCK_K step, row mask, column mask, image of each row, pq of each row), in int64 when
    ``USE_INT64``."""
    pid_m, pid_n = swizzled_tile(M, KG, BLOCK_M, BLOCK_N, GROUP_M)
    g = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_red = tl.arange(0, BLOCK_K)
    if USE_INT64:
        offs_m = offs_m.to(tl.int64)
        offs_n = offs_n.to(tl.int64)
        offs_red = offs_red.to(tl.int64)
        g = g.to(tl.int64)
    return g, offs_m, offs_n, offs_red, offs_m < M, offs_n < KG, offs_m // PQ, offs_m % PQ


@triton.jit
def dot_acc(a, b, acc, INPUT_PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """``acc + a @ b`` with fp32 accumulation.  ``UPCAST`` (only ever True for bf16 under the
    interpreter) multiplies exact fp32 copies instead: Triton 3.6's interpreter stores bf16 as
    uint16 and its ``tl.dot`` multiplies the bit patterns (triton-lang/triton#11584)."""
    if UPCAST:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    else:
        return tl.dot(a, b, acc, input_precision=INPUT_PRECISION)


def upcast_dot(dtype: torch.dtype) -> bool:
    """Whether :func:`dot_acc` must work around the interpreter's bf16 ``tl.dot`` (never on a GPU)."""
    return dtype == torch.bfloat16 and _common.interpreting()


@triton.jit
def store_tile(acc, out_ptr, row_off, row_ok, bias_ptr, offs_k, k_ok, stride_ok, HAS_BIAS: tl.constexpr,
               scale_ptr, shift_ptr, res_ptr, HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr,
               HAS_RES: tl.constexpr, ACT: tl.constexpr):
    """Add the bias (fp32), apply the fused epilogue, cast to the output dtype and store the
    (rows x channels) tile."""
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_k, mask=k_ok, other=0.0).to(tl.float32)[None, :]
    mask = row_ok[:, None] & k_ok[None, :]
    acc = apply_epilogue(acc, offs_k, k_ok, row_off, offs_k * stride_ok, mask, scale_ptr, shift_ptr, res_ptr,
                         HAS_SCALE, HAS_SHIFT, HAS_RES, ACT)
    ptrs = out_ptr + row_off[:, None] + (offs_k * stride_ok)[None, :]
    tl.store(ptrs, acc.to(out_ptr.dtype.element_ty), mask=mask)


# ----------------------------------------------------------------------------------------------
# the GEMM on an explicit column matrix
# ----------------------------------------------------------------------------------------------
@triton.jit
def _gemm_kernel(
    # A: row (n, pq) of group g at a_ptr + g*stride_ag + n*stride_an + pq*stride_apq + red*stride_ared
    a_ptr, stride_ag, stride_an, stride_apq, stride_ared,
    # B: weight matrix, element (red, j) of group g at b_ptr + g*stride_bg + red*stride_bred + j*stride_bk
    b_ptr, stride_bg, stride_bred, stride_bk,
    # bias (K,), read only when HAS_BIAS; the epilogue's scale, shift (K,) and residual (the output's layout)
    bias_ptr, scale_ptr, shift_ptr, res_ptr,
    # output N x K x P x Q: (n, k, pq) at n*stride_on + k*stride_ok + pq*stride_opq
    out_ptr, stride_on, stride_ok, stride_opq,
    # sizes: M = N*P*Q rows, PQ = P*Q, KG = K/g columns, KRED = reduction length
    M, PQ, KG, KRED,
    # meta-parameters
    HAS_BIAS: tl.constexpr, INPUT_PRECISION: tl.constexpr, UPCAST: tl.constexpr, USE_INT64: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr, HAS_RES: tl.constexpr, ACT: tl.constexpr,
):
    g, offs_m, offs_n, offs_r, m_ok, n_ok, img, pq = gemm_tile(M, KG, PQ, BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M,
                                                               USE_INT64)

    a_ptrs = a_ptr + g * stride_ag + (img * stride_an + pq * stride_apq)[:, None] + (offs_r * stride_ared)[None, :]
    b_ptrs = b_ptr + g * stride_bg + (offs_r * stride_bred)[:, None] + (offs_n * stride_bk)[None, :]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for r0 in range(0, KRED, BLOCK_K):
        r_ok = offs_r < KRED - r0
        a = tl.load(a_ptrs, mask=m_ok[:, None] & r_ok[None, :], other=0.0)
        b = tl.load(b_ptrs, mask=r_ok[:, None] & n_ok[None, :], other=0.0)
        acc = dot_acc(a, b, acc, INPUT_PRECISION, UPCAST)
        a_ptrs += BLOCK_K * stride_ared
        b_ptrs += BLOCK_K * stride_bred

    offs_k = g * KG + offs_n
    store_tile(acc, out_ptr, img * stride_on + pq * stride_opq, m_ok, bias_ptr, offs_k, n_ok, stride_ok, HAS_BIAS,
               scale_ptr, shift_ptr, res_ptr, HAS_SCALE, HAS_SHIFT, HAS_RES, ACT)


@dataclass
class Launch:
    """One kernel launch, argument by argument: run it, or describe it for the static check.

    The static spec is derived from the very arguments the launcher passes, specialised the
    way Triton's launcher specialises them (an int equal to 1 becomes a constexpr; pointers and
    ints that are multiples of 16 are marked divisible by 16), so a static compile builds the
    code that a GPU launch of the same problem runs.
    """

    fn: object
    grid: tuple
    args: tuple
    constexprs: dict
    num_warps: int
    num_stages: int

    def __call__(self) -> None:
        self.fn[self.grid](*self.args, **self.constexprs, num_warps=self.num_warps, num_stages=self.num_stages)

    def static_spec(self, name: str, *, default: bool, expect_tensor_cores: bool) -> StaticSpec:
        names = list(inspect.signature(_raw_fn(self.fn)).parameters)
        signature, constexprs, divisible = {}, {}, []
        for arg_name, value in zip(names, self.args):
            if isinstance(value, torch.Tensor):
                signature[arg_name] = TRITON_PTR[value.dtype]
                if value.data_ptr() % 16 == 0:
                    divisible.append(arg_name)
            elif value == 1:
                signature[arg_name] = "constexpr"
                constexprs[arg_name] = 1
            else:
                signature[arg_name] = "i32" if -(2**31) <= value < 2**31 else "i64"
                if value % 16 == 0:
                    divisible.append(arg_name)
        signature.update({k: "constexpr" for k in self.constexprs})
        constexprs.update(self.constexprs)
        if "UPCAST" in constexprs:
            constexprs["UPCAST"] = False  # the interpreter's bf16 workaround never reaches a GPU
        return StaticSpec(name=name, fn=self.fn, signature=signature, constexprs=constexprs,
                          num_warps=self.num_warps, num_stages=self.num_stages, default=default,
                          expect_tensor_cores=expect_tensor_cores, divisible_by_16=tuple(divisible))


def _raw_fn(fn):
    """The Python function behind a JITFunction (or the interpreter's wrapper of one)."""
    while hasattr(fn, "fn"):
        fn = fn.fn
    return fn


def gemm_launch(a, a_strides, b, b_strides, bias, out, m, pq, kg, k_red, groups, *,
                input_precision: str, use_int64: bool, config: GemmConfig, epilogue: Epilogue = NONE) -> Launch:
    """:func:`_gemm_kernel` on ``a`` with ``a_strides`` = (g, n, pq, red), ``b_strides`` = (g, red, k)."""
    return Launch(
        _gemm_kernel, (triton.cdiv(m, config.block_m) * triton.cdiv(kg, config.block_n), groups),
        (a, *a_strides, b, *b_strides, bias if bias is not None else b, *epilogue.pointers(out),
         out, out.stride(0), out.stride(1), out.stride(3), m, pq, kg, k_red),
        dict(HAS_BIAS=bias is not None, INPUT_PRECISION=input_precision, UPCAST=upcast_dot(a.dtype),
             USE_INT64=use_int64, BLOCK_M=config.block_m, BLOCK_N=config.block_n,
             BLOCK_K=config.block_k, GROUP_M=config.group_m, **epilogue.meta()),
        config.num_warps, config.num_stages)


def precisions_for(dtype: torch.dtype) -> tuple[str, ...]:
    """input_precision values worth compiling: fp32 has two, 16-bit types ignore it."""
    return ("ieee", "tf32") if dtype == torch.float32 else ("ieee",)


def static_dtype(config: GemmConfig) -> torch.dtype:
    """The one dtype the static check compiles a non-default config in: fp32 ("ieee") for the
    fp32 tiles, i.e. those with a 16-bit-only sibling of larger BK on the same BM x BN tile (the
    heuristic gives fp32 the small BK and 16-bit inputs the sibling); fp16 for the rest, the
    16-bit-only configs and the ones every dtype uses (compiled where tensor cores are expected)."""
    if config.fits(torch.float32) and any(
            (c.block_m, c.block_n) == (config.block_m, config.block_n) and c.block_k > config.block_k
            and not c.fits(torch.float32) for c in CONFIGS):
        return torch.float32
    return torch.float16


def static_variant(config: GemmConfig, default: GemmConfig, dtype: torch.dtype, precision: str,
                   layout: str) -> bool:
    """Whether the static check compiles ``config`` in this (dtype, precision, layout): the
    default config in every dtype and precision (channels_last), its NCHW variant once (fp16),
    and every other config once, channels_last, in :func:`static_dtype` ("ieee" for fp32)."""
    if config == default:
        return layout == "nhwc" or dtype == torch.float16
    return layout == "nhwc" and precision == "ieee" and dtype == static_dtype(config)
