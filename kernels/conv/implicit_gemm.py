"""Implicit-GEMM convolution: the column matrix is gathered on the fly, never stored.

Per group ``g`` (a grid axis) the convolution is the GEMM ``out[(n,p,q), k] = sum A * B`` with
M = N*P*Q rows, K/g columns and a reduction of length C/g*R*S (see :mod:`convbench.kernels.conv._gemm`).
Each program owns a BLOCK_M x BLOCK_N output tile and walks the reduction as one flat loop over
``(r, s, channel block)``: per step the input rows ``h = p*stride - pad_top + r*dilation`` (and
the same for ``w``) are computed once per tap, out-of-image taps are masked to zero (that is the
padding), and a BLOCK_M x BLOCK_K slab of channels is loaded and fed to ``tl.dot`` with fp32
accumulation.  Taps outer / channels inner is the (r, s, c) reduction order for both layouts:
with channels_last the slab is contiguous along c; with NCHW it is contiguous along the output
pixels (q) instead, which coalesces, though the compiler cannot prove it, so NCHW loads are not vectorized.  The
weight is read as K x R x S x C (converted to channels_last by the launcher when it is not, a
copy of K*C/g*R*S elements) so that each B tile is contiguous along c.

* Layouts: NCHW or channels_last input (all strides passed); the output is written in the
  input's memory format.  Padding is per side (top, bottom, left, right); stride, dilation,
  groups and bias are runtime arguments.
* 1x1 fast path: a 1x1 kernel with stride 1 and no padding needs no gather: the input already
  is the (N*H*W) x C column matrix, so it runs the plain GEMM of :mod:`convbench.kernels.conv._gemm`.
* Constraints: C/g >= 16 and K/g >= 16 (``tl.dot`` needs every block dimension >= 16, which
  only pays when the channels fill it); smaller channel counts belong to ``direct``.
* dtypes: fp32 (``input_precision`` "ieee" or "tf32"), fp16, bf16; fp32 accumulation.

Reference: Chetlur et al., "cuDNN: Efficient Primitives for Deep Learning" (2014), section 3.1
(implicit lowering); NVIDIA CUTLASS "Implicit GEMM Convolution" documentation.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from convbench.reference.geometry import ConvGeometry

from .. import _common
from .._static_spec import StaticSpec
from . import _gemm
from ._epilogue import NONE, Epilogue, sample_epilogue
from ._gemm import CONFIGS, GemmConfig, dot_acc, gemm_tile, store_tile  # noqa: F401  (CONFIGS is public)

ERROR_SCALE = 1.0

#: the layer the static check's ``default=True`` specs are chosen for (ResNet-50 conv3_x 3x3)
TYPICAL_LAYER = ConvGeometry(32, 128, 28, 28, 128, 3, 3, padding=(1, 1, 1, 1))
#: and the 1x1 of the same stage that expands 128 -> 512 channels
TYPICAL_1X1 = ConvGeometry(32, 128, 28, 28, 512, 1, 1)
#: the ResNet-50 RGB stem (C=3, 7x7/2): the flat (r, s, c) reduction path
TYPICAL_STEM = ConvGeometry(32, 3, 224, 224, 64, 7, 7, stride=(2, 2), padding=(3, 3, 3, 3))


@triton.jit
def _implicit_gemm_kernel(
    # tensors: input NCHW-indexed, weight K x C/g x R x S, bias (K,) or unused, output N x K x P x Q
    x_ptr, w_ptr, bias_ptr, out_ptr,
    # the fused epilogue's scale, shift (K,) and residual (the output's layout); read only when asked
    scale_ptr, shift_ptr, res_ptr,
    # element strides of input (n, c, h, w), weight (k, c, r, s), output (n, k, p, q)
    sxn, sxc, sxh, sxw,
    swk, swc, swr, sws,
    son, sok, sop, soq,
    # sizes: input H x W, output P x Q, M = N*P*Q, channels per group, kernel R x S
    H, W, P, Q, M, CG, KG, R, S,
    # geometry: stride, top/left padding, dilation
    stride_h, stride_w, pad_t, pad_l, dil_h, dil_w,
    # meta-parameters
    HAS_BIAS: tl.constexpr, INPUT_PRECISION: tl.constexpr, UPCAST: tl.constexpr, USE_INT64: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    FLAT_RED: tl.constexpr,
    HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr, HAS_RES: tl.constexpr, ACT: tl.constexpr,
):
    g, offs_m, offs_n, offs_c, m_ok, n_ok, img, pq = gemm_tile(M, KG, P * Q, BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M,
                                                               USE_INT64)
    oh = pq // Q
    ow = pq % Q
    h0 = oh * stride_h - pad_t  # input row of tap r = 0
    w0 = ow * stride_w - pad_l
    x_rows = x_ptr + img * sxn + g * CG * sxc  # [BLOCK_M] pointers to channel 0 of this group
    w_cols = w_ptr + (g * KG + offs_n) * swk  # [BLOCK_N]

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if FLAT_RED:
        # few channels per group: one flat loop over red = (r*S + s)*CG + c, so that a C=3 7x7
        # stem is a reduction of 147 in ceil(147/BLOCK_K) steps instead of 49 nearly-empty ones
        KRED = R * S * CG
        x_base = img * sxn + g * CG * sxc + h0 * sxh + w0 * sxw  # [BLOCK_M] offset of tap (0, 0), c = 0
        for red0 in range(0, KRED, BLOCK_K):
            red = red0 + offs_c
            red_ok = red < KRED
            tap = red // CG
            c = red - tap * CG
            r = tap // S
            dh = r * dil_h
            dw = (tap - r * S) * dil_w
            ih = h0[:, None] + dh[None, :]
            iw = w0[:, None] + dw[None, :]
            inside = (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            # one 2-D add of a row offset and a reduction offset (padding taps are masked)
            a = tl.load(x_ptr + (x_base[:, None] + (c * sxc + dh * sxh + dw * sxw)[None, :]),
                        mask=m_ok[:, None] & red_ok[None, :] & inside, other=0.0)
            b = tl.load(w_cols[None, :] + (r * swr + (tap - r * S) * sws + c * swc)[:, None],
                        mask=red_ok[:, None] & n_ok[None, :], other=0.0)
            acc = dot_acc(a, b, acc, INPUT_PRECISION, UPCAST)
    else:
        c_blocks = tl.cdiv(CG, BLOCK_K)
        for step in range(0, R * S * c_blocks):
            tap = step // c_blocks
            c0 = (step - tap * c_blocks) * BLOCK_K
            r = tap // S
            s = tap - r * S
            ih = h0 + r * dil_h
            iw = w0 + s * dil_w
            row_ok = m_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            c_ok = offs_c < CG - c0
            a = tl.load((x_rows + ih * sxh + iw * sxw)[:, None] + ((c0 + offs_c) * sxc)[None, :],
                        mask=row_ok[:, None] & c_ok[None, :], other=0.0)
            b = tl.load((w_cols + r * swr + s * sws)[None, :] + ((c0 + offs_c) * swc)[:, None],
                        mask=c_ok[:, None] & n_ok[None, :], other=0.0)
            acc = dot_acc(a, b, acc, INPUT_PRECISION, UPCAST)

    offs_k = g * KG + offs_n
    store_tile(acc, out_ptr, img * son + oh * sop + ow * soq, m_ok, bias_ptr, offs_k, n_ok, sok, HAS_BIAS,
               scale_ptr, shift_ptr, res_ptr, HAS_SCALE, HAS_SHIFT, HAS_RES, ACT)


def unsupported(geom: ConvGeometry, dtype: torch.dtype) -> str | None:
    if dtype not in _common.FLOAT_DTYPES:
        return f"dtype {dtype} is not one of fp32, fp16, bf16"
    return None


def is_fast_1x1(geom: ConvGeometry) -> bool:
    """1x1 kernel, stride 1, no padding: the input is the column matrix (dilation is moot)."""
    return (geom.r, geom.s) == (1, 1) and geom.stride == (1, 1) and geom.padding == (0, 0, 0, 0)


def workspace_bytes(geom: ConvGeometry, itemsize: int) -> int:
    return 0


def multiplies(geom: ConvGeometry) -> int:
    return geom.flops // 2


def default_config(geom: ConvGeometry, dtype: torch.dtype) -> GemmConfig:
    return _gemm.default_config(geom.n * geom.p * geom.q, geom.k_per_group, geom.reduction_length, dtype)


def configs(dtype: torch.dtype) -> tuple[GemmConfig, ...]:
    """Every config a launch with this dtype may use (tests run each of them)."""
    return _gemm.configs_for(dtype)


def check_arguments(x, weight, bias, geom: ConvGeometry, input_precision: str,
                    algorithm: str = "implicit_gemm") -> None:
    """Everything a launch needs checked first (shared with im2col); raises before any launch."""
    _common.check_launch(x, weight, bias, geom, input_precision)
    reason = unsupported(geom, x.dtype)
    if reason is not None:
        raise ValueError(f"{algorithm} does not apply to {geom}: {reason}")


def plan(x, weight, bias, geom: ConvGeometry, *, input_precision: str = "ieee",
         config: GemmConfig | None = None, epilogue: Epilogue = NONE) -> tuple[_gemm.Launch, torch.Tensor]:
    """Validate, allocate the output and build the launch (not run yet)."""
    check_arguments(x, weight, bias, geom, input_precision)
    cfg = _gemm.resolve_config(config, x.dtype, default_config(geom, x.dtype))
    return _plan_unchecked(x, weight, bias, geom, input_precision, cfg, epilogue)


def _plan_unchecked(x, weight, bias, geom: ConvGeometry, input_precision: str,
                    cfg: GemmConfig, epilogue: Epilogue = NONE) -> tuple[_gemm.Launch, torch.Tensor]:
    x = x.contiguous(memory_format=_common.memory_format_of(x))
    weight = weight.contiguous(memory_format=torch.channels_last)  # (k, r, s, c): B tiles contiguous in c
    out = _common.empty_output(geom.output_shape, x)
    use_int64 = _common.needs_int64(x, weight, out)
    m, kg, groups = geom.n * geom.p * geom.q, geom.k_per_group, geom.groups

    if is_fast_1x1(geom):
        # (n, h*W + w) addresses the input as the A matrix: stride_h == W * stride_w in NCHW and NHWC
        wmat = weight.reshape(geom.k, geom.c_per_group)
        return _gemm.gemm_launch(
            x, (geom.c_per_group * x.stride(1), x.stride(0), x.stride(3), x.stride(1)),
            wmat, (kg * wmat.stride(0), wmat.stride(1), wmat.stride(0)), bias, out,
            m, geom.p * geom.q, kg, geom.c_per_group, groups,
            input_precision=input_precision, use_int64=use_int64, config=cfg, epilogue=epilogue), out

    return _gemm.Launch(
        _implicit_gemm_kernel, (triton.cdiv(m, cfg.block_m) * triton.cdiv(kg, cfg.block_n), groups),
        (x, weight, bias if bias is not None else weight, out, *epilogue.pointers(out),
         *x.stride(), *weight.stride(), *out.stride(),
         geom.h, geom.w, geom.p, geom.q, m, geom.c_per_group, kg, geom.r, geom.s,
         *geom.stride, geom.padding[0], geom.padding[2], *geom.dilation),
        dict(HAS_BIAS=bias is not None, INPUT_PRECISION=input_precision, UPCAST=_gemm.upcast_dot(x.dtype),
             USE_INT64=use_int64, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k,
             GROUP_M=cfg.group_m, FLAT_RED=_gemm.flat_reduction(geom.c_per_group, cfg.block_k),
             **epilogue.meta()),
        cfg.num_warps, cfg.num_stages), out


def launch(x, weight, bias, geom: ConvGeometry, *, input_precision: str = "ieee",
           config: GemmConfig | None = None, epilogue: Epilogue = NONE) -> torch.Tensor:
    """Convolve ``x`` (NCHW or channels_last) with ``weight``; output in ``x``'s memory format.

    ``config=None`` uses :func:`default_config`; tests pass each of :func:`configs` in turn;
    ``epilogue``: fused into the store (:mod:`._epilogue`).
    """
    run, out = plan(x, weight, bias, geom, input_precision=input_precision, config=config, epilogue=epilogue)
    run()
    return out


def static_specs() -> list[StaticSpec]:
    """The gather kernel's default config in fp32 ("ieee" and "tf32"), fp16 and bf16, channels_last,
    plus NCHW once (fp16); every other config once, channels_last, in the dtype it is meant for
    (:func:`convbench.kernels.conv._gemm.static_variant`); the 1x1 GEMM path's default config likewise.

    Specs come from :func:`plan` on meta tensors of :data:`TYPICAL_LAYER` (gather),
    :data:`TYPICAL_1X1` (fast path) and :data:`TYPICAL_STEM` (the flat (r, s, c) reduction of
    small C/g: its default config in every dtype and precision, every other config once in fp16),
    so they carry the launcher's exact specialisation.  The 1x1
    path is :func:`convbench.kernels.conv._gemm._gemm_kernel`, whose other configs ``im2col`` lists.
    """
    specs = []
    for dtype in _common.FLOAT_DTYPES:
        for tag, geom in (("gather", TYPICAL_LAYER), ("1x1", TYPICAL_1X1), ("flat", TYPICAL_STEM)):
            default = default_config(geom, dtype)
            for precision in _gemm.precisions_for(dtype):
                for layout in ("nhwc", "nchw"):
                    for cfg in configs(dtype):
                        is_default = cfg == default
                        if tag == "1x1" and not is_default:
                            continue
                        if tag == "flat" and not is_default:  # every config's flat loop once, in fp16
                            if not (dtype == torch.float16 and layout == "nhwc"):
                                continue
                        elif not _gemm.static_variant(cfg, default, dtype, precision, layout):
                            continue
                        run = _sample_plan(geom, dtype, layout, precision, cfg)
                        dname = _gemm.DTYPE_NAME[dtype] + ("-tf32" if precision == "tf32" else "")
                        specs.append(run.static_spec(
                            f"conv.implicit_gemm.{tag}/{dname}/{layout}/{cfg.name}", default=is_default,
                            expect_tensor_cores=dtype != torch.float32 or precision == "tf32"))
    # the fused epilogue (scale, shift, residual, SiLU) on the default tile of the gather and 1x1 paths
    for tag, geom in (("gather", TYPICAL_LAYER), ("1x1", TYPICAL_1X1)):
        for dtype in (torch.float16, torch.bfloat16):
            cfg = default_config(geom, dtype)
            run = _sample_plan(geom, dtype, "nhwc", "ieee", cfg, fused=True)
            specs.append(run.static_spec(f"conv.implicit_gemm.{tag}.fused/{_gemm.DTYPE_NAME[dtype]}/nhwc/{cfg.name}",
                                         default=True, expect_tensor_cores=True))
    return specs


def _sample_plan(geom: ConvGeometry, dtype, layout: str, precision: str, cfg: GemmConfig, *,
                 fused: bool = False) -> _gemm.Launch:
    """The launch :func:`launch` would make for ``geom`` (meta tensors: nothing is allocated);
    ``fused``: with every part of the epilogue."""
    fmt = torch.channels_last if layout == "nhwc" else torch.contiguous_format
    x = torch.empty(geom.input_shape, dtype=dtype, device="meta").contiguous(memory_format=fmt)
    w = torch.empty(geom.weight_shape, dtype=dtype, device="meta")
    b = torch.empty(geom.k, dtype=dtype, device="meta")
    epi = sample_epilogue(geom.output_shape, dtype, fmt) if fused else NONE
    return _plan_unchecked(x, w, b, geom, precision, cfg, epi)[0]
