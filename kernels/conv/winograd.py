"""Winograd F(2x2,3x3) and F(4x4,3x3) convolution: three Triton stages plus a filter transform.

Algorithm (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016): the
output is cut into m x m tiles; each tile needs an (m+2) x (m+2) input patch ``d``.  With 1-D
matrices A^T (m x a), G (a x 3), B^T (a x a), ``a = m + 2``::

    Y = A^T [ (G g G^T) . (B^T d B) ] A          (. = elementwise, summed over input channels)

1. input transform   ``V[p, t, c] = (B^T d_tc B)[p]``             (fp32 math, stored in x.dtype)
2. filter transform  ``U[p, c, k] = (G g_kc G^T)[p]``              (fp32 math, stored in x.dtype)
3. batched GEMM      ``M[p] = V[p] @ U[p]`` for the a*a points p   (``tl.dot``, fp32 accumulation:
   tensor cores for fp16/bf16; fp32 uses ``input_precision`` "ieee" or "tf32")
4. output transform  ``y_tile = A^T M A + bias``                   (fp32, edge tiles masked)

The filter transform is separate (:func:`transform_filter`) so a benchmark can time it
included or amortised (``filter_transformed=U``).  No fused variant (optional in the issue, not
written): fusing the stages keeps a*a accumulator tiles of [tiles x K] live per program (16 for
F(2,3), 36 for F(4,3)), forcing small blocks; whether that pays needs a GPU to measure.

Transform matrices are derived at import time in float64 from the interpolation points by
Toom-Cook (:func:`toom_cook`): F(2,3) uses 0, 1, -1, inf; F(4,3) uses 0, 1, -1, 1/2, -2, inf,
which amplifies operand rounding ~3x less than the classic 0, +-1, +-2 (Barabasz et al., "Error
analysis and improving the accuracy of Winograd convolution for deep neural networks", ACM TOMS
2020); :func:`rounding_amplification` computes that factor and it is the ``ERROR_SCALE``.

Constraints: 3x3 filter, stride 1, dilation 1, groups 1, any padding (per side).  No channel
minimum: ``tl.dot`` blocks are >= 16 and masked, so C or K below 16 only waste work.
Layouts: NCHW or channels_last input through strides; the output follows the input.
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
from . import _winograd_kernels as _k
from ._gemm import upcast_dot

# ---------------------------------------------------------------------------------------------
# transform matrices, derived (float64) from interpolation points
# ---------------------------------------------------------------------------------------------
#: finite interpolation points per output tile size m (the point at infinity is implied)
POINTS = {2: (0.0, 1.0, -1.0), 4: (0.0, 1.0, -1.0, 0.5, -2.0)}
R = 3  # filter size


def toom_cook(points, m: int, r: int = R) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A^T, G, B^T) of F(m, r) for the given finite points plus infinity, in float64.

    Linear convolution of a length-m signal with a length-r filter is polynomial
    multiplication: evaluate both at n = m + r - 1 points (``Ad``, ``Ag``), multiply, and
    interpolate with ``V^-1`` (V the n x n Vandermonde matrix, infinity as the leading
    coefficient).  Correlation is its transpose: ``y = Ad^T [(Ag g) . (V^-T d)]``.  The Lagrange
    denominators are moved from V^-1 into G, which keeps B^T free of fractions for F(2,3).
    """
    n = m + r - 1
    pts = [float(p) for p in points]
    if len(pts) != n - 1 or len(set(pts)) != len(pts):
        raise ValueError(f"F({m},{r}) needs {n - 1} distinct finite points, got {points!r}")

    def evaluation(cols: int) -> np.ndarray:
        e = np.zeros((n, cols))
        for i, a in enumerate(pts):
            e[i] = a ** np.arange(cols)
        e[n - 1, cols - 1] = 1.0  # infinity: the leading coefficient
        return e

    denom = np.ones(n)
    for i, a in enumerate(pts):
        denom[i] = np.prod([a - b for j, b in enumerate(pts) if j != i])
    interp = np.linalg.inv(evaluation(n))
    at = evaluation(m).T
    g = evaluation(r) / denom[:, None]
    bt = (interp * denom[None, :]).T
    return at, g, bt


