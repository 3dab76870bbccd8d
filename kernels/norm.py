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
from torch.autograd.function import once_differentiable

from convbench.reference.geometry import NormGeometry

from . import _common
from ._norm_grad_kernels import _column_sum_kernel, _norm_grad_rows_kernel
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
def _launch(x, view_of, *, weight, bias, eps, relu, config, running=None, training=True, momentum=0.0,
            want_stats=False):
    """Run statistics (when ``training``), finalize and normalize over ``view_of(x)``.

    ``want_stats``: also return each row's mean and 1/sqrt(var + eps) (fp32, rows in the view's
    (a, b) order) for the backward; evaluation mode returns the running statistics' instead."""
    x = _dense(x)
    weight = weight.contiguous() if weight is not None else None
    bias = bias.contiguous() if bias is not None else None
    if x.numel() == 0:
        y = _common.empty_output(tuple(x.shape), x)
        return (y, None, None) if want_stats else y
    view = view_of(x)
    if view is None:  # not expressible as two strided row/element dims: use a contiguous copy
        y = _common.empty_output(tuple(x.shape), x)
        out = _launch(x.contiguous(), view_of, weight=weight, bias=bias, eps=eps, relu=relu, config=config,
                      running=running, training=training, momentum=momentum, want_stats=want_stats)
        y.copy_(out[0] if want_stats else out)
        return (y, out[1], out[2]) if want_stats else y
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
        if want_stats:  # before the normalize pass: nothing below changes them
            shift = torch.as_strided(x, (A, B), (sa, sb), x.storage_offset()).float()
            mean = (shift + stats[0]).reshape(-1)
            rstd = torch.rsqrt(stats[1] + eps).reshape(-1)
    elif want_stats:
        mean = rm.float().reshape(1, -1).expand(A, B).reshape(-1)
        rstd = torch.rsqrt(rv.float() + eps).reshape(1, -1).expand(A, B).reshape(-1)
    e_blocks = triton.cdiv(I * J, cfg.block_e)
    _normalize_kernel[(e_blocks * b_blocks * A,)](
        x, y, stats, rm if not training else x, rv if not training else x,
        weight if weight is not None else x, bias if bias is not None else x,
        A, B, I, J, sa, sb, si, sj, *view.affine, float(eps),
        RUNNING=not training, HAS_W=weight is not None, HAS_BIAS=bias is not None, RELU=bool(relu),
        INT64=int64, BLOCK_B=cfg.block_b, BLOCK_E=cfg.block_e, num_warps=cfg.num_warps)
    return (y, mean, rstd) if want_stats else y


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
    return _run(input, lambda x: _row_view(x, [1], [0] + spatial, merge_rows=False, affine_b=1, affine="none"),
                _Rows("batch"), weight, bias, eps=eps, relu=relu, config=config, running=(rm, rv),
                training=bool(training), momentum=momentum)


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
    return _run(input, lambda x: _row_view(x, [0, 1], spatial, merge_rows=False, affine_b=1, affine="none"),
                _Rows("instance"), weight, bias, eps=eps, relu=relu, config=config, running=(rm, rv),
                training=bool(use_input_stats), momentum=momentum)


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

    return _run(input, view, _Rows("group", groups=num_groups), weight, bias, eps=eps, relu=relu, config=config)


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
    return _run(input, lambda x: _row_view(x, lead, trail, merge_rows=True, affine_b=0, affine="flat"),
                _Rows("layer", trail=k), weight, bias, eps=eps, relu=relu, config=config)


