"""FFT convolution by tiles: DFTs as ``tl.dot`` products, a GEMM over channels, overlap-save.

Algorithm: the output is cut into LH x LW tiles with ``LH = F - R + 1``, ``LW = F - S + 1``;
each tile reads an F x F input patch.  Circular correlation of the patch with the zero-padded
filter equals the wanted correlation on the first LH x LW positions (no wrap-around there), so
the tiles simply partition the output: overlap-save, no accumulation between tiles.

1. forward   ``X[f, t, c] = DFT2(patch_tc) / F`` for the F*(F/2+1) frequencies of the half
   spectrum (real input), DFTs in :mod:`._fft_kernels`, stored in ``x.dtype`` as (re, im)
2. filter    ``G = DFT2(g_kc zero-padded to F x F)``, same kernel, stored in ``x.dtype`` as the
   real 2 x 2 block ``[[Re G, -Im G], [Im G, Re G]]`` per (c, k): a row ``(Re X, Im X)`` times
   it is ``X * conj(G)``, the spectrum of the correlation (:func:`transform_filter`)
3. GEMM      ``Z[f] = X[f] @ W[f]`` per frequency as one real GEMM ``[T x 2C] @ [2C x 2K]``
   (the real embedding of the complex product: the same 4 real multiplies per complex one),
   fp32 accumulation, tensor cores for fp16/bf16 (fp32 per ``input_precision``); the sum over
   input channels of the pointwise spectra products *is* this GEMM.  The kernel is Winograd's
   batched GEMM (:func:`._winograd_kernels._batched_gemm_kernel`), frequencies as its points
4. inverse   ``y_tile = Re IDFT2(Z) / F`` on the LH x LW valid corner (+ bias), fp32, masked

The DFTs are real/imaginary matrix products with cos/sin tables built on the host in float64;
tiles of 64 use a Cooley-Tukey split 64 = 16 x 4 (:mod:`._fft_kernels`).  No ``torch.fft``.

Precision: the transforms take fp32 data and use 3xTF32 tensor-core products (``tl.dot``
``input_precision="tf32x3"``, ~2^-22 relative; an fp32 FMA ``tl.dot`` of these shapes spills
kilobytes per thread on sm_80/sm_90).  For fp16/bf16 inputs exactly two things round to the
input dtype: the input spectra (stage 1) and the filter spectra (stage 2), the GEMM operands.
Z and the inverse stay fp32; the output is rounded once (:func:`operand_rounding`).  The
forward scale 1/F keeps fp16 spectra in range for inputs up to ~65504/F in magnitude (DC).

Constraints: stride 1, dilation 1, groups 1, any padding, filters up to 33 x 33 (the 64-tile
must keep at least half its outputs).  NCHW or channels_last; the output follows the input.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import triton

from convbench.reference.geometry import ConvGeometry

from .. import _common
from .._static_spec import StaticSpec
from . import _fft_kernels as _k
from ._winograd_kernels import _batched_gemm_kernel
from ._gemm import upcast_dot
from .winograd import emulate_rne

TILES = (16, 32, 64)
MAX_FILTER = 64 // 2 + 1

#: Rounding both spectra (relative u each) perturbs the output by the same relative RMS as
#: rounding the two operands of a direct product: the DFT is unitary up to its scale, so the
#: rounding-amplification factor of winograd.rounding_amplification is exactly 1 for it.
ERROR_SCALE = 1.0


def operand_rounding(dtype: torch.dtype, input_precision: str = "ieee"):
    """What the kernels round operands to, for the tolerance model (``tolerance(operand_dtype=)``):
    the spectra to fp16/bf16 for those inputs; for fp32, the 3xTF32 DFTs ("tf32x3"), or the
    GEMM's TF32 products with ``input_precision="tf32"``."""
    if dtype != torch.float32:
        return dtype
    return "tf32" if input_precision == "tf32" else "tf32x3"


# ---------------------------------------------------------------------------------------------
# DFT tables (float64 -> fp32)
# ---------------------------------------------------------------------------------------------
def _cos_sin(n: int) -> tuple[np.ndarray, np.ndarray]:
    jk = np.outer(np.arange(n), np.arange(n)) % n
    theta = 2.0 * np.pi * jk / n
    return np.cos(theta), np.sin(theta)