def rounding_amplification(at: np.ndarray, g: np.ndarray, bt: np.ndarray) -> float:
    """RMS error growth of rounding the transformed operands, relative to direct convolution.

    A relative error e on each transformed product ``(G g)_p (B^T d)_p`` reaches output i with
    weight ``A^T[i, p]``; for independent unit-variance data and errors the output error
    variance is ``sum_p A^T[i,p]^2 |G_p|^2 |B^T_p|^2`` against a signal variance of r.  The 2-D
    factor is the square of the 1-D one (Kronecker products).  F(4,3) with points 0, +-1, +-2
    gives 31.4, matching the design notes' measured 8.2e-3 / 2.5e-4 = 33 for fp16.
    """
    r = g.shape[1]
    per_output = (at**2) @ ((g**2).sum(1) * (bt**2).sum(1)) / r
    return float(per_output.max())


def _as_constexpr(mat: np.ndarray) -> tuple[tuple[tuple[float, ...], ...], tuple[int, ...]]:
    """Rows as a tuple of Python floats (exact zeros kept exact) and each row's first nonzero."""
    clean = np.where(np.abs(mat) < 1e-12, 0.0, mat)
    rows = tuple(tuple(float(v) for v in row) for row in clean)
    first = tuple(int(np.flatnonzero(row)[0]) for row in clean)
    return rows, first


MATRICES = {m: toom_cook(pts, m) for m, pts in POINTS.items()}
_CONSTEXPR = {m: tuple(_as_constexpr(mat) for mat in mats) for m, mats in MATRICES.items()}

#: error relative to direct convolution, from the derived matrices (1.67 and 10.4)
ERROR_SCALE_F2 = rounding_amplification(*MATRICES[2])
ERROR_SCALE_F4 = rounding_amplification(*MATRICES[4])


# ---------------------------------------------------------------------------------------------
# configs
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    """GEMM blocking (the stage that does the multiplies) and transform blocking."""

    block_m: int  # tiles per GEMM program
    block_n: int  # output channels per GEMM program
    block_k: int  # input channels per GEMM step
    num_warps: int
    num_stages: int
    block_p: int = 1  # transformed points per GEMM program (divides (m+2)^2 for m = 2 and 4)
    xform_t: int = 16  # tiles per transform program
    xform_c: int = 16  # channels per transform program
    xform_warps: int = 4

    @property
    def name(self) -> str:
        """Readable and unique among the module's configs (static spec names use it)."""
        return str(self)

    def __str__(self) -> str:
        return (f"BM{self.block_m}-BN{self.block_n}-BK{self.block_k}-P{self.block_p}-w{self.num_warps}"
                f"-s{self.num_stages}-X{self.xform_t}x{self.xform_c}w{self.xform_warps}")


CONFIGS: tuple[Config, ...] = (
    Config(64, 64, 32, 4, 3),
    Config(128, 64, 32, 4, 3),
    Config(128, 128, 32, 8, 3),
    Config(64, 32, 16, 4, 2, block_p=2, xform_t=8, xform_c=16),
)


#: filter-transform blocking (output channels, input channels, warps): one config, it is cheap
FILTER_BLOCK = (32, 32, 8)


def configs(dtype: torch.dtype | None = None) -> tuple[Config, ...]:
    """Every config a Winograd launch (F2 or F4) may use; all fit every dtype's shared memory."""
    return CONFIGS


def default_config(geom: ConvGeometry, m: int) -> Config:
    """Small problems (few tiles or channels) take the small blocks; large ones the 128-wide."""
    tiles = geom.n * math.ceil(geom.p / m) * math.ceil(geom.q / m)
    if tiles < 256 or geom.k <= 32:
        return CONFIGS[0] if geom.k > 32 else CONFIGS[3]
    return CONFIGS[2] if geom.k >= 128 and tiles >= 4096 else CONFIGS[1]


# ---------------------------------------------------------------------------------------------
# domain, counts, workspace
# ---------------------------------------------------------------------------------------------
def _unsupported(m: int, geom: ConvGeometry, dtype) -> Optional[str]:
    name = f"winograd_f{m}"
    if (geom.r, geom.s) != (3, 3):
        return f"{name} needs a 3x3 filter, got {geom.r}x{geom.s}"
    if geom.stride != (1, 1):
        return f"{name} needs stride 1, got stride={geom.stride}"
    if geom.dilation != (1, 1):
        return f"{name} needs dilation 1, got dilation={geom.dilation}"
    if geom.groups != 1:
        return f"{name} needs groups=1, got groups={geom.groups}"
    return None


