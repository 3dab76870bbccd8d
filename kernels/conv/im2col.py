"""Explicit im2col + GEMM convolution: lower the input to a column matrix, then one GEMM.

Two Triton kernels (Chellapilla et al., "High Performance Convolutional Neural Networks for
Document Processing", 2006; Chetlur et al., cuDNN, 2014):

1. :func:`_im2col_kernel` writes, per group ``g``, the column matrix ``col[g, m, red]`` of shape
   (N*P*Q) x (C/g*R*S) into a workspace: row ``m = (n, p, q)`` holds every input tap output
   pixel (p, q) meets, zeros where the tap falls in the padding.  The reduction index ``red``
   is ``(c, r, s)`` for NCHW inputs and ``(r, s, c)`` for channels_last ones (the order in which
   each layout stores neighbouring taps contiguously), and the weight is viewed as a
   K x (C/g*R*S) matrix in the same order.
2. :func:`convbench.kernels.conv._gemm._gemm_kernel` multiplies ``col[g]`` by the group's weight matrix
   with ``tl.dot`` (fp32 accumulation), adds the bias and stores the output in the input's
   memory format.

The workspace costs ``N*P*Q*C*R*S`` elements (:func:`workspace_bytes`): R*S times the input for
stride 1, which is what implicit GEMM avoids.  Constraints and dtypes as implicit_gemm: C/g >=
16 and K/g >= 16, fp32 ("ieee" or "tf32"), fp16, bf16.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from convbench.reference.geometry import ConvGeometry

from .. import _common
from .._static_spec import StaticSpec
from . import _gemm, implicit_gemm
from ._epilogue import NONE, Epilogue
from ._gemm import CONFIGS, GemmConfig  # noqa: F401  (CONFIGS is public)

ERROR_SCALE = 1.0

#: tile of the column-writing kernel (memory bound: one config)
COL_BLOCK_M, COL_BLOCK_K, COL_WARPS = 64, 64, 4


@triton.jit
def _im2col_kernel(
    # input NCHW-indexed, column workspace G x M x KRED (contiguous)
    x_ptr, col_ptr,
    # input element strides (n, c, h, w)
    sxn, sxc, sxh, sxw,
    # sizes: input H x W, output P x Q, M = N*P*Q, channels per group, kernel R x S, KRED = CG*R*S
    H, W, P, Q, M, CG, R, S, KRED,
    # geometry: stride, top/left padding, dilation
    stride_h, stride_w, pad_t, pad_l, dil_h, dil_w,
    # meta-parameters: CHANNELS_LAST selects the (r, s, c) reduction order, else (c, r, s)
    CHANNELS_LAST: tl.constexpr, USE_INT64: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
):
    g = tl.program_id(2)
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_red = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    if USE_INT64:
        offs_m = offs_m.to(tl.int64)
        offs_red = offs_red.to(tl.int64)
        g = g.to(tl.int64)
    m_ok = offs_m < M
    red_ok = offs_red < KRED
    img = offs_m // (P * Q)
    pq = offs_m % (P * Q)
    oh = pq // Q
    ow = pq % Q
    if CHANNELS_LAST:
        tap = offs_red // CG
        c = offs_red % CG
    else:
        c = offs_red // (R * S)
        tap = offs_red % (R * S)
    r = tap // S
    s = tap % S
    ih = (oh * stride_h - pad_t)[:, None] + (r * dil_h)[None, :]
    iw = (ow * stride_w - pad_l)[:, None] + (s * dil_w)[None, :]
    inside = (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
    ok = m_ok[:, None] & red_ok[None, :]
    src = x_ptr + (img * sxn)[:, None] + ((g * CG + c) * sxc)[None, :] + ih * sxh + iw * sxw
    vals = tl.load(src, mask=ok & inside, other=0.0)
    dst = col_ptr + g * M * KRED + offs_m[:, None] * KRED + offs_red[None, :]
    tl.store(dst, vals, mask=ok)


def unsupported(geom: ConvGeometry, dtype: torch.dtype) -> str | None:
    """Same domain as implicit_gemm: the GEMM uses tl.dot (C/g, K/g >= 16)."""
    return implicit_gemm.unsupported(geom, dtype)


def workspace_bytes(geom: ConvGeometry, itemsize: int) -> int:
    """The column matrix: groups x (N*P*Q) x (C/g*R*S) elements of the input dtype."""
    return geom.n * geom.p * geom.q * geom.c * geom.r * geom.s * itemsize


def multiplies(geom: ConvGeometry) -> int:
    return geom.flops // 2


def default_config(geom: ConvGeometry, dtype: torch.dtype) -> GemmConfig:
    return implicit_gemm.default_config(geom, dtype)


def configs(dtype: torch.dtype) -> tuple[GemmConfig, ...]:
    """Every GEMM config a launch with this dtype may use (tests run each of them)."""
    return _gemm.configs_for(dtype)


def plan(x, weight, bias, geom: ConvGeometry, *, input_precision: str = "ieee",
         config: GemmConfig | None = None, epilogue: Epilogue = NONE):
    """Validate, allocate workspace and output, and build both launches (not run yet)."""
    implicit_gemm.check_arguments(x, weight, bias, geom, input_precision, "im2col")
    cfg = _gemm.resolve_config(config, x.dtype, default_config(geom, x.dtype))
    return _plan_unchecked(x, weight, bias, geom, input_precision, cfg, epilogue)


def _plan_unchecked(x, weight, bias, geom: ConvGeometry, input_precision: str, cfg: GemmConfig,
                    epilogue: Epilogue = NONE):
    channels_last = _common.is_channels_last(x)
    x = x.contiguous(memory_format=_common.memory_format_of(x))
    m, kg, groups, k_red = geom.n * geom.p * geom.q, geom.k_per_group, geom.groups, geom.reduction_length
    col = torch.empty((groups, m, k_red), dtype=x.dtype, device=x.device)
    # the weight as a K x KRED matrix in the column's reduction order (a view when it already is)
    wmat = (weight.permute(0, 2, 3, 1) if channels_last else weight).reshape(geom.k, k_red)
    out = _common.empty_output(geom.output_shape, x)
    use_int64 = _common.needs_int64(x, weight, out, col)

    to_columns = _gemm.Launch(
        _im2col_kernel, (triton.cdiv(m, COL_BLOCK_M), triton.cdiv(k_red, COL_BLOCK_K), groups),
        (x, col, *x.stride(), geom.h, geom.w, geom.p, geom.q, m, geom.c_per_group, geom.r, geom.s, k_red,
         *geom.stride, geom.padding[0], geom.padding[2], *geom.dilation),
        dict(CHANNELS_LAST=channels_last, USE_INT64=use_int64, BLOCK_M=COL_BLOCK_M, BLOCK_K=COL_BLOCK_K),
        COL_WARPS, 1)
    gemm = _gemm.gemm_launch(
        col, (m * k_red, geom.p * geom.q * k_red, k_red, 1),
        wmat, (kg * wmat.stride(0), wmat.stride(1), wmat.stride(0)), bias, out,
        m, geom.p * geom.q, kg, k_red, groups,
        input_precision=input_precision, use_int64=use_int64, config=cfg, epilogue=epilogue)
    return to_columns, gemm, out


def launch(x, weight, bias, geom: ConvGeometry, *, input_precision: str = "ieee",
           config: GemmConfig | None = None, epilogue: Epilogue = NONE) -> torch.Tensor:
    """Convolve ``x`` (NCHW or channels_last): columns into a workspace, then the GEMM.

    ``config`` selects the GEMM's tiles (None: :func:`default_config`).
    """
    to_columns, gemm, out = plan(x, weight, bias, geom, input_precision=input_precision, config=config,
                                 epilogue=epilogue)
    to_columns()
    gemm()
    return out


def static_specs() -> list[StaticSpec]:
    """The column kernel in fp32, fp16 and bf16 (channels_last) plus NCHW once (fp16); the GEMM's
    default config in fp32 ("ieee" and "tf32"), fp16 and bf16 plus NCHW once (fp16), and every
    other config once in the dtype it is meant for (:func:`convbench.kernels.conv._gemm.static_variant`).

    Specs come from :func:`plan` on meta tensors of ``implicit_gemm.TYPICAL_LAYER`` (the GEMM sees
    the same contiguous workspace for both layouts; only its output strides differ).
    """
    geom = implicit_gemm.TYPICAL_LAYER
    specs = []
    for dtype in _common.FLOAT_DTYPES:
        default = default_config(geom, dtype)
        dname = _gemm.DTYPE_NAME[dtype]
        for layout in ("nhwc", "nchw"):
            if layout == "nchw" and dtype != torch.float16:
                continue
            to_columns, _, _ = _sample_plan(geom, dtype, layout, "ieee", default)
            specs.append(to_columns.static_spec(f"conv.im2col.columns/{dname}/{layout}", default=True,
                                                expect_tensor_cores=False))
        for precision in _gemm.precisions_for(dtype):
            pname = dname + ("-tf32" if precision == "tf32" else "")
            for layout in ("nhwc", "nchw"):
                for cfg in configs(dtype):
                    if not _gemm.static_variant(cfg, default, dtype, precision, layout):
                        continue
                    _, gemm, _ = _sample_plan(geom, dtype, layout, precision, cfg)
                    specs.append(gemm.static_spec(
                        f"conv.im2col.gemm/{pname}/{layout}/{cfg.name}", default=cfg == default,
                        expect_tensor_cores=dtype != torch.float32 or precision == "tf32"))
    return specs


def _sample_plan(geom: ConvGeometry, dtype, layout: str, precision: str, cfg: GemmConfig):
    fmt = torch.channels_last if layout == "nhwc" else torch.contiguous_format
    x = torch.empty(geom.input_shape, dtype=dtype, device="meta").contiguous(memory_format=fmt)
    w = torch.empty(geom.weight_shape, dtype=dtype, device="meta").contiguous(memory_format=fmt)
    b = torch.empty(geom.k, dtype=dtype, device="meta")
    return _plan_unchecked(x, w, b, geom, precision, cfg)
