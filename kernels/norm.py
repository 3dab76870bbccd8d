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

4. Backward (kernels in :mod:`._norm_grad_kernels`): the same row view of x, dy and dx, the
   forward's saved statistics, a split reduction of the row sums of dy*gamma and
   dy*gamma*xhat, their per-row means, an elementwise dx kernel and deterministic column sums
   for dweight/dbias; a fused ReLU masks dy by the saved output > 0.  Every normalization is
   differentiable through one ``torch.autograd.Function`` (``once_differentiable``), entered
   only when ``_common.needs_grad`` is true; running statistics are updated once, in the forward.

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
from typing import Callable

import torch
import triton
from torch.autograd.function import once_differentiable

from convbench.reference.geometry import NormGeometry

from . import _common
from ._norm_grad_kernels import (_column_sum_kernel, _grad_dx_kernel, _grad_means_kernel, _grad_sums_kernel,
                                 _layer_param_grad_kernel)
from ._norm_kernels import _finalize_kernel, _normalize_kernel, _stats_kernel
from ._static_spec import StaticSpec

__all__ = ["batch_norm", "layer_norm", "instance_norm", "group_norm", "batch_norm_backward", "layer_norm_backward",
           "instance_norm_backward", "group_norm_backward"]

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
    """Wide along rows when rows are the unit-stride axis or shorter than 16 elements (eval-mode
    batch norm late in a network: 2048 rows of one element would otherwise be 128 programs of
    a 16 x 64 tile, 63 of each 64 lanes masked), else wide along the row."""
    (_, b, _, _), (_, sb, si, sj) = view.sizes, view.strides
    length = view.row_length
    inner = min(s for s, n in ((si, view.sizes[2]), (sj, view.sizes[3])) if n > 1) if length > 1 else 1
    if b > 1 and (sb < inner or length <= 16):
        return CONFIGS[4] if b >= 64 else CONFIGS[3]
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


def _batch_view(ndim: int) -> Callable:
    """Batch norm: rows (-, c) of elements (n, spatial), the affine parameter per row."""
    elems = [0, *range(2, ndim)]
    return lambda x: _row_view(x, [1], elems, merge_rows=False, affine_b=1, affine="none")


def _instance_view(ndim: int) -> Callable:
    """Instance norm (and group norm's backward): rows (n, c) of spatial elements."""
    spatial = list(range(2, ndim))
    return lambda x: _row_view(x, [0, 1], spatial, merge_rows=False, affine_b=1, affine="none")


def _group_view(ndim: int, groups: int, cg: int) -> Callable:
    """Group norm: rows (n, group) of elements (channel in group, spatial)."""
    spatial = list(range(2, ndim))

    def view(x):
        group, in_group = (groups, cg * x.stride(1)), (cg, x.stride(1))
        return _row_view(x, [0, group], [in_group] + spatial, merge_rows=False, affine_b=cg, affine="channel")

    return view


def _layer_view(ndim: int, k: int) -> Callable:
    """Layer norm: rows = the leading dims (merged), elements = the trailing ``k`` (flat affine)."""
    lead, trail = list(range(ndim - k)), list(range(ndim - k, ndim))
    return lambda x: _row_view(x, lead, trail, merge_rows=True, affine_b=0, affine="flat")


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
def _launch(x, view_of, *, weight, bias, eps, relu, config, running=None, training=True, momentum=0.0,
            want_stats=False):
    """Run statistics (when ``training``), finalize and normalize over ``view_of(x)``.

    ``want_stats`` (the autograd forward): return ``(y, x_used, stats)``: the dense input the
    kernels read (whose row view the backward reuses) and the (2, A, B) fp32 statistics
    (mean of x - K, biased variance) of its rows, None in evaluation mode."""
    x = _dense(x)
    weight = weight.contiguous() if weight is not None else None
    bias = bias.contiguous() if bias is not None else None
    if x.numel() == 0:
        y = _common.empty_output(tuple(x.shape), x)
        return (y, x, None) if want_stats else y
    view = view_of(x)
    if view is None:  # not expressible as two strided row/element dims: use a contiguous copy
        y = _common.empty_output(tuple(x.shape), x)
        out = _launch(x.contiguous(), view_of, weight=weight, bias=bias, eps=eps, relu=relu, config=config,
                      running=running, training=training, momentum=momentum, want_stats=want_stats)
        y.copy_(out[0] if want_stats else out)
        return (y, *out[1:]) if want_stats else y
    cfg = _config(config, view)
    (A, B, I, J), (sa, sb, si, sj) = view.sizes, view.strides
    y = _common.empty_output(tuple(x.shape), x)
    int64 = _common.needs_int64(x)
    rm, rv = running if running is not None else (None, None)
    b_blocks = triton.cdiv(B, cfg.block_b)
    stats = _statistics(x, view, cfg, rm, rv, momentum) if training else None
    e_blocks = triton.cdiv(I * J, cfg.block_e)
    _normalize_kernel[(e_blocks * b_blocks * A,)](
        x, y, stats if training else x, rm if not training else x, rv if not training else x,
        weight if weight is not None else x, bias if bias is not None else x,
        A, B, I, J, sa, sb, si, sj, *view.affine, float(eps),
        RUNNING=not training, HAS_W=weight is not None, HAS_BIAS=bias is not None, RELU=bool(relu),
        INT64=int64, BLOCK_B=cfg.block_b, BLOCK_E=cfg.block_e, num_warps=cfg.num_warps)
    return (y, x, stats) if want_stats else y