def unsupported_f2(geom: ConvGeometry, dtype=None) -> Optional[str]:
    return _unsupported(2, geom, dtype)


def unsupported_f4(geom: ConvGeometry, dtype=None) -> Optional[str]:
    return _unsupported(4, geom, dtype)


def _tiles(geom: ConvGeometry, m: int) -> tuple[int, int, int]:
    th, tw = math.ceil(geom.p / m), math.ceil(geom.q / m)
    return th, tw, geom.n * th * tw


def multiplies(geom: ConvGeometry, m: int) -> int:
    """Elementwise-stage multiplies: tiles x (m+2)^2 points x C x K (transforms not counted)."""
    return _tiles(geom, m)[2] * (m + 2) ** 2 * geom.c * geom.k


def multiplies_f2(geom: ConvGeometry) -> int:
    return multiplies(geom, 2)


def multiplies_f4(geom: ConvGeometry) -> int:
    return multiplies(geom, 4)


def workspace_bytes(geom: ConvGeometry, itemsize: int, m: int) -> int:
    """V (tiles x C) and U (C x K) in the input dtype, M (tiles x K) in fp32, per point."""
    t = _tiles(geom, m)[2]
    points = (m + 2) ** 2
    return points * ((t * geom.c + geom.c * geom.k) * itemsize + t * geom.k * 4)


def workspace_bytes_f2(geom: ConvGeometry, itemsize: int) -> int:
    return workspace_bytes(geom, itemsize, 2)


def workspace_bytes_f4(geom: ConvGeometry, itemsize: int) -> int:
    return workspace_bytes(geom, itemsize, 4)


# ---------------------------------------------------------------------------------------------
# launchers
# ---------------------------------------------------------------------------------------------
def emulate_rne(dtype: torch.dtype) -> bool:
    """Whether stores must round fp32 -> bf16 by hand (the interpreter's cast truncates)."""
    return dtype == torch.bfloat16 and _common.interpreting()


def _check_m(m) -> int:
    if m not in MATRICES:
        raise ValueError(f"m must be one of {tuple(MATRICES)}, got {m!r}")
    return m


def transform_filter(weight: torch.Tensor, m: int) -> torch.Tensor:
    """``U[(m+2)^2, C, K]`` in ``weight.dtype``: the filter transform, reusable across calls."""
    _check_m(m)
    _common.check_tensor(weight, "weight", ndim=4)
    k, c, r, s = weight.shape
    if (r, s) != (3, 3):
        raise ValueError(f"winograd_f{m} needs a 3x3 filter, got weight shape {tuple(weight.shape)}")
    a = m + 2
    u = torch.empty((a * a, c, k), dtype=weight.dtype, device=weight.device)
    _, (g_rows, g_first), _ = _CONSTEXPR[m]
    block_k, block_c, warps = FILTER_BLOCK
    grid = (triton.cdiv(k, block_k), triton.cdiv(c, block_c))
    _k._filter_transform_kernel[grid](
        weight, u, k, c, *weight.stride(), G=g_rows, G_FIRST=g_first, A=a,
        BLOCK_K=block_k, BLOCK_C=block_c, EMULATE_RNE=emulate_rne(weight.dtype), num_warps=warps)
    return u