def dft_tables(tile: int) -> np.ndarray:
    """The float64 tables :mod:`._fft_kernels` reads, flattened (layout in its docstring)."""
    if tile not in TILES:
        raise ValueError(f"tile must be one of {TILES}, got {tile!r}")
    if tile <= 32:
        cos, sin = _cos_sin(tile)
        return np.concatenate([cos.ravel(), sin.ravel()])
    cos16, sin16 = _cos_sin(16)
    cos4, sin4 = _cos_sin(4)
    kron_cos, kron_sin = np.kron(np.eye(4), cos4), np.kron(np.eye(4), sin4)
    n2k1 = np.outer(np.arange(4), np.arange(16))
    theta = 2.0 * np.pi * n2k1 / 64
    return np.concatenate([cos16.ravel(), sin16.ravel(), kron_cos.ravel(), kron_sin.ravel(),
                           np.cos(theta).ravel(), np.sin(theta).ravel()])


_TABLE_CACHE: dict = {}


def _tables_on(tile: int, device) -> torch.Tensor:
    key = (tile, str(device))
    if key not in _TABLE_CACHE:
        _TABLE_CACHE[key] = torch.tensor(dft_tables(tile), dtype=torch.float32, device=device)
    return _TABLE_CACHE[key]


# ---------------------------------------------------------------------------------------------
# configs
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    tile: int  # F: the DFT size per dimension
    block_m: int  # tiles per GEMM program
    block_n: int  # output channels per GEMM program
    block_k: int  # input channels per GEMM step
    num_warps: int
    num_stages: int
    block_p: int  # frequencies per GEMM program (divides F*(F/2+1))
    xform_c: int  # channels per forward/inverse program
    xform_warps: int

    @property
    def name(self) -> str:
        """Readable and unique among the module's configs (static spec names use it)."""
        return str(self)

    def __str__(self) -> str:
        return (f"F{self.tile}-BM{self.block_m}-BN{self.block_n}-BK{self.block_k}-P{self.block_p}"
                f"-w{self.num_warps}-s{self.num_stages}-X{self.xform_c}w{self.xform_warps}")


#: GEMM sizes are those of the real embedding: [tiles x 2C] @ [2C x 2K] per frequency.  Per
#: frequency the GEMM is small (few tiles when tiles are large), so programs take several
#: frequencies; 2112 / 16 = 132 programs per GEMM block for the 64-tile (one H100 wave).
CONFIGS: tuple[Config, ...] = (
    Config(16, 64, 64, 32, 4, 3, block_p=4, xform_c=8, xform_warps=4),
    Config(32, 64, 64, 32, 4, 3, block_p=4, xform_c=2, xform_warps=8),
    Config(64, 64, 64, 32, 4, 3, block_p=16, xform_c=1, xform_warps=8),
    Config(16, 64, 32, 16, 4, 2, block_p=2, xform_c=4, xform_warps=4),
)


def _valid(geom: ConvGeometry, tile: int) -> tuple[int, int]:
    return tile - geom.r + 1, tile - geom.s + 1


def _tiles(geom: ConvGeometry, tile: int) -> tuple[int, int, int]:
    lh, lw = _valid(geom, tile)
    th, tw = math.ceil(geom.p / lh), math.ceil(geom.q / lw)
    return th, tw, geom.n * th * tw