def _config(config, view: RowView) -> NormConfig:
    if config is not None and config not in CONFIGS:
        raise ValueError(f"config must be one of {[str(c) for c in CONFIGS]}, got {config!r}")
    return config or default_config(view)


def _statistics(x, view: RowView, cfg: NormConfig, rm=None, rv=None, momentum=0.0) -> torch.Tensor:
    """The (2, A, B) fp32 row statistics (mean of x - K, biased variance) by the split
    reduction; running statistics (when given) are updated in place."""
    (A, B, I, J), (sa, sb, si, sj) = view.sizes, view.strides
    int64 = _common.needs_int64(x)
    splits, chunk = plan_splits(view, cfg)
    part = torch.empty((3, splits, A, B), dtype=torch.float32, device=x.device)
    stats = torch.empty((2, A, B), dtype=torch.float32, device=x.device)
    _stats_kernel[(triton.cdiv(B, cfg.block_b) * A * splits,)](
        x, part, A, B, I, J, sa, sb, si, sj, chunk, splits, INT64=int64, BLOCK_B=cfg.block_b, BLOCK_E=cfg.block_e,
        num_warps=cfg.num_warps)
    has_running = rm is not None
    fin_b = 64
    _finalize_kernel[(triton.cdiv(B, fin_b) * (1 if has_running else A),)](
        part, stats, x, rm if has_running else stats, rv if has_running else stats, A, B, sa, sb, splits,
        float(momentum), HAS_RUNNING=has_running, INT64=int64, BLOCK_B=fin_b, num_warps=2)
    return stats


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
    view_of = _batch_view(input.dim())
    return _run(input, view_of, _GradSpec(view_of), weight, bias, eps=eps, relu=relu, config=config,
                running=(rm, rv), training=bool(training), momentum=momentum)


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
    view_of = _instance_view(input.dim())
    return _run(input, view_of, _GradSpec(view_of), weight, bias, eps=eps, relu=relu, config=config,
                running=(rm, rv), training=bool(use_input_stats), momentum=momentum)


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
    return _run(input, _group_view(input.dim(), num_groups, c // num_groups),
                _GradSpec(_instance_view(input.dim()), c // num_groups), weight, bias, eps=eps, relu=relu,
                config=config)


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
    view_of = _layer_view(input.dim(), k)
    return _run(input, view_of, _GradSpec(view_of, per_row=False), weight, bias, eps=eps, relu=relu, config=config)


# --------------------------------------------------------------------------------------------
# backward over the forward's row view (kernels in :mod:`._norm_grad_kernels`)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _GradSpec:
    """How an operator's backward views its input.  ``view_of`` gives the rows the gradient
    kernels run over; ``cg`` channel rows share one row of the forward's statistics (group norm
    runs over the instance view, rows (n, c), with CG = C/G); ``per_row``: one affine parameter
    per row (the channel view of batch, instance and group norm) or one per element of the row
    (layer norm)."""

    view_of: Callable
    cg: int = 1
    per_row: bool = True


def _same_layout(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``t`` with ``like``'s strides, copied only when a dimension longer than 1 is strided
    differently (every tensor a backward kernel reads shares the input's row view)."""
    if all(n == 1 or a == b for n, a, b in zip(t.shape, t.stride(), like.stride())):
        return t
    return torch.empty_strided(tuple(like.shape), like.stride(), dtype=t.dtype, device=t.device).copy_(t)


def _layer_splits(view: RowView, cfg: NormConfig) -> tuple[int, int]:
    """(row splits, rows per split) of the layer view's parameter-gradient kernel: about
    TARGET_PROGRAMS programs over (element blocks x row splits)."""
    rows = view.sizes[0] * view.sizes[1]
    e_blocks = triton.cdiv(view.row_length, cfg.block_e)
    want = max(1, min(triton.cdiv(TARGET_PROGRAMS, e_blocks), triton.cdiv(rows, cfg.block_b)))
    per_split = triton.cdiv(triton.cdiv(rows, want), cfg.block_b) * cfg.block_b
    return triton.cdiv(rows, per_split), per_split


def _norm_backward(spec: _GradSpec, x, dy, weight, stats, running, y, *, eps, param_shape, want_dx, want_w,
                   want_b, bias_dtype, config=None):
    """(dx, dweight, dbias), each None where not wanted.

    ``x``: the dense input the forward's kernels read; ``stats``: the forward's (2, A, B) row
    statistics of it, or None to use ``running`` = (running_mean, running_var); ``y``: the
    output when a fused ReLU masks the gradient, else None.  dx has x's memory format."""
    training = stats is not None
    rm, rv = running if running is not None else (None, None)
    if x.numel() == 0:  # nothing to normalize: no input gradient, zero parameter sums
        return (_common.empty_output(tuple(x.shape), x) if want_dx else None,
                _common.empty_output(param_shape, x, dtype=weight.dtype).zero_() if want_w else None,
                _common.empty_output(param_shape, x, dtype=bias_dtype).zero_() if want_b else None)
    view = spec.view_of(x)
    if view is None:  # a channel view this layout does not fit: a contiguous copy (its rows are the same)
        dx, dw, db = _norm_backward(spec, x.contiguous(), dy, weight, stats, running,
                                    y.contiguous() if y is not None else None, eps=eps, param_shape=param_shape,
                                    want_dx=want_dx, want_w=want_w, want_b=want_b, bias_dtype=bias_dtype,
                                    config=config)
        return (dx.contiguous(memory_format=_common.memory_format_of(x)) if dx is not None else None), dw, db
    dy = _same_layout(dy, x)
    y = _same_layout(y, x) if y is not None else None
    cfg = _config(config, view)
    (A, B, I, J), (sa, sb, si, sj) = view.sizes, view.strides
    geometry = (A, B, I, J, sa, sb, si, sj, *view.affine)
    cg = spec.cg
    w = weight.reshape(-1).contiguous() if weight is not None else None
    # placeholders (never read) where an operand is absent
    stat_ptrs = (stats, x, x) if training else (x, rm, rv)
    y_ptr, w_ptr = (y if y is not None else x), (w if w is not None else x)
    meta = dict(RUNNING=not training, RELU=y is not None, INT64=_common.needs_int64(x), BLOCK_B=cfg.block_b,
                BLOCK_E=cfg.block_e, num_warps=cfg.num_warps)
    b_blocks = triton.cdiv(B, cfg.block_b)
    part = None
    if (training and want_dx) or (spec.per_row and (want_w or want_b)):
        splits, chunk = plan_splits(view, cfg)
        part = torch.empty((2, splits, A, B), dtype=torch.float32, device=x.device)
        _grad_sums_kernel[(b_blocks * A * splits,)](
            x, dy, y_ptr, w_ptr, *stat_ptrs, part, *geometry, cg, float(eps), chunk, splits,
            WEIGHTED=not spec.per_row and w is not None, **meta)
    dx = None
    if want_dx:
        means = x
        if training:
            stat_rows = A * (B // cg)
            means = torch.empty((2, stat_rows), dtype=torch.float32, device=x.device)
            _grad_means_kernel[(triton.cdiv(stat_rows, 64),)](
                part, w_ptr, means, A, B, cg, part.shape[1], float(cg * I * J),
                HAS_W=spec.per_row and w is not None, INT64=meta["INT64"], BLOCK=64, num_warps=2)
        dx = _common.empty_output(tuple(x.shape), x)
        _grad_dx_kernel[(triton.cdiv(I * J, cfg.block_e) * b_blocks * A,)](
            x, dy, y_ptr, dx, w_ptr, *stat_ptrs, means, *geometry, cg, float(eps), HAS_W=w is not None, **meta)
    if not (want_w or want_b):
        return dx, None, None
    if spec.per_row:  # per channel: the partials of the row sums, added over (split, a)
        sums, rows, cols = part, part.shape[1] * A, B
    else:
        splits, per_split = _layer_splits(view, cfg)
        sums = torch.empty((2, splits, I * J), dtype=torch.float32, device=x.device)
        _layer_param_grad_kernel[(triton.cdiv(I * J, cfg.block_e), splits)](
            x, dy, y_ptr, stats, sums, A, B, I, J, sa, sb, si, sj, *view.affine[1:], float(eps), per_split, splits,
            RELU=y is not None, INT64=meta["INT64"], BLOCK_B=cfg.block_b, BLOCK_E=cfg.block_e,
            num_warps=cfg.num_warps)
        rows, cols = splits, I * J
    grads = []
    for want, k, dtype in ((want_w, 1, weight.dtype if weight is not None else None), (want_b, 0, bias_dtype)):
        if not want:
            grads.append(None)
            continue
        out = _common.empty_output((cols,), x, dtype=dtype)
        _column_sum_kernel[(triton.cdiv(cols, 256),)](sums[k], out, rows, cols, INT64=_common.needs_int64(sums),
                                                     BLOCK=256, num_warps=4)
        grads.append(out.reshape(param_shape))
    return dx, grads[0], grads[1]


class _NormFunction(torch.autograd.Function):
    """Any of the four normalizations.  Saves the dense input the kernels read, the weight, the
    forward's row statistics (evaluation: the running statistics) and, under a fused ReLU, the
    output: the backward recomputes nothing of the forward, and the running statistics are
    updated once, here in the forward."""

    @staticmethod
    def forward(ctx, x, weight, bias, spec: _GradSpec, view_of, options: dict):
        y, x_used, stats = _launch(x, view_of, weight=weight, bias=bias, want_stats=True, **options)
        rm, rv = options["running"] if not options["training"] and options["running"] else (None, None)
        ctx.spec, ctx.eps, ctx.config = spec, options["eps"], options["config"]
        ctx.param_shape = tuple((weight if weight is not None else bias).shape) if (
            weight is not None or bias is not None) else None
        ctx.bias_dtype = bias.dtype if bias is not None else None
        ctx.save_for_backward(x_used, weight, stats, rm, rv, y if options["relu"] else None)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        x, weight, stats, rm, rv, y = ctx.saved_tensors
        need = ctx.needs_input_grad
        dx, dw, db = _norm_backward(ctx.spec, x, dy, weight, stats, (rm, rv), y, eps=ctx.eps,
                                    param_shape=ctx.param_shape, want_dx=need[0], want_w=need[1], want_b=need[2],
                                    bias_dtype=ctx.bias_dtype, config=ctx.config)
        return dx, dw, db, None, None, None


def _run(x, view_of, spec: _GradSpec, weight, bias, *, eps, relu, config, running=None, training=True,
         momentum=0.0):
    """The forward, through the autograd Function when a gradient is wanted."""
    options = dict(eps=eps, relu=relu, config=config, running=running, training=training, momentum=momentum)
    if _common.needs_grad(x, weight, bias):
        return _NormFunction.apply(x, weight, bias, spec, view_of, options)
    return _launch(x, view_of, weight=weight, bias=bias, **options)


# --------------------------------------------------------------------------------------------
# the public backward launchers (the standalone form: the batch statistics are computed here)
# --------------------------------------------------------------------------------------------
def _standalone(view_of, spec: _GradSpec, grad_output, input, weight, running, training: bool, eps, param_shape):
    """(dx, dweight or None, dbias) from ``input``'s own statistics (``training``) or ``running``."""
    _common.check_tensor(grad_output, "grad_output")
    _common.check_same(input, "input", grad_output, "grad_output")
    if grad_output.shape != input.shape:
        raise ValueError(f"grad_output must have the input's shape {tuple(input.shape)}, "
                         f"got {tuple(grad_output.shape)}")
    x = _dense(input)
    stats = None
    if training and x.numel():
        view = view_of(x)
        if view is None:
            x = x.contiguous()
            view = view_of(x)
        stats = _statistics(x, view, default_config(view))
    return _norm_backward(spec, x, grad_output, weight, stats, running, None, eps=eps, param_shape=param_shape,
                          want_dx=True, want_w=weight is not None, want_b=True,
                          bias_dtype=weight.dtype if weight is not None else input.dtype)


def batch_norm_backward(grad_output, input, running_mean, running_var, weight=None, training=False, eps=1e-5):
    """(dx, dweight, dbias) of :func:`batch_norm` for upstream gradient ``grad_output``: from the
    batch's statistics when ``training`` (computed here; the autograd path reuses the
    forward's), else from the running ones.  dweight is None without a ``weight``; dbias (the
    per-channel sum of ``grad_output``) is always returned."""
    _check_input(input, 2, "(N, C, *)")
    _scalars(0.0, eps)
    c = input.shape[1]
    rm, rv = _running(running_mean, running_var, c, input)
    if not training and rm is None:
        raise ValueError("running_mean and running_var must be given in evaluation mode (training=False)")
    _param(weight, "weight", (c,), input)
    view_of = _batch_view(input.dim())
    return _standalone(view_of, _GradSpec(view_of), grad_output, input, weight, (rm, rv), bool(training), eps, (c,))


def instance_norm_backward(grad_output, input, running_mean=None, running_var=None, weight=None,
                           use_input_stats=True, eps=1e-5):
    """(dx, dweight, dbias) of :func:`instance_norm` (per-instance statistics when
    ``use_input_stats``, else the running ones)."""
    _check_input(input, 3, "(N, C, *spatial)")
    _scalars(0.0, eps)
    c = input.shape[1]
    rm, rv = _running(running_mean, running_var, c, input)
    if not use_input_stats and rm is None:
        raise ValueError("running_mean and running_var must be given when use_input_stats=False")
    _param(weight, "weight", (c,), input)
    view_of = _instance_view(input.dim())
    return _standalone(view_of, _GradSpec(view_of), grad_output, input, weight, (rm, rv), bool(use_input_stats),
                       eps, (c,))


def group_norm_backward(grad_output, input, num_groups, weight=None, eps=1e-5):
    """(dx, dweight, dbias) of :func:`group_norm`."""
    _check_input(input, 2, "(N, C, *)")
    _scalars(0.0, eps)
    c = input.shape[1]
    if isinstance(num_groups, bool) or not isinstance(num_groups, int) or num_groups <= 0 or c % num_groups:
        raise ValueError(f"num_groups must be a positive int dividing C={c}, got {num_groups!r}")
    _param(weight, "weight", (c,), input)
    return _standalone(_group_view(input.dim(), num_groups, c // num_groups),
                       _GradSpec(_instance_view(input.dim()), c // num_groups), grad_output, input, weight, None,
                       True, eps, (c,))


def layer_norm_backward(grad_output, input, normalized_shape, weight=None, eps=1e-5):
    """(dx, dweight, dbias) of :func:`layer_norm` (dweight/dbias shaped like ``normalized_shape``)."""
    _common.check_tensor(input, "input")
    _scalars(0.0, eps)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(shape)
    if not shape or input.dim() < k or tuple(input.shape[input.dim() - k:]) != shape:
        raise ValueError(f"normalized_shape={shape} does not match the trailing dimensions of input shape "
                         f"{tuple(input.shape)}")
    _param(weight, "weight", shape, input)
    view_of = _layer_view(input.dim(), k)
    return _standalone(view_of, _GradSpec(view_of, per_row=False), grad_output, input, weight, None, True, eps,
                       shape)


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
    return StaticSpec(name, fn, sig, constexprs, num_warps, 1, default,
                      divisible_by_16=tuple(p for p in ptrs if p in sig))


def static_specs() -> list[StaticSpec]:
    """The default configs (NCHW and channels_last) of the statistics and normalize kernels in fp32,
    fp16 and bf16; every other config and the other constexpr variants (evaluation mode, 64-bit
    offsets) once, in fp16; both finalize variants; the backward kernels likewise (see below).
    Unit stride on the elements, or on the rows for the channels_last configs."""
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
    # backward, on the forward's default tiles (NCHW: unit element stride; channels_last: unit
    # row stride): the split sums and the dx kernel in training with the fused ReLU and a weight
    # per channel row (wb = 1) in each dtype; the layer view (weighted sums, flat weight wj = 1,
    # its parameter kernel) and evaluation mode with 64-bit offsets once, in fp16; the two
    # finalizing kernels (per-row means, per-parameter column sums)
    sums_names = "x_ptr dy_ptr y_ptr w_ptr stats_ptr mean_ptr var_ptr part_ptr A B I J sa sb si sj wb wi wj CG eps " \
                 "chunk splits"
    dx_names = "x_ptr dy_ptr y_ptr dx_ptr w_ptr stats_ptr mean_ptr var_ptr means_ptr A B I J sa sb si sj wb wi wj " \
               "CG eps"
    layer_names = "x_ptr dy_ptr y_ptr stats_ptr part_ptr A B I J sa sb si sj wi wj eps rows_per_split splits"
    for dt in ("fp32", "fp16", "bf16"):
        ptrs = {n: f"*{dt}" for n in ("x_ptr", "dy_ptr", "y_ptr", "dx_ptr", "w_ptr")}
        ptrs.update({n: "*fp32" for n in ("stats_ptr", "mean_ptr", "var_ptr", "part_ptr", "means_ptr")})
        for cfg in (CONFIGS[0], CONFIGS[3]):
            tile = dict(BLOCK_B=cfg.block_b, BLOCK_E=cfg.block_e, wb=1,
                        **({"sb": 1} if cfg.block_b >= 32 else {"sj": 1}))
            ce = dict(RUNNING=False, WEIGHTED=False, RELU=True, INT64=False, **tile)
            specs.append(_spec(f"norm.grad_sums/{dt}/{cfg}", _grad_sums_kernel, sums_names, ptrs, ce, cfg.num_warps,
                               True, floats=("eps",)))
            ce = dict(RUNNING=False, HAS_W=True, RELU=True, INT64=False, **tile)
            specs.append(_spec(f"norm.grad_dx/{dt}/{cfg}", _grad_dx_kernel, dx_names, ptrs, ce, cfg.num_warps, True,
                               floats=("eps",)))
        if dt != "fp16":
            continue
        for cfg in (CONFIGS[0], CONFIGS[2]):  # layer norm: long and short rows
            tile = dict(BLOCK_B=cfg.block_b, BLOCK_E=cfg.block_e, sj=1)
            ce = dict(RUNNING=False, WEIGHTED=True, RELU=False, INT64=False, wj=1, **tile)
            specs.append(_spec(f"norm.grad_sums/{dt}/{cfg}-layer", _grad_sums_kernel, sums_names, ptrs, ce,
                               cfg.num_warps, False, floats=("eps",)))
            ce = dict(RELU=False, INT64=False, wj=1, **tile)
            specs.append(_spec(f"norm.layer_param_grad/{dt}/{cfg}", _layer_param_grad_kernel, layer_names, ptrs, ce,
                               cfg.num_warps, cfg == CONFIGS[0], floats=("eps",)))
        cfg = CONFIGS[0]
        tile = dict(BLOCK_B=cfg.block_b, BLOCK_E=cfg.block_e, wb=1, sj=1)
        ce = dict(RUNNING=True, WEIGHTED=False, RELU=False, INT64=True, **tile)
        specs.append(_spec(f"norm.grad_sums/{dt}/{cfg}-eval-i64", _grad_sums_kernel, sums_names, ptrs, ce,
                           cfg.num_warps, False, floats=("eps",)))
        ce = dict(RUNNING=True, HAS_W=True, RELU=False, INT64=True, **tile)
        specs.append(_spec(f"norm.grad_dx/{dt}/{cfg}-eval-i64", _grad_dx_kernel, dx_names, ptrs, ce, cfg.num_warps,
                           False, floats=("eps",)))
    for has_w in (True, False):
        specs.append(_spec(f"norm.finalize_grad_means/fp16/B64-w2-w{int(has_w)}", _grad_means_kernel,
                           "part_ptr w_ptr means_ptr A B CG splits count",
                           {"part_ptr": "*fp32", "w_ptr": "*fp16", "means_ptr": "*fp32"},
                           dict(HAS_W=has_w, INT64=False, BLOCK=64), 2, True, floats=("count",)))
    for dt in ("fp32", "fp16"):
        specs.append(_spec(f"norm.finalize_param_sums/{dt}/B256-w4", _column_sum_kernel, "t_ptr out_ptr rows cols",
                           {"t_ptr": "*fp32", "out_ptr": f"*{dt}"}, dict(INT64=False, BLOCK=256), 4, True))
    return specs