# --------------------------------------------------------------------------------------------
# backward: rows of a contiguous (R, P, Q) array (module :mod:`._norm_grad_kernels`)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Rows:
    """How an operator's input is laid out as backward rows: each row one statistics group (in
    the forward's (a, b) row order), P parameters per row and Q elements per parameter."""

    kind: str          # "batch", "instance", "group", "layer"
    groups: int = 1    # group norm's G
    trail: int = 0     # layer norm: how many trailing dims are normalized

    def to_rows(self, t: torch.Tensor) -> torch.Tensor:
        n, c = t.shape[0], t.shape[1] if t.dim() > 1 else 1
        if self.kind == "batch":
            return t.transpose(0, 1).reshape(c, 1, -1).contiguous()
        if self.kind == "instance":
            return t.reshape(n * c, 1, -1).contiguous()
        if self.kind == "group":
            return t.reshape(n * self.groups, c // self.groups, -1).contiguous()
        return t.reshape(-1, math.prod(t.shape[t.dim() - self.trail:]), 1).contiguous()

    def from_rows(self, t3: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        if self.kind == "batch":
            shape = (like.shape[1], like.shape[0], *like.shape[2:])
            t = t3.reshape(shape).transpose(0, 1)
        else:
            t = t3.reshape(like.shape)
        return t.contiguous(memory_format=_common.memory_format_of(like))

    def param_rows(self, like: torch.Tensor) -> int:
        """G_MOD: rows r and r + G_MOD share their parameters."""
        return {"batch": like.shape[1], "instance": like.shape[1], "group": self.groups, "layer": 1}[self.kind]


def _backward(rows: _Rows, x, dy, weight, bias, mean, rstd, *, training: bool, relu: bool, want_dx: bool,
              want_w: bool, want_b: bool):
    """(dx, dweight, dbias), each None where not wanted, from the forward's row statistics."""
    w_flat = weight.reshape(-1).contiguous() if weight is not None else None
    if x.numel() == 0 or mean is None:
        zero = lambda t: torch.zeros_like(t) if t is not None else None  # noqa: E731
        return (zero(x) if want_dx else None, zero(weight) if want_w else None, zero(bias) if want_b else None)
    if relu and (bias is None or weight is None):
        raise ValueError("the fused ReLU's backward needs the affine weight and bias")
    x3, dy3 = rows.to_rows(x), rows.to_rows(dy)
    r, p, q = x3.shape
    g_mod = rows.param_rows(x)
    want_params = want_w or want_b
    dx3 = _common.empty_output(tuple(x3.shape), x3) if want_dx else x3
    t = torch.empty((2, r, p), dtype=torch.float32, device=x.device) if want_params else mean
    block_q = min(triton.next_power_of_2(q), 1024)
    block_p = max(1, min(triton.next_power_of_2(p), 1024 // block_q))
    _norm_grad_rows_kernel[(r,)](
        x3, dy3, dx3, mean.contiguous(), rstd.contiguous(), w_flat if w_flat is not None else x3,
        bias.reshape(-1).contiguous() if (relu and bias is not None) else x3, t, r, p, q, g_mod,
        TRAINING=bool(training), HAS_W=w_flat is not None, RELU=bool(relu),
        WANT_DX=bool(want_dx), WANT_PARAMS=want_params, INT64=_common.needs_int64(x3),
        BLOCK_P=block_p, BLOCK_Q=block_q, num_warps=4)
    dx = rows.from_rows(dx3, x) if want_dx else None
    dw = db = None
    cols = g_mod * p
    for want, k, ref in ((want_w, 1, weight), (want_b, 0, bias)):
        if not want:
            continue
        out = _common.empty_output((cols,), ref)
        _column_sum_kernel[(triton.cdiv(cols, 256),)](t[k], out, r // g_mod, cols, INT64=_common.needs_int64(t),
                                                     BLOCK=256, num_warps=4)
        if k == 1:
            dw = out.reshape(weight.shape)
        else:
            db = out.reshape(bias.shape)
    return dx, dw, db


class _NormFunction(torch.autograd.Function):
    """Any of the four normalizations; saves the input, the affine parameters and the forward's
    per-row mean and 1/std (no second statistics pass in the backward)."""

    @staticmethod
    def forward(ctx, x, weight, bias, rows: _Rows, view_of, options: dict):
        if rows.kind == "layer":  # the statistics' row order is then the rows' row-major order
            x = x.contiguous()
        y, mean, rstd = _launch(x, view_of, weight=weight, bias=bias, want_stats=True, **options)
        ctx.rows, ctx.training, ctx.relu = rows, options["training"], bool(options["relu"])
        ctx.save_for_backward(x, weight, bias, mean, rstd)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        x, weight, bias, mean, rstd = ctx.saved_tensors
        need = ctx.needs_input_grad
        dx, dw, db = _backward(ctx.rows, x, dy, weight, bias, mean, rstd, training=ctx.training, relu=ctx.relu,
                               want_dx=need[0], want_w=need[1] and weight is not None,
                               want_b=need[2] and bias is not None)
        return dx, dw, db, None, None, None


def _run(x, view_of, rows: _Rows, weight, bias, *, eps, relu, config, running=None, training=True, momentum=0.0):
    """The forward, through the autograd Function when a gradient is wanted."""
    options = dict(eps=eps, relu=relu, config=config, running=running, training=training, momentum=momentum)
    if _common.needs_grad(x, weight, bias):
        return _NormFunction.apply(x, weight, bias, rows, view_of, options)
    return _launch(x, view_of, weight=weight, bias=bias, **options)


def _stats_for(x, view_of, rows: _Rows, eps, running, training):
    """The forward's row statistics without its output (for the standalone backward launchers)."""
    if rows.kind == "layer":
        x = x.contiguous()
    running = tuple(t.clone() if t is not None else None for t in running) if running else None  # not updated
    _, mean, rstd = _launch(x, view_of, weight=None, bias=None, eps=eps, relu=False, config=None, running=running,
                            training=training, momentum=0.0, want_stats=True)
    return x, mean, rstd


def _grad_checks(grad_output, input):
    _common.check_tensor(grad_output, "grad_output")
    _common.check_tensor(input, "input")
    _common.check_same(input, "input", grad_output, "grad_output")
    if grad_output.shape != input.shape:
        raise ValueError(f"grad_output must have the input's shape {tuple(input.shape)}, got {tuple(grad_output.shape)}")


def batch_norm_backward(grad_output, input, running_mean, running_var, weight=None, training=False, eps=1e-5):
    """(dx, dweight, dbias) of :func:`batch_norm`: training uses the batch's statistics (computed
    here; the autograd path reuses the forward's), evaluation the running ones; dweight is None
    without a ``weight``, dbias (the per-channel sum of ``grad_output``) is always returned."""
    _grad_checks(grad_output, input)
    c = input.shape[1]
    rm, rv = _running(running_mean, running_var, c, input)
    if not training and rm is None:
        raise ValueError("running_mean and running_var must be given in evaluation mode (training=False)")
    _param(weight, "weight", (c,), input)
    spatial = list(range(2, input.dim()))
    rows = _Rows("batch")
    x, mean, rstd = _stats_for(input, lambda t: _row_view(t, [1], [0] + spatial, merge_rows=False, affine_b=1,
                                                          affine="none"), rows, eps, (rm, rv), bool(training))
    bias = torch.zeros((c,), dtype=weight.dtype if weight is not None else input.dtype, device=input.device)
    return _backward(rows, x, grad_output, weight, bias, mean, rstd, training=bool(training), relu=False,
                     want_dx=True, want_w=weight is not None, want_b=True)


def instance_norm_backward(grad_output, input, running_mean=None, running_var=None, weight=None,
                           use_input_stats=True, eps=1e-5):
    """(dx, dweight, dbias) of :func:`instance_norm`."""
    _grad_checks(grad_output, input)
    c = input.shape[1]
    rm, rv = _running(running_mean, running_var, c, input)
    _param(weight, "weight", (c,), input)
    spatial = list(range(2, input.dim()))
    rows = _Rows("instance")
    x, mean, rstd = _stats_for(input, lambda t: _row_view(t, [0, 1], spatial, merge_rows=False, affine_b=1,
                                                          affine="none"), rows, eps, (rm, rv), bool(use_input_stats))
    bias = torch.zeros((c,), dtype=weight.dtype if weight is not None else input.dtype, device=input.device)
    return _backward(rows, x, grad_output, weight, bias, mean, rstd, training=bool(use_input_stats), relu=False,
                     want_dx=True, want_w=weight is not None, want_b=True)


def group_norm_backward(grad_output, input, num_groups, weight=None, eps=1e-5):
    """(dx, dweight, dbias) of :func:`group_norm`."""
    _grad_checks(grad_output, input)
    c = input.shape[1]
    if isinstance(num_groups, bool) or not isinstance(num_groups, int) or num_groups <= 0 or c % num_groups:
        raise ValueError(f"num_groups must be a positive int dividing C={c}, got {num_groups!r}")
    _param(weight, "weight", (c,), input)
    cg = c // num_groups
    spatial = list(range(2, input.dim()))

    def view(t):
        return _row_view(t, [0, (num_groups, cg * t.stride(1))], [(cg, t.stride(1))] + spatial, merge_rows=False,
                         affine_b=cg, affine="channel")

    rows = _Rows("group", groups=num_groups)
    x, mean, rstd = _stats_for(input, view, rows, eps, None, True)
    bias = torch.zeros((c,), dtype=weight.dtype if weight is not None else input.dtype, device=input.device)
    return _backward(rows, x, grad_output, weight, bias, mean, rstd, training=True, relu=False, want_dx=True,
                     want_w=weight is not None, want_b=True)


def layer_norm_backward(grad_output, input, normalized_shape, weight=None, eps=1e-5):
    """(dx, dweight, dbias) of :func:`layer_norm`."""
    _grad_checks(grad_output, input)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(shape)
    if input.dim() < k or tuple(input.shape[input.dim() - k:]) != shape:
        raise ValueError(f"normalized_shape={shape} does not match the trailing dimensions of input shape "
                         f"{tuple(input.shape)}")
    _param(weight, "weight", shape, input)
    lead, trail = list(range(input.dim() - k)), list(range(input.dim() - k, input.dim()))
    rows = _Rows("layer", trail=k)
    x, mean, rstd = _stats_for(input, lambda t: _row_view(t, lead, trail, merge_rows=True, affine_b=0,
                                                          affine="flat"), rows, eps, None, True)
    bias = torch.zeros(shape, dtype=weight.dtype if weight is not None else input.dtype, device=input.device)
    return _backward(rows, x, grad_output, weight, bias, mean, rstd, training=True, relu=False, want_dx=True,
                     want_w=weight is not None, want_b=True)


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
    # backward: the row kernel with the tiles a batch norm (P=1, long rows), a group norm (32
    # channels x 56x56) and a layer norm (P = row, Q = 1) launch, training with the fused ReLU and
    # every gradient, in each dtype; evaluation mode once; the column sum
    grad_names = "x_ptr dy_ptr dx_ptr mean_ptr rstd_ptr w_ptr b_ptr t_ptr R P Q G_MOD"
    for dt in ("fp32", "fp16", "bf16"):
        ptrs = {"x_ptr": f"*{dt}", "dy_ptr": f"*{dt}", "dx_ptr": f"*{dt}", "mean_ptr": "*fp32", "rstd_ptr": "*fp32",
                "w_ptr": f"*{dt}", "b_ptr": f"*{dt}", "t_ptr": "*fp32"}
        for label, bp, bq, extra in (("batch", 1, 1024, {"P": 1}), ("group", 1, 1024, {}), ("layer", 1024, 1, {"Q": 1})):
            ce = dict(TRAINING=True, HAS_W=True, RELU=True, WANT_DX=True, WANT_PARAMS=True, INT64=False,
                      BLOCK_P=bp, BLOCK_Q=bq, **extra)
            specs.append(_spec(f"norm.grad_rows/{dt}/{label}-P{bp}-Q{bq}", _norm_grad_rows_kernel, grad_names, ptrs,
                               ce, 4, True))
        if dt == "fp16":
            ce = dict(TRAINING=False, HAS_W=True, RELU=False, WANT_DX=True, WANT_PARAMS=False, INT64=True,
                      BLOCK_P=1, BLOCK_Q=1024, P=1)
            specs.append(_spec(f"norm.grad_rows/{dt}/eval-i64", _norm_grad_rows_kernel, grad_names, ptrs, ce, 4, False))
    specs.append(_spec("norm.column_sum/fp16/B256", _column_sum_kernel, "t_ptr out_ptr rows cols",
                       {"t_ptr": "*fp32", "out_ptr": "*fp16"}, dict(INT64=False, BLOCK=256), 4, True))
    return specs