def launch(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], geom: ConvGeometry,
           m: int, *, input_precision: str = "ieee", config: Optional[Config] = None,
           filter_transformed: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Winograd F(m x m, 3x3) of ``x`` (NCHW or channels_last); the output follows ``x``."""
    launches, out = plan(x, weight, bias, geom, m, input_precision=input_precision, config=config,
                         filter_transformed=filter_transformed)
    for run in launches:
        run()
    return out


def plan(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], geom: ConvGeometry,
         m: int, *, input_precision: str = "ieee", config: Optional[Config] = None,
         filter_transformed: Optional[torch.Tensor] = None):
    """The one-time work of a launch (validation, the filter transform, workspace and output
    allocation) and ``(launches, output)``: the three kernel launches (input transform, batched
    GEMM, output transform) as zero-argument callables writing into ``output``."""
    _check_m(m)
    _common.check_launch(x, weight, bias, geom, input_precision)
    reason = _unsupported(m, geom, x.dtype)
    if reason is not None:
        raise ValueError(reason)
    if config is not None and not isinstance(config, Config):
        raise TypeError(f"config must be a winograd.Config, got {type(config).__name__}")
    cfg = config or default_config(geom, m)
    a = m + 2
    th, tw, t = _tiles(geom, m)
    if filter_transformed is None:
        u = transform_filter(weight, m)
    else:
        u = filter_transformed
        _common.check_same(x, "input", u, "filter_transformed")
        if tuple(u.shape) != (a * a, geom.c, geom.k) or not u.is_contiguous():
            raise ValueError(f"filter_transformed must be a contiguous {(a * a, geom.c, geom.k)} tensor "
                             f"from transform_filter(weight, {m}), got {tuple(u.shape)}")
    out = _common.empty_output(geom.output_shape, x)
    v = torch.empty((a * a, t, geom.c), dtype=x.dtype, device=x.device)
    prod = torch.empty((a * a, t, geom.k), dtype=torch.float32, device=x.device)
    int64 = _common.needs_int64(x, out, v, prod)
    (at_rows, at_first), _, (bt_rows, bt_first) = _CONSTEXPR[m]
    top, _, left, _ = geom.padding

    grid = (triton.cdiv(t, cfg.xform_t), triton.cdiv(geom.c, cfg.xform_c))
    to_points = functools.partial(_k._input_transform_kernel[grid],
        x, v, geom.c, geom.h, geom.w, t, th, tw, top, left, *x.stride(),
        BT=bt_rows, BT_FIRST=bt_first, M=m, A=a,
        BLOCK_T=cfg.xform_t, BLOCK_C=cfg.xform_c, INT64=int64, EMULATE_RNE=emulate_rne(x.dtype),
        num_warps=cfg.xform_warps)
    grid = (triton.cdiv(t, cfg.block_m), triton.cdiv(geom.k, cfg.block_n), a * a // cfg.block_p)
    gemm = functools.partial(_k._batched_gemm_kernel[grid],
        v, u, prod, t, geom.c, geom.k,
        BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k, BLOCK_P=cfg.block_p,
        INPUT_PRECISION=input_precision, INT64=int64, UPCAST=upcast_dot(x.dtype),
        num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    grid = (triton.cdiv(t, cfg.xform_t), triton.cdiv(geom.k, cfg.xform_c))
    from_points = functools.partial(_k._output_transform_kernel[grid],
        prod, bias if bias is not None else prod, out, geom.k, geom.p, geom.q, t, th, tw, *out.stride(),
        AT=at_rows, AT_FIRST=at_first, M=m, A=a,
        BLOCK_T=cfg.xform_t, BLOCK_K=cfg.xform_c, HAS_BIAS=bias is not None, INT64=int64,
        EMULATE_RNE=emulate_rne(x.dtype), num_warps=cfg.xform_warps)
    return (to_points, gemm, from_points), out


def launch_f2(x, weight, bias, geom, *, input_precision="ieee", config=None, filter_transformed=None):
    return launch(x, weight, bias, geom, 2, input_precision=input_precision, config=config,
                  filter_transformed=filter_transformed)


def launch_f4(x, weight, bias, geom, *, input_precision="ieee", config=None, filter_transformed=None):
    return launch(x, weight, bias, geom, 4, input_precision=input_precision, config=config,
                  filter_transformed=filter_transformed)


def plan_f2(x, weight, bias, geom, *, input_precision="ieee", config=None):
    return plan(x, weight, bias, geom, 2, input_precision=input_precision, config=config)


def plan_f4(x, weight, bias, geom, *, input_precision="ieee", config=None):
    return plan(x, weight, bias, geom, 4, input_precision=input_precision, config=config)


# ---------------------------------------------------------------------------------------------
# static compile specs
# ---------------------------------------------------------------------------------------------
_PTR = {torch.float32: "*fp32", torch.float16: "*fp16", torch.bfloat16: "*bf16"}
_DT = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def static_specs() -> list[StaticSpec]:
    """The default configs (those of the typical layers) of every kernel in fp32, fp16 and bf16,
    every other config once in fp16 (tensor cores), and the 64-bit-offset variant once per
    algorithm (F(2x2,3x3), F(4x4,3x3)): its default config for the largest typical layer, fp16.
    With the 16-divisibility of a typical layer (C, K, strides multiples of 16)."""
    typical = (ConvGeometry(1, 64, 24, 24, 32, 3, 3), ConvGeometry(8, 256, 56, 56, 256, 3, 3),
               ConvGeometry(32, 64, 56, 56, 64, 3, 3))
    defaults = {default_config(g, m) for g in typical for m in MATRICES}
    #: m -> the config whose 64-bit variant is compiled (in fp16)
    int64_configs = {m: default_config(typical[1], m) for m in MATRICES}
    specs: dict[str, StaticSpec] = {}

    def add(name, fn, pointers, ints, const, warps, stages, default, divisible, tc=False):
        signature = {**pointers, **{n: "i32" for n in ints}, **{n: "constexpr" for n in const}}
        specs[name] = StaticSpec(name, fn, signature, const, warps, stages, default, tc,
                                 divisible_by_16=tuple(divisible))

    fk, fc, fw = FILTER_BLOCK
    for dtype, ptr in _PTR.items():
        dt = _DT[dtype]
        for m in MATRICES:
            g_rows, g_first = _CONSTEXPR[m][1]
            add(f"conv.winograd.filter_f{m}/{dt}/X{fk}x{fc}-w{fw}", _k._filter_transform_kernel,
                {"g_ptr": ptr, "u_ptr": ptr}, ("K", "C", "sgk", "sgc", "sgr", "sgs"),
                {"G": g_rows, "G_FIRST": g_first, "A": m + 2, "BLOCK_K": fk, "BLOCK_C": fc, "EMULATE_RNE": False},
                fw, 1, True, ("g_ptr", "u_ptr", "K", "C"))
        for cfg, int64 in [(c, False) for c in CONFIGS] + [(c, True) for c in CONFIGS if c in defaults]:
            is_default = cfg in defaults
            if (int64 or not is_default) and dtype != torch.float16:
                continue
            if int64 and cfg not in int64_configs.values():
                continue
            suffix = "-i64" if int64 else ""
            add(f"conv.winograd.gemm/{dt}/BM{cfg.block_m}-BN{cfg.block_n}-BK{cfg.block_k}-P{cfg.block_p}"
                f"-w{cfg.num_warps}-s{cfg.num_stages}{suffix}", _k._batched_gemm_kernel,
                {"v_ptr": ptr, "u_ptr": ptr, "m_ptr": "*fp32"}, ("T", "C", "K"),
                {"BLOCK_M": cfg.block_m, "BLOCK_N": cfg.block_n, "BLOCK_K": cfg.block_k, "BLOCK_P": cfg.block_p,
                 "INPUT_PRECISION": "ieee", "INT64": int64, "UPCAST": False},
                cfg.num_warps, cfg.num_stages, is_default, ("v_ptr", "u_ptr", "m_ptr", "C", "K"),
                tc=dtype != torch.float32)
            xf = f"X{cfg.xform_t}x{cfg.xform_c}-w{cfg.xform_warps}{suffix}"
            for m in MATRICES:
                if int64 and cfg != int64_configs[m]:
                    continue
                (at_rows, at_first), _, (bt_rows, bt_first) = _CONSTEXPR[m]
                add(f"conv.winograd.input_f{m}/{dt}/{xf}", _k._input_transform_kernel,
                    {"x_ptr": ptr, "v_ptr": ptr},
                    ("C", "H", "W", "T", "TH", "TW", "pad_top", "pad_left", "sxn", "sxc", "sxh", "sxw"),
                    {"BT": bt_rows, "BT_FIRST": bt_first, "M": m, "A": m + 2, "BLOCK_T": cfg.xform_t,
                     "BLOCK_C": cfg.xform_c, "INT64": int64, "EMULATE_RNE": False},
                    cfg.xform_warps, 1, is_default, ("x_ptr", "v_ptr", "C", "sxn"))
                add(f"conv.winograd.output_f{m}/{dt}/{xf}", _k._output_transform_kernel,
                    {"m_ptr": "*fp32", "bias_ptr": ptr, "y_ptr": ptr},
                    ("K", "P", "Q", "T", "TH", "TW", "syn", "syk", "syp", "syq"),
                    {"AT": at_rows, "AT_FIRST": at_first, "M": m, "A": m + 2, "BLOCK_T": cfg.xform_t,
                     "BLOCK_K": cfg.xform_c, "HAS_BIAS": True, "INT64": int64, "EMULATE_RNE": False},
                    cfg.xform_warps, 1, is_default, ("m_ptr", "y_ptr", "K", "syn"))
    return list(specs.values())