def _cost(geom: ConvGeometry, tile: int) -> float:
    """Heuristic work estimate: complex GEMM multiplies plus DFT multiplies, the latter weighted
    8x (3xTF32 is three TF32 products at half the fp16 tensor-core rate)."""
    t = _tiles(geom, tile)[2]
    nf = tile * (tile // 2 + 1)
    per_point = 2 * (tile if tile <= 32 else 16 + 16 + 2)
    return t * (4 * nf * geom.c * geom.k + 8 * (geom.c + geom.k) * tile * tile * per_point)


def configs(dtype: torch.dtype | None = None) -> tuple[Config, ...]:
    """Every config an FFT launch may use (a tile too small for the filter is refused per launch)."""
    return CONFIGS


def default_config(geom: ConvGeometry) -> Config:
    """The tile with the least estimated work among those that keep half their outputs."""
    usable = [c for c in CONFIGS[:3] if min(_valid(geom, c.tile)) >= c.tile // 2] or [CONFIGS[2]]
    return min(usable, key=lambda c: _cost(geom, c.tile))


# ---------------------------------------------------------------------------------------------
# domain, counts, workspace
# ---------------------------------------------------------------------------------------------
def unsupported(geom: ConvGeometry, dtype=None) -> Optional[str]:
    if geom.stride != (1, 1):
        return f"fft needs stride 1, got stride={geom.stride}"
    if geom.dilation != (1, 1):
        return f"fft needs dilation 1, got dilation={geom.dilation}"
    if geom.groups != 1:
        return f"fft needs groups=1, got groups={geom.groups}"
    if geom.r > MAX_FILTER or geom.s > MAX_FILTER:
        return f"fft supports filters up to {MAX_FILTER}x{MAX_FILTER} (64-point tiles), got {geom.r}x{geom.s}"
    return None


def multiplies(geom: ConvGeometry, config: Optional[Config] = None) -> int:
    """Pointwise-stage real multiplies: tiles x F*(F/2+1) frequencies x 4 x C x K (the complex
    products summed over channels; transforms not counted, as for Winograd)."""
    tile = (config or default_config(geom)).tile
    return _tiles(geom, tile)[2] * tile * (tile // 2 + 1) * 4 * geom.c * geom.k


def workspace_bytes(geom: ConvGeometry, itemsize: int, config: Optional[Config] = None) -> int:
    """Per frequency: input spectra (tiles x C complex) and the filter's real 2C x 2K block
    matrix in the input dtype, Z (tiles x K complex) in fp32."""
    tile = (config or default_config(geom)).tile
    t = _tiles(geom, tile)[2]
    nf = tile * (tile // 2 + 1)
    return nf * ((2 * t * geom.c + 4 * geom.c * geom.k) * itemsize + 2 * t * geom.k * 4)


# ---------------------------------------------------------------------------------------------
# launchers
# ---------------------------------------------------------------------------------------------
def transform_filter(weight: torch.Tensor, tile: int, config: Optional[Config] = None) -> torch.Tensor:
    """``G = DFT2(weight zero-padded to tile x tile)`` as ``[F*(F/2+1), C, 2, K, 2]`` in
    ``weight.dtype``: per frequency the real 2C x 2K matrix of blocks ``[[Re G, -Im G], [Im G,
    Re G]]`` that multiplies input spectra into ``X * conj(G)``; reusable with the same tile."""
    _common.check_tensor(weight, "weight", ndim=4)
    if tile not in TILES:
        raise ValueError(f"tile must be one of {TILES}, got {tile!r}")
    k, c, r, s = weight.shape
    if r > tile // 2 + 1 or s > tile // 2 + 1:
        raise ValueError(f"a {r}x{s} filter needs a tile of at least {2 * max(r, s) - 2}, got tile={tile}")
    cfg = config or next(cf for cf in CONFIGS if cf.tile == tile)
    nf = tile * (tile // 2 + 1)
    out = torch.empty((nf, c, 2, k, 2), dtype=weight.dtype, device=weight.device)
    _k._forward_kernel[(k, triton.cdiv(c, cfg.xform_c))](
        weight, _tables_on(tile, weight.device), out,
        c, r, s, 1, 1, 0, 0, 0, 0, *weight.stride(), 4 * c * k, 2, 4 * k, 2 * k,
        F=tile, SCALE=1.0, FILTER=True, BLOCK_C=cfg.xform_c, INT64=_common.needs_int64(weight, out),
        EMULATE_RNE=emulate_rne(weight.dtype), num_warps=cfg.xform_warps)
    return out


def launch(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], geom: ConvGeometry, *,
           input_precision: str = "ieee", config: Optional[Config] = None,
           filter_transformed: Optional[torch.Tensor] = None) -> torch.Tensor:
    """FFT convolution of ``x`` (NCHW or channels_last); the output follows ``x``."""
    launches, out = plan(x, weight, bias, geom, input_precision=input_precision, config=config,
                         filter_transformed=filter_transformed)
    for run in launches:
        run()
    return out


def plan(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], geom: ConvGeometry, *,
         input_precision: str = "ieee", config: Optional[Config] = None,
         filter_transformed: Optional[torch.Tensor] = None):
    """The one-time work (validation, the filter spectra, workspace and output) and
    ``(launches, output)``: forward DFT, per-frequency GEMM and inverse DFT as zero-argument
    callables writing into ``output``."""
    _common.check_launch(x, weight, bias, geom, input_precision)
    reason = unsupported(geom, x.dtype)
    if reason is not None:
        raise ValueError(reason)
    if config is not None and not isinstance(config, Config):
        raise TypeError(f"config must be an fft.Config, got {type(config).__name__}")
    cfg = config or default_config(geom)
    tile = cfg.tile
    lh, lw = _valid(geom, tile)
    if lh < 1 or lw < 1:
        raise ValueError(f"config tile={tile} is too small for a {geom.r}x{geom.s} filter")
    nf = tile * (tile // 2 + 1)
    th, tw, t = _tiles(geom, tile)
    if filter_transformed is None:
        w_spec = transform_filter(weight, tile, cfg)
    else:
        w_spec = filter_transformed
        _common.check_same(x, "input", w_spec, "filter_transformed")
        if tuple(w_spec.shape) != (nf, geom.c, 2, geom.k, 2) or not w_spec.is_contiguous():
            raise ValueError(f"filter_transformed must be a contiguous {(nf, geom.c, 2, geom.k, 2)} tensor "
                             f"from transform_filter(weight, {tile}), got {tuple(w_spec.shape)}")
    out = _common.empty_output(geom.output_shape, x)
    x_spec = torch.empty((nf, t, geom.c, 2), dtype=x.dtype, device=x.device)
    z = torch.empty((nf, t, geom.k, 2), dtype=torch.float32, device=x.device)
    int64 = _common.needs_int64(x, out, x_spec, z, w_spec)
    tables = _tables_on(tile, x.device)
    top, _, left, _ = geom.padding
    rne = emulate_rne(x.dtype)

    forward = functools.partial(_k._forward_kernel[(t, triton.cdiv(geom.c, cfg.xform_c))],
        x, tables, x_spec, geom.c, geom.h, geom.w, th, tw, lh, lw, top, left, *x.stride(),
        2 * t * geom.c, 2 * geom.c, 2, 0,
        F=tile, SCALE=1.0 / tile, FILTER=False, BLOCK_C=cfg.xform_c, INT64=int64, EMULATE_RNE=rne,
        num_warps=cfg.xform_warps)
    gemm = functools.partial(
        _batched_gemm_kernel[(triton.cdiv(t, cfg.block_m), triton.cdiv(2 * geom.k, cfg.block_n), nf // cfg.block_p)],
        x_spec, w_spec, z, t, 2 * geom.c, 2 * geom.k,
        BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k, BLOCK_P=cfg.block_p,
        INPUT_PRECISION=input_precision,
        INT64=int64, UPCAST=upcast_dot(x.dtype), num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    inverse = functools.partial(_k._inverse_kernel[(t, triton.cdiv(geom.k, cfg.xform_c))],
        z, tables, bias if bias is not None else z, out, geom.k, geom.p, geom.q, t, th, tw, lh, lw,
        *out.stride(),
        F=tile, SCALE=1.0 / tile, BLOCK_K=cfg.xform_c, HAS_BIAS=bias is not None, INT64=int64,
        EMULATE_RNE=rne, num_warps=cfg.xform_warps)
    return (forward, gemm, inverse), out


# ---------------------------------------------------------------------------------------------
# static compile specs
# ---------------------------------------------------------------------------------------------
_PTR = {torch.float32: "*fp32", torch.float16: "*fp16", torch.bfloat16: "*bf16"}
_DT = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def static_specs() -> list[StaticSpec]:
    """The default configs (those of the typical layers) of every kernel in fp32, fp16 and bf16,
    every other config once in fp16, and the 64-bit-offset variant once per kernel (forward DFT,
    GEMM, inverse DFT) on the smallest-tile default config in fp16; with the 16-divisibility of a
    typical layer.  Tensor cores are expected in the GEMM for fp16/bf16 and in every DFT (3xTF32)."""
    typical = (ConvGeometry(1, 64, 24, 24, 32, 3, 3), ConvGeometry(16, 192, 28, 28, 32, 5, 5, padding=(2, 2, 2, 2)),
               ConvGeometry(8, 64, 56, 56, 64, 3, 3, padding=(1, 1, 1, 1)))
    defaults = {default_config(g) for g in typical}
    int64_config = min(defaults, key=lambda c: c.tile)
    specs: dict[str, StaticSpec] = {}

    def add(name, fn, pointers, ints, const, warps, stages, default, divisible, tc=False):
        signature = {**pointers, **{n: "i32" for n in ints}, **{n: "constexpr" for n in const}}
        specs[name] = StaticSpec(name, fn, signature, const, warps, stages, default, tc,
                                 divisible_by_16=tuple(divisible))

    for dtype, ptr in _PTR.items():
        dt = _DT[dtype]
        for cfg, int64 in [(c, False) for c in CONFIGS] + [(int64_config, True)]:
            is_default = cfg in defaults
            if (int64 or not is_default) and dtype != torch.float16:
                continue
            suffix = "-i64" if int64 else ""
            add(f"conv.fft.gemm/{dt}/BM{cfg.block_m}-BN{cfg.block_n}-BK{cfg.block_k}-P{cfg.block_p}"
                f"-w{cfg.num_warps}-s{cfg.num_stages}{suffix}", _batched_gemm_kernel,
                {"v_ptr": ptr, "u_ptr": ptr, "m_ptr": "*fp32"}, ("T", "C", "K"),
                {"BLOCK_M": cfg.block_m, "BLOCK_N": cfg.block_n, "BLOCK_K": cfg.block_k,
                 "BLOCK_P": cfg.block_p, "INPUT_PRECISION": "ieee", "INT64": int64, "UPCAST": False},
                cfg.num_warps, cfg.num_stages, is_default, ("v_ptr", "u_ptr", "m_ptr", "C", "K"),
                tc=dtype != torch.float32)
            xf = f"F{cfg.tile}-X{cfg.xform_c}-w{cfg.xform_warps}{suffix}"
            for is_filter in (False, True) if not int64 else (False,):  # the filter: forward's kernel
                add(f"conv.fft.{'filter' if is_filter else 'forward'}/{dt}/{xf}", _k._forward_kernel,
                    {"src_ptr": ptr, "tab_ptr": "*fp32", "out_ptr": ptr},
                    ("C", "H", "W", "TH", "TW", "STEP_H", "STEP_W", "pad_top", "pad_left",
                     "s_n", "s_c", "s_h", "s_w", "o_f", "o_p", "o_c", "o_row"),
                    {"F": cfg.tile, "SCALE": 1.0 if is_filter else 1.0 / cfg.tile, "FILTER": is_filter,
                     "BLOCK_C": cfg.xform_c, "INT64": int64, "EMULATE_RNE": False},
                    cfg.xform_warps, 1, is_default, ("src_ptr", "tab_ptr", "out_ptr", "o_f"), tc=True)
            add(f"conv.fft.inverse/{dt}/{xf}", _k._inverse_kernel,
                {"z_ptr": "*fp32", "tab_ptr": "*fp32", "bias_ptr": ptr, "y_ptr": ptr},
                ("K", "P", "Q", "T", "TH", "TW", "LH", "LW", "s_n", "s_k", "s_p", "s_q"),
                {"F": cfg.tile, "SCALE": 1.0 / cfg.tile, "BLOCK_K": cfg.xform_c, "HAS_BIAS": True,
                 "INT64": int64, "EMULATE_RNE": False},
                cfg.xform_warps, 1, is_default, ("z_ptr", "tab_ptr", "y_ptr", "K"), tc=True)
    return list(specs.values())
