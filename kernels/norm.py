"""Batch, instance, group and layer normalization in Triton: one split reduction, three kernels.

Every normalization here is "statistics per row, then an affine map per element".  The launcher
describes the input as rows indexed by (a, b) whose elements are indexed by (i, j), each with a
stride, so NCHW, channels_last and any rank share the kernels:

=============  ==================  ===================  ======================================
operator       row (a, b)          element (i, j)       affine parameter of element
=============  ==================  ===================  ======================================
batch_norm     (-, c)              (n, spatial)         channel b
instance_norm  (n, c)              (-, spatial)         channel b
group_norm     (n, group)          (c in group, sp.)    channel b * C/G + i
layer_norm     leading dims        normalized dims      flat index in ``normalized_shape``
=============  ==================  ===================  ======================================

1. ``_stats_kernel``: the reduction is SPLIT: a program owns a [BLOCK_B rows, chunk of a row]
   piece, so batch norm with 64 channels still launches hundreds of programs (design pitfall 7).
   Each [BLOCK_B, BLOCK_E] tile gives an exact two-pass (count, mean, M2) which is merged into
   the program's running triple by Chan's parallel Welford update.  Data are *shifted* by the
   row's first element K before anything is summed: with a 1e4 offset and unit variance the
   shifted values are exact (Sterbenz) and small, so neither the variance (which E[x^2]-E[x]^2
   would destroy) nor the mean (whose fp32 rounding, u*1e4, would dominate x - mean) loses bits.
2. ``_finalize_kernel``: merges the splits of each row, stores (mean of x-K, biased variance)
   and, in training, updates running statistics in place: ``(1-m)*running + m*batch`` with the
   unbiased variance (instance norm averages over the batch first, as PyTorch does).
3. ``_normalize_kernel``: ``y = ((x - K) - mean) * rstd * weight + bias`` [+ ReLU], elementwise
   over [BLOCK_B, BLOCK_E] tiles.  Evaluation mode skips 1-2 and uses K = running_mean,
   mean = 0, var = running_var.

Tiles are wide along whichever index has the unit stride: elements for NCHW, rows (channels)
for channels_last batch/instance norm (see :func:`default_config`).  The output follows the
input's memory format.  fp32/fp16/bf16 in, fp32 statistics; weight, bias and running statistics
in fp32 or the input's dtype.  Minimum traffic is :func:`min_bytes`; training reads the input
twice (statistics, then normalization), so its achievable GB/s is ~2/3 of a copy's unless the
second read hits L2.

Reference: Chan, Golub, LeVeque, "Algorithms for computing the sample variance" (1983) for the
pairwise update; Ioffe & Szegedy (2015), Ba et al. (2016), Ulyanov et al. (2016), Wu & He (2018)
for the operators; ``reference/norm.py`` is the float64 oracle.

This file holds the configs, the launchers and the static specs; the ``@triton.jit`` kernels
are in :mod:`._norm_kernels`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import triton

from convbench.reference.geometry import NormGeometry

from . import _common
from ._norm_kernels import _finalize_kernel, _normalize_kernel, _stats_kernel
from ._static_spec import StaticSpec

__all__ = ["batch_norm", "layer_norm", "instance_norm", "group_norm"]

#: statistics programs to aim for (a few waves on 132 SMs); small under the interpreter
TARGET_PROGRAMS = 16 if _common.interpreting() else 1024


# --------------------------------------------------------------------------------------------
# configs and the launch plan
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NormConfig:
    """A [BLOCK_B rows, BLOCK_E elements] tile, shared by the statistics and normalize kernels."""

    block_b: int
    block_e: int
    num_warps: int = 4

    def __str__(self) -> str:
        return f"B{self.block_b}-E{self.block_e}-w{self.num_warps}"


CONFIGS: tuple[NormConfig, ...] = (
    NormConfig(1, 1024, 4),   # long rows along the unit stride (NCHW batch/instance/group norm)
    NormConfig(4, 256, 4),    # medium rows
    NormConfig(16, 64, 4),    # short rows (layer norm over W, 7x7 planes)
    NormConfig(32, 32, 4),    # rows along the unit stride (channels_last batch/instance norm)
    NormConfig(64, 16, 4),    # ... with many channels
)


@dataclass(frozen=True)
class RowView:
    """The input as rows (a, b) of elements (i, j): sizes and strides (input and output share
    them: the output is allocated in the input's memory format)."""

    sizes: tuple[int, int, int, int]    # A, B, I, J
    strides: tuple[int, int, int, int]  # sa, sb, si, sj
    affine: tuple[int, int, int]        # weight strides along b, i, j

    @property
    def row_length(self) -> int:
        return self.sizes[2] * self.sizes[3]


def default_config(view: RowView) -> NormConfig:
    """Wide along rows when rows are the unit-stride axis, else wide along the row."""
    (_, b, _, _), (_, sb, si, sj) = view.sizes, view.strides
    inner = min(s for s, n in ((si, view.sizes[2]), (sj, view.sizes[3])) if n > 1) if view.row_length > 1 else 1
    if b > 1 and sb < inner:
        return CONFIGS[4] if b >= 64 else CONFIGS[3]
    length = view.row_length
    return CONFIGS[0] if length >= 1024 else CONFIGS[1] if length >= 256 else CONFIGS[2]


def plan_splits(view: RowView, cfg: NormConfig) -> tuple[int, int]:
    """(splits per row, elements per split) for the statistics pass: about TARGET_PROGRAMS."""
    a, b = view.sizes[:2]
    row_programs = a * triton.cdiv(b, cfg.block_b)
    length = view.row_length
    want = max(1, min(triton.cdiv(TARGET_PROGRAMS, row_programs), triton.cdiv(length, cfg.block_e)))
    chunk = triton.cdiv(triton.cdiv(length, want), cfg.block_e) * cfg.block_e
    return triton.cdiv(length, chunk), chunk


# --------------------------------------------------------------------------------------------
# views of the input
# --------------------------------------------------------------------------------------------
def _coalesce(dims, sortable: bool):
    """Merge (size, stride) dims that are one strided run; sizes of 1 vanish.  ``sortable``
    dims may be reordered (nothing but the statistics depends on their order)."""
    dims = [d for d in dims if d[0] != 1]
    if sortable:
        dims.sort(key=lambda d: -d[1])
    out = []
    for size, stride in dims:
        if out and out[-1][1] == size * stride:
            out[-1] = (out[-1][0] * size, stride)
        else:
            out.append((size, stride))
    return out


def _row_view(x: torch.Tensor, rows, elems, *, merge_rows: bool, affine_b: int, affine: str) -> RowView | None:
    """Rows (a, b) and elements (i, j) of ``x``; None when they do not fit two strided dims each.

    ``rows``/``elems`` list dims of ``x`` (an index, or a (size, stride) pair for a split
    channel axis).  Rows are merged only when nothing but the statistics depends on them
    (``merge_rows``); otherwise they are exactly (a, b) as given, b indexing running statistics
    and per-row affine parameters.  ``affine``: "none" (per row b), "channel" (per b * I + i,
    ``elems[0]`` being the channel-in-group axis) or "flat" (row-major over ``elems``).
    """
    def dims(ds):
        return [(x.shape[d], x.stride(d)) if isinstance(d, int) else tuple(d) for d in ds]

    if merge_rows:
        row_dims = _coalesce(dims(rows), sortable=True)
    else:
        row_dims = dims(rows)
    if affine == "channel":
        first = dims(elems[:1])[0]
        elem = [(*first, 1)] if first[0] > 1 else []
        elem += [(n, st, 0) for n, st in _coalesce(dims(elems[1:]), sortable=True)]
    elif affine == "flat":
        merged = _coalesce(dims(elems), sortable=False)
        elem = [(n, st, math.prod(m[0] for m in merged[k + 1:])) for k, (n, st) in enumerate(merged)]
    else:
        elem = [(n, st, 0) for n, st in _coalesce(dims(elems), sortable=True)]
    if len(row_dims) > 2 or len(elem) > 2:
        return None
    (A, sa), (B, sb) = [(1, 0)] * (2 - len(row_dims)) + row_dims
    (I, si, wi), (J, sj, wj) = [(1, 0, 0)] * (2 - len(elem)) + elem
    if si < sj and I > 1:  # the unit stride runs fastest in a tile
        (I, si, wi), (J, sj, wj) = (J, sj, wj), (I, si, wi)
    return RowView((A, B, I, J), (sa, sb, si, sj), (affine_b, wi, wj))


def _dense(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the memory format its output will have (NCHW/channels_last dense)."""
    fmt = _common.memory_format_of(x)
    return x if x.is_contiguous(memory_format=fmt) else x.contiguous(memory_format=fmt)


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------
def _param(t, name: str, shape: tuple, x: torch.Tensor):
    """Weight, bias or running statistic: the given shape, fp32 or the input's dtype, on x's device."""
    if t is None:
        return None
    _common.check_tensor(t, name)
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
    if t.dtype not in (x.dtype, torch.float32):
        raise TypeError(f"{name} has dtype {t.dtype}; expected {x.dtype} or torch.float32")
    if t.device != x.device:
        raise ValueError(f"{name} is on {t.device} but input is on {x.device}")
    return t


def _running(rm, rv, c: int, x: torch.Tensor):
    if (rm is None) != (rv is None):
        raise ValueError("running_mean and running_var must both be given or both be None")
    for t, name in ((rm, "running_mean"), (rv, "running_var")):
        _param(t, name, (c,), x)
        if t is not None and not t.is_contiguous():
            raise ValueError(f"{name} must be contiguous (it is updated in place)")
    return rm, rv


def _scalars(momentum, eps) -> None:
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)):
        raise TypeError(f"momentum must be a float, got {momentum!r}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or eps < 0:
        raise ValueError(f"eps must be a non-negative float, got {eps!r}")


def _check_input(input, min_rank: int, what: str) -> None:
    _common.check_tensor(input, "input")
    if input.dim() < min_rank:
        raise ValueError(f"input must be at least {min_rank}-D {what}, got shape {tuple(input.shape)}")


# --------------------------------------------------------------------------------------------
# launch
# --------------------------------------------------------------------------------------------
def _launch(x, view_of, *, weight, bias, eps, relu, config, running=None, training=True, momentum=0.0):
    """Run statistics (when ``training``), finalize and normalize over ``view_of(x)``."""
    x = _dense(x)
    weight = weight.contiguous() if weight is not None else None
    bias = bias.contiguous() if bias is not None else None
    if x.numel() == 0:
        return _common.empty_output(tuple(x.shape), x)
    view = view_of(x)
    if view is None:  # not expressible as two strided row/element dims: use a contiguous copy
        y = _common.empty_output(tuple(x.shape), x)
        y.copy_(_launch(x.contiguous(), view_of, weight=weight, bias=bias, eps=eps, relu=relu, config=config,
                        running=running, training=training, momentum=momentum))
        return y
    if config is not None and config not in CONFIGS:
        raise ValueError(f"config must be one of {[str(c) for c in CONFIGS]}, got {config!r}")
    cfg = config or default_config(view)
    (A, B, I, J), (sa, sb, si, sj) = view.sizes, view.strides
    y = _common.empty_output(tuple(x.shape), x)
    int64 = _common.needs_int64(x)
    rm, rv = running if running is not None else (None, None)
    b_blocks = triton.cdiv(B, cfg.block_b)
    stats = x  # placeholder pointer in evaluation mode
    if training:
        splits, chunk = plan_splits(view, cfg)
        part = torch.empty((3, splits, A, B), dtype=torch.float32, device=x.device)
        stats = torch.empty((2, A, B), dtype=torch.float32, device=x.device)
        _stats_kernel[(b_blocks * A * splits,)](x, part, A, B, I, J, sa, sb, si, sj, chunk, splits, INT64=int64,
                                                BLOCK_B=cfg.block_b, BLOCK_E=cfg.block_e, num_warps=cfg.num_warps)
        has_running = rm is not None
        fin_b = 64
        _finalize_kernel[(triton.cdiv(B, fin_b) * (1 if has_running else A),)](
            part, stats, x, rm if has_running else stats, rv if has_running else stats, A, B, sa, sb, splits,
            float(momentum), HAS_RUNNING=has_running, INT64=int64, BLOCK_B=fin_b, num_warps=2)
    e_blocks = triton.cdiv(I * J, cfg.block_e)
    _normalize_kernel[(e_blocks * b_blocks * A,)](
        x, y, stats, rm if not training else x, rv if not training else x,
        weight if weight is not None else x, bias if bias is not None else x,
        A, B, I, J, sa, sb, si, sj, *view.affine, float(eps),
        RUNNING=not training, HAS_W=weight is not None, HAS_BIAS=bias is not None, RELU=bool(relu),
        INT64=int64, BLOCK_B=cfg.block_b, BLOCK_E=cfg.block_e, num_warps=cfg.num_warps)
    return y


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
               eps=1e-5, *, relu: bool = False, config: NormConfig | None = None) -> torch.Tensor:
    """``torch.nn.functional.batch_norm`` (+ optional fused ReLU); running stats update in place."""
    _check_input(input, 2, "(N, C, *)")
    c = input.shape[1]
    _scalars(momentum, eps)
    rm, rv = _running(running_mean, running_var, c, input)
    _param(weight, "weight", (c,), input), _param(bias, "bias", (c,), input)
    if training and input.numel() // max(c, 1) == 1:  # torch's rule: an empty batch passes
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {tuple(input.shape)}")
    if not training and rm is None:
        raise ValueError("running_mean and running_var must be given in evaluation mode (training=False)")
    spatial = list(range(2, input.dim()))
    return _launch(input, lambda x: _row_view(x, [1], [0] + spatial, merge_rows=False, affine_b=1, affine="none"), weight=weight, bias=bias,
                   eps=eps, relu=relu, config=config, running=(rm, rv), training=bool(training), momentum=momentum)


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                  momentum=0.1, eps=1e-5, *, relu: bool = False, config: NormConfig | None = None) -> torch.Tensor:
    """``torch.nn.functional.instance_norm`` for (N, C, *spatial) input (+ optional fused ReLU)."""
    _check_input(input, 3, "(N, C, *spatial)")
    c = input.shape[1]
    _scalars(momentum, eps)
    rm, rv = _running(running_mean, running_var, c, input)
    _param(weight, "weight", (c,), input), _param(bias, "bias", (c,), input)
    if use_input_stats and math.prod(input.shape[2:]) == 1:  # torch's rule: empty passes
        raise ValueError(f"Expected more than 1 spatial element when training, got input size {tuple(input.shape)}")
    if not use_input_stats and rm is None:
        raise ValueError("running_mean and running_var must be given when use_input_stats=False")
    spatial = list(range(2, input.dim()))
    return _launch(input, lambda x: _row_view(x, [0, 1], spatial, merge_rows=False, affine_b=1, affine="none"), weight=weight, bias=bias, eps=eps,
                   relu=relu, config=config, running=(rm, rv), training=bool(use_input_stats), momentum=momentum)


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5, *, relu: bool = False,
               config: NormConfig | None = None) -> torch.Tensor:
    """``torch.nn.functional.group_norm`` for (N, C, *) input (+ optional fused ReLU)."""
    _check_input(input, 2, "(N, C, *)")
    c = input.shape[1]
    _scalars(0.0, eps)
    if isinstance(num_groups, bool) or not isinstance(num_groups, int) or num_groups <= 0:
        raise ValueError(f"num_groups must be a positive int, got {num_groups!r}")
    if c % num_groups:
        raise ValueError(f"num_groups={num_groups} does not divide the number of channels C={c}")
    if input.numel() // num_groups == 1:
        raise ValueError(f"Expected more than 1 value per group, got input size {tuple(input.shape)} "
                         f"with num_groups={num_groups}")
    _param(weight, "weight", (c,), input), _param(bias, "bias", (c,), input)
    cg = c // num_groups
    spatial = list(range(2, input.dim()))

    def view(x):
        group, in_group = (num_groups, cg * x.stride(1)), (cg, x.stride(1))
        return _row_view(x, [0, group], [in_group] + spatial, merge_rows=False, affine_b=cg, affine="channel")

    return _launch(input, view, weight=weight, bias=bias, eps=eps, relu=relu, config=config)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5, *, relu: bool = False,
               config: NormConfig | None = None) -> torch.Tensor:
    """``torch.nn.functional.layer_norm`` over the trailing ``normalized_shape`` (+ optional ReLU)."""
    _common.check_tensor(input, "input")
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise ValueError(f"normalized_shape must be a non-empty sequence of non-negative ints, "
                         f"got {normalized_shape!r}")
    k = len(shape)
    if input.dim() < k or tuple(input.shape[input.dim() - k:]) != shape:
        raise ValueError(f"normalized_shape={shape} does not match the trailing dimensions of input shape "
                         f"{tuple(input.shape)}")
    _scalars(0.0, eps)
    weight = _param(weight, "weight", shape, input)
    bias = _param(bias, "bias", shape, input)
    lead = list(range(input.dim() - k))
    trail = list(range(input.dim() - k, input.dim()))
    return _launch(input, lambda x: _row_view(x, lead, trail, merge_rows=True, affine_b=0, affine="flat"), weight=weight, bias=bias, eps=eps,
                   relu=relu, config=config)


# --------------------------------------------------------------------------------------------
# traffic and static specs
# --------------------------------------------------------------------------------------------
_KINDS = {"batch_norm": "batch", "layer_norm": "layer", "instance_norm": "instance", "group_norm": "group"}


def min_bytes(op: str, geom: NormGeometry, itemsize: int) -> int:
    """Minimum DRAM traffic: the input read once and the output written once."""
    if _KINDS.get(op) != geom.kind:
        raise ValueError(f"op {op!r} does not match a {geom.kind!r} NormGeometry")
    return geom.min_bytes(itemsize)


def _spec(name, fn, names, ptrs, constexprs, num_warps, default, floats=()):
    sig = {n: ptrs.get(n, "fp32" if n in floats else "i32") for n in names.split()}
    sig.update({k: "constexpr" for k in constexprs})
    return StaticSpec(name, fn, sig, constexprs, num_warps, 1, default, divisible_by_16=tuple(ptrs))


def static_specs() -> list[StaticSpec]:
    """The default configs (NCHW and channels_last) of the statistics and normalize kernels in fp32,
    fp16 and bf16; every other config and the other constexpr variants (evaluation mode, 64-bit
    offsets) once, in fp16; both finalize variants.  Unit stride on the elements, or on the rows
    for the channels_last configs."""
    specs = []
    stats_names = "x_ptr part_ptr A B I J sa sb si sj chunk splits"
    norm_names = "x_ptr y_ptr stats_ptr mean_ptr var_ptr w_ptr bias_ptr A B I J sa sb si sj wb wi wj eps"
    for dt in ("fp32", "fp16", "bf16"):
        stats_ptrs = {"x_ptr": f"*{dt}", "part_ptr": "*fp32"}
        norm_ptrs = {"x_ptr": f"*{dt}", "y_ptr": f"*{dt}", "stats_ptr": "*fp32", "mean_ptr": "*fp32",
                     "var_ptr": "*fp32", "w_ptr": "*fp32", "bias_ptr": "*fp32"}
        for cfg in CONFIGS:
            unit = {"sb": 1} if cfg.block_b >= 32 else {"sj": 1}  # channels_last rows / NCHW elements
            default = cfg in (CONFIGS[0], CONFIGS[3])
            if not default and dt != "fp16":
                continue
            tile = dict(BLOCK_B=cfg.block_b, BLOCK_E=cfg.block_e, **unit)
            specs.append(_spec(f"norm.stats/{dt}/{cfg}", _stats_kernel, stats_names, stats_ptrs,
                               dict(INT64=False, **tile), cfg.num_warps, default))
            ce = dict(RUNNING=False, HAS_W=True, HAS_BIAS=True, RELU=True, INT64=False, **tile)
            specs.append(_spec(f"norm.normalize/{dt}/{cfg}", _normalize_kernel, norm_names, norm_ptrs, ce,
                               cfg.num_warps, default, floats=("eps",)))
        if dt != "fp16":
            continue  # the other constexpr variants, on the default config: once, in fp16
        cfg = CONFIGS[0]
        tile = dict(BLOCK_B=cfg.block_b, BLOCK_E=cfg.block_e, sj=1)
        specs.append(_spec(f"norm.stats/{dt}/{cfg}-i64", _stats_kernel, stats_names, stats_ptrs,
                           dict(INT64=True, **tile), cfg.num_warps, False))
        ce = dict(RUNNING=True, HAS_W=False, HAS_BIAS=False, RELU=False, INT64=True, **tile)
        specs.append(_spec(f"norm.normalize/{dt}/{cfg}-eval-i64", _normalize_kernel, norm_names, norm_ptrs, ce,
                           cfg.num_warps, False, floats=("eps",)))
    names = "part_ptr stats_ptr x_ptr rm_ptr rv_ptr A B sa sb splits momentum"
    ptrs = {"part_ptr": "*fp32", "stats_ptr": "*fp32", "x_ptr": "*fp16", "rm_ptr": "*fp32", "rv_ptr": "*fp32"}
    for running in (True, False):
        specs.append(_spec(f"norm.finalize/fp16/B64-w2-running{int(running)}", _finalize_kernel, names, ptrs,
                           dict(HAS_RUNNING=running, INT64=not running, BLOCK_B=64), 2, True, floats=("momentum",)))
    return specs
