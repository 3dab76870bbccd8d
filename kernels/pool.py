"""Pooling: max (with indices), average, adaptive average and global average pooling in Triton.

Algorithm.  Pooling is bandwidth bound: every output element reads its window once and does a
few compares or adds, so a kernel is judged by the DRAM bytes it moves (:func:`min_bytes`).

* ``_max_pool_kernel`` / ``_avg_pool_kernel``: a program owns BLOCK consecutive output elements
  *in the output's memory order* ((n, c, p, q) for NCHW, (n, p, q, c) for channels_last, so
  stores and, for channels_last, loads are coalesced) and loops over the KH x KW taps
  (unrolled, constexpr window).  Max pooling follows PyTorch exactly: padding never wins, a NaN
  replaces the running maximum (``v > max or v != v``), a strictly larger value is needed to
  move the index (first index wins ties), and the index starts at the first in-bounds tap.
  Average pooling sums in fp32 and divides by ``divisor_override``, by the window clipped to the
  padded input (``count_include_pad``) or by the in-bounds tap count.
* ``_adaptive_avg_kernel``: the same element mapping, windows ``[floor(i*H/OH), ceil((i+1)*H/OH))``
  with a runtime loop up to the largest window.
* ``_global_avg_kernel`` (output 1x1, the classifier head): one reduction per (n, c): a program
  owns BLOCK_C channels of one image and streams the H*W plane in [BLOCK_C, BLOCK_HW] tiles,
  wide along HW for NCHW and wide along C for channels_last.

Backward (``*_backward`` launchers, kernels in :mod:`._pool_grad_kernels`): gathers, no atomics:
a program owns BLOCK input elements and visits the windows that can hold each one (max pooling
adds dy where the forward's saved index is the element's own, so ties and NaN follow the
forward; average pooling divides by the forward's own divisor, one shared jit helper).  Every
pool is differentiable: a ``torch.autograd.Function`` per op, entered only when
``_common.needs_grad`` says a gradient is wanted (the no-grad path is the plain launch), saving
the indices (max) or nothing (average) besides the input's shape and layout.

1-D pools run the 2-D kernels on an (N, C, 1, L) view.  Layouts: NCHW and channels_last via
strides; the output (and indices) follow the input's memory format.  fp32/fp16/bf16, fp32
arithmetic (max pooling is exact in any dtype).  64-bit offsets when ``_common.needs_int64``.

Reference: PyTorch's ``aten/src/ATen/native/cuda/DilatedMaxPool2d.cu`` and ``AveragePool2d.cu``
semantics (re-derived here, no code copied); ``reference/pool.py`` is the float64 oracle.

This file holds the configs, the launchers and the static specs; the ``@triton.jit`` kernels
are in :mod:`._pool_kernels`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
from torch.autograd.function import once_differentiable

from convbench.reference.geometry import PoolGeometry, adaptive_windows, check_divisor_override, pair

from . import _common
from ._pool_grad_kernels import _adaptive_avg_grad_kernel, _avg_pool_grad_kernel, _max_pool_grad_kernel
from ._pool_kernels import _adaptive_avg_kernel, _avg_pool_kernel, _global_avg_kernel, _max_pool_kernel
from ._static_spec import StaticSpec

__all__ = ["max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "max_pool1d", "avg_pool1d",
           "adaptive_avg_pool1d", "max_pool2d_backward", "avg_pool2d_backward", "adaptive_avg_pool2d_backward",
           "max_pool1d_backward", "avg_pool1d_backward", "adaptive_avg_pool1d_backward"]


# --------------------------------------------------------------------------------------------
# configs
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PoolConfig:
    """Window pools: BLOCK output elements per program."""

    block: int
    num_warps: int = 4

    def __str__(self) -> str:
        return f"B{self.block}-w{self.num_warps}"


@dataclass(frozen=True)
class GlobalConfig:
    """Global average pooling: a [BLOCK_C, BLOCK_HW] tile streamed over the plane."""

    block_c: int
    block_hw: int
    num_warps: int = 4

    def __str__(self) -> str:
        return f"C{self.block_c}-HW{self.block_hw}-w{self.num_warps}"


CONFIGS: tuple[PoolConfig, ...] = (PoolConfig(128, 4), PoolConfig(256, 4), PoolConfig(512, 8))
GLOBAL_CONFIGS: tuple[GlobalConfig, ...] = (
    GlobalConfig(1, 1024, 4),   # NCHW, large planes
    GlobalConfig(4, 256, 4),    # NCHW, 14x14 .. 16x16
    GlobalConfig(16, 64, 4),    # NCHW, 7x7 .. 8x8 (the ResNet/EfficientNet head)
    GlobalConfig(64, 16, 4),    # channels_last: vectorised along C
    GlobalConfig(128, 8, 8),    # channels_last, many channels (2048-wide heads)
)


def default_config(total: int) -> PoolConfig:
    """Larger blocks once there are enough outputs to fill the GPU several times over."""
    return CONFIGS[0] if total < (1 << 16) else CONFIGS[1] if total < (1 << 21) else CONFIGS[2]


def default_global_config(hw: int, c: int, channels_last: bool) -> GlobalConfig:
    if channels_last:
        return GLOBAL_CONFIGS[4] if c >= 1024 else GLOBAL_CONFIGS[3]
    return GLOBAL_CONFIGS[2] if hw <= 64 else GLOBAL_CONFIGS[1] if hw <= 256 else GLOBAL_CONFIGS[0]


# --------------------------------------------------------------------------------------------
# launchers
# --------------------------------------------------------------------------------------------
def _as_batched(input, spatial: int):
    """Validate ``input``; unbatched (C, H, W) / (C, L) input gains a batch dimension."""
    _common.check_tensor(input, "input")
    if input.dim() == spatial + 1:
        return input.unsqueeze(0), True
    if input.dim() != spatial + 2:
        names = "(N, C, H, W) or (C, H, W)" if spatial == 2 else "(N, C, L) or (C, L)"
        raise ValueError(f"input must be {names}, got shape {tuple(input.shape)}")
    return input, False


def _stand_in(shape) -> tuple:
    """An empty batch validates like a batch of one (pool output sizes do not depend on N)."""
    return (max(shape[0], 1), *shape[1:])


def _config(config, choices, fallback):
    if config is None:
        return fallback
    if config not in choices:
        raise ValueError(f"config must be one of {[str(c) for c in choices]}, got {config!r}")
    return config


def _window_launch(x, g: PoolGeometry, *, kind, config, return_indices=False, count_include_pad=True,
                   divisor_override=None):
    shape = (x.shape[0], *g.output_shape[1:])  # the geometry may be a stand-in batch of one
    y = _common.empty_output(shape, x)
    idx = _common.empty_output(shape, x, dtype=torch.int64) if return_indices else None
    total = y.numel()
    if total == 0:
        return y, idx
    cfg = _config(config, CONFIGS, default_config(total))
    common = dict(CHANNELS_LAST=_common.is_channels_last(x), INT64=_common.needs_int64(x, y),
                  BLOCK=cfg.block, KH=g.kernel[0], KW=g.kernel[1], num_warps=cfg.num_warps)
    sizes = (total, g.c, g.h, g.w, g.p, g.q, *x.stride(), *y.stride())
    grid = (triton.cdiv(total, cfg.block),)
    if kind == "max":
        _max_pool_kernel[grid](x, y, idx if idx is not None else y, *sizes, *g.stride, *g.padding, *g.dilation,
                               HAS_INDICES=idx is not None, **common)
        return y, idx
    _avg_pool_kernel[grid](x, y, *sizes, *g.stride, *g.padding, divisor_override or 0,
                           COUNT_INCLUDE_PAD=bool(count_include_pad), HAS_DIVISOR=divisor_override is not None,
                           **common)
    return y, None


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, config: PoolConfig | None = None):
    """``torch.nn.functional.max_pool2d``; indices are int64 ``h * W + w`` like PyTorch's.
    Differentiable: the backward scatters through the indices (a gather kernel)."""
    x, unbatched = _as_batched(input, 2)
    g = PoolGeometry.from_args(_stand_in(x.shape), kernel_size, stride, padding, dilation, ceil_mode)
    if _common.needs_grad(x):
        y, idx = _MaxPoolFunction.apply(x, g, config)
    else:
        y, idx = _window_launch(x, g, kind="max", config=config, return_indices=bool(return_indices))
    if unbatched:
        y, idx = y.squeeze(0), (idx.squeeze(0) if idx is not None else None)
    return (y, idx) if return_indices else y


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, config: PoolConfig | None = None) -> torch.Tensor:
    """``torch.nn.functional.avg_pool2d`` (fp32 sums); differentiable."""
    x, unbatched = _as_batched(input, 2)
    check_divisor_override(divisor_override)
    g = PoolGeometry.from_args(_stand_in(x.shape), kernel_size, stride, padding, 1, ceil_mode)
    options = (bool(count_include_pad), divisor_override)
    if _common.needs_grad(x):
        y = _AvgPoolFunction.apply(x, g, options, config)
    else:
        y, _ = _window_launch(x, g, kind="avg", config=config, count_include_pad=count_include_pad,
                              divisor_override=divisor_override)
    return y.squeeze(0) if unbatched else y


def _adaptive_size(output_size, hw) -> tuple[int, int]:
    if isinstance(output_size, (list, tuple)) and len(output_size) == 2:
        output_size = tuple(hw[i] if s is None else s for i, s in enumerate(output_size))
    sizes = pair(output_size, "output_size")
    if any(s <= 0 for s in sizes):
        raise ValueError(f"output_size must be positive, got {output_size!r}")
    return sizes


def adaptive_avg_pool2d(input, output_size, *, config=None) -> torch.Tensor:
    """``torch.nn.functional.adaptive_avg_pool2d``; output 1x1 takes the global-average kernel.

    ``config`` is a :class:`GlobalConfig` for a 1x1 output, else a :class:`PoolConfig`.
    Differentiable.
    """
    x, unbatched = _as_batched(input, 2)
    n, c, h, w = x.shape
    oh, ow = _adaptive_size(output_size, (h, w))
    if _common.needs_grad(x):
        y = _AdaptiveAvgFunction.apply(x, (oh, ow), config)
        return y.squeeze(0) if unbatched else y
    return _adaptive_forward(x, oh, ow, config, unbatched)


def _adaptive_forward(x, oh: int, ow: int, config, unbatched: bool = False) -> torch.Tensor:
    n, c, h, w = x.shape
    y = _common.empty_output((n, c, oh, ow), x)
    if y.numel() == 0:  # an empty batch or no channels: nothing to launch
        return y.squeeze(0) if unbatched else y
    if h == 0 or w == 0:
        raise ValueError(f"adaptive_avg_pool2d needs a non-empty H x W, got input shape {tuple(x.shape)}")
    int64 = _common.needs_int64(x, y)
    if (oh, ow) == (1, 1):
        if h > 1 and w > 1 and x.stride(2) != w * x.stride(3):  # the plane must flatten to one stride
            x = x.contiguous()
        plane_stride = x.stride(2) if w == 1 else x.stride(3)
        cfg = _config(config, GLOBAL_CONFIGS, default_global_config(h * w, c, _common.is_channels_last(x)))
        grid = (triton.cdiv(c, cfg.block_c), n)
        _global_avg_kernel[grid](x, y, c, h * w, x.stride(0), x.stride(1), plane_stride, y.stride(0), y.stride(1),
                                 INT64=int64, BLOCK_C=cfg.block_c, BLOCK_HW=cfg.block_hw, num_warps=cfg.num_warps)
    else:
        max_kh = max(e - s for s, e in adaptive_windows(h, oh))
        max_kw = max(e - s for s, e in adaptive_windows(w, ow))
        total = y.numel()
        cfg = _config(config, CONFIGS, default_config(total))
        _adaptive_avg_kernel[(triton.cdiv(total, cfg.block),)](
            x, y, total, c, h, w, oh, ow, max_kh, max_kw, *x.stride(), *y.stride(),
            CHANNELS_LAST=_common.is_channels_last(x), INT64=int64, BLOCK=cfg.block, num_warps=cfg.num_warps)
    return y.squeeze(0) if unbatched else y


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, config: PoolConfig | None = None):
    """``torch.nn.functional.max_pool1d``: the 2-D kernel over an (N, C, 1, L) view."""
    x, unbatched = _as_batched(input, 1)
    PoolGeometry.from_args_1d(_stand_in(x.shape), kernel_size, stride, padding, dilation, ceil_mode)  # validates
    one = lambda v, name: (1, pair(v, name, 1)[0])  # noqa: E731
    out = max_pool2d(x.unsqueeze(2), one(kernel_size, "kernel_size"),
                     one(kernel_size if stride is None else stride, "stride"), (0, pair(padding, "padding", 1)[0]),
                     one(dilation, "dilation"), ceil_mode, bool(return_indices), config=config)
    y, idx = out if return_indices else (out, None)
    y, idx = y.squeeze(2), (idx.squeeze(2) if idx is not None else None)
    if unbatched:
        y, idx = y.squeeze(0), (idx.squeeze(0) if idx is not None else None)
    return (y, idx) if return_indices else y


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               *, config: PoolConfig | None = None) -> torch.Tensor:
    """``torch.nn.functional.avg_pool1d``: the 2-D kernel over an (N, C, 1, L) view."""
    x, unbatched = _as_batched(input, 1)
    PoolGeometry.from_args_1d(_stand_in(x.shape), kernel_size, stride, padding, 1, ceil_mode)  # validates
    one = lambda v, name: (1, pair(v, name, 1)[0])  # noqa: E731
    y = avg_pool2d(x.unsqueeze(2), one(kernel_size, "kernel_size"),
                   one(kernel_size if stride is None else stride, "stride"), (0, pair(padding, "padding", 1)[0]),
                   ceil_mode, count_include_pad, config=config).squeeze(2)
    return y.squeeze(0) if unbatched else y


def adaptive_avg_pool1d(input, output_size, *, config=None) -> torch.Tensor:
    """``torch.nn.functional.adaptive_avg_pool1d`` over an (N, C, 1, L) view."""
    x, unbatched = _as_batched(input, 1)
    (ol,) = pair(output_size, "output_size", 1)
    y = adaptive_avg_pool2d(x.unsqueeze(2), (1, ol), config=config).squeeze(2)
    return y.squeeze(0) if unbatched else y


# --------------------------------------------------------------------------------------------
# backward: gather kernels (module :mod:`._pool_grad_kernels`) and the autograd Functions
# --------------------------------------------------------------------------------------------
def _check_grad(grad_output, input, out_shape, what: str):
    _common.check_tensor(grad_output, "grad_output", ndim=4)
    _common.check_tensor(input, "input", ndim=4)
    _common.check_same(input, "input", grad_output, "grad_output")
    if tuple(grad_output.shape) != tuple(out_shape):
        raise ValueError(f"grad_output must have the {what} output shape {tuple(out_shape)}, "
                         f"got {tuple(grad_output.shape)}")


def _grad_buffer(dy, shape, channels_last: bool, config):
    """The input gradient buffer (the input's shape and memory format, dy's dtype and device) and
    the launch config; None config when there is nothing to launch (the buffer is then final)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    dx = _common.empty_output(tuple(shape), dy, memory_format=fmt)
    if dx.numel() == 0:
        return dx, None
    if dy.numel() == 0:
        return dx.zero_(), None
    return dx, _config(config, CONFIGS, default_config(dx.numel()))


def _grad_meta(dx, dy, channels_last: bool, cfg) -> dict:
    return dict(CHANNELS_LAST=channels_last, INT64=_common.needs_int64(dx, dy), BLOCK=cfg.block,
                num_warps=cfg.num_warps)


def _max_grad(dy, idx, g: PoolGeometry, shape, channels_last: bool, config):
    dx, cfg = _grad_buffer(dy, shape, channels_last, config)
    if cfg is not None:
        _max_pool_grad_kernel[(triton.cdiv(dx.numel(), cfg.block),)](
            dy, idx, dx, dx.numel(), g.c, g.h, g.w, g.p, g.q, *dx.stride(), *dy.stride(), *idx.stride(),
            *g.stride, *g.padding, *g.dilation, KH=g.kernel[0], KW=g.kernel[1],
            **_grad_meta(dx, dy, channels_last, cfg))
    return dx


def _avg_grad(dy, g: PoolGeometry, options, shape, channels_last: bool, config):
    count_include_pad, divisor_override = options
    dx, cfg = _grad_buffer(dy, shape, channels_last, config)
    if cfg is not None:
        _avg_pool_grad_kernel[(triton.cdiv(dx.numel(), cfg.block),)](
            dy, dx, dx.numel(), g.c, g.h, g.w, g.p, g.q, *dx.stride(), *dy.stride(),
            *g.stride, *g.padding, divisor_override or 0, KH=g.kernel[0], KW=g.kernel[1],
            COUNT_INCLUDE_PAD=bool(count_include_pad), HAS_DIVISOR=divisor_override is not None,
            **_grad_meta(dx, dy, channels_last, cfg))
    return dx


def _adaptive_grad(dy, shape, channels_last: bool, config):
    n, c, h, w = shape
    oh, ow = dy.shape[2], dy.shape[3]
    dx, cfg = _grad_buffer(dy, shape, channels_last, config)
    if cfg is not None:
        _adaptive_avg_grad_kernel[(triton.cdiv(dx.numel(), cfg.block),)](
            dy, dx, dx.numel(), c, h, w, oh, ow, triton.cdiv(oh, h) + 1, triton.cdiv(ow, w) + 1,
            *dx.stride(), *dy.stride(), **_grad_meta(dx, dy, channels_last, cfg))
    return dx


def _grad_operands(spatial: int, input, grad_output, indices=None):
    """The operands of a public backward launcher as (N, C, H, W) tensors (unbatched ones gain a
    batch dimension, 1-D ones a unit H) and the function that undoes this on the gradient."""
    _common.check_tensor(input, "input")
    _common.check_tensor(grad_output, "grad_output")
    if indices is not None:
        _common.check_tensor(indices, "indices", dtypes=(torch.int64,))
    if input.dim() not in (spatial + 1, spatial + 2):
        names = "(N, C, H, W) or (C, H, W)" if spatial == 2 else "(N, C, L) or (C, L)"
        raise ValueError(f"input must be {names}, got shape {tuple(input.shape)}")
    for t, name in ((grad_output, "grad_output"), (indices, "indices")):
        if t is not None and t.dim() != input.dim():
            raise ValueError(f"{name} must be {input.dim()}-D like input, got shape {tuple(t.shape)}")
    unbatched = input.dim() == spatial + 1

    def lift(t):
        if t is None:
            return None
        t = t.unsqueeze(0) if unbatched else t
        return t.unsqueeze(2) if spatial == 1 else t

    def lower(dx):
        dx = dx.squeeze(2) if spatial == 1 else dx
        return dx.squeeze(0) if unbatched else dx

    return lift(input), lift(grad_output), lift(indices), lower


def max_pool2d_backward(grad_output, input, indices, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False, *, config: PoolConfig | None = None) -> torch.Tensor:
    """The input gradient of :func:`max_pool2d` for (N, C, H, W) or (C, H, W) ``input``:
    ``grad_output`` added where ``indices`` (the forward's, ``h * W + w``) point.  A gather: each
    input element visits the windows that can hold it, in a fixed order (no atomics).

    A window with no tap inside the input (dilation and padding can make one: its output is
    -inf) sends no gradient.  Its index is torch's (the first tap moved in bounds one dimension
    at a time, which lands outside the window, even outside the plane); torch 2.13's CPU
    backward scatters there, into another pixel or another channel's memory."""
    x, dy, idx, lower = _grad_operands(2, input, grad_output, indices)
    g = PoolGeometry.from_args(_stand_in(tuple(x.shape)), kernel_size, stride, padding, dilation, ceil_mode)
    _check_grad(dy, x, (x.shape[0], *g.output_shape[1:]), "max_pool2d")
    if idx.shape != dy.shape:
        raise ValueError(f"indices must have grad_output's shape {tuple(grad_output.shape)}, "
                         f"got {tuple(indices.shape)}")
    return lower(_max_grad(dy, idx, g, x.shape, _common.is_channels_last(x), config))


def avg_pool2d_backward(grad_output, input, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None, *,
                        config: PoolConfig | None = None) -> torch.Tensor:
    """The input gradient of :func:`avg_pool2d` for (N, C, H, W) or (C, H, W) ``input``: each
    input element gathers ``dy / divisor`` of every window holding it (the forward's divisor)."""
    x, dy, _, lower = _grad_operands(2, input, grad_output)
    check_divisor_override(divisor_override)
    g = PoolGeometry.from_args(_stand_in(tuple(x.shape)), kernel_size, stride, padding, 1, ceil_mode)
    _check_grad(dy, x, (x.shape[0], *g.output_shape[1:]), "avg_pool2d")
    return lower(_avg_grad(dy, g, (bool(count_include_pad), divisor_override), x.shape,
                           _common.is_channels_last(x), config))


def adaptive_avg_pool2d_backward(grad_output, input, *, config: PoolConfig | None = None) -> torch.Tensor:
    """The input gradient of :func:`adaptive_avg_pool2d` (output size: grad_output's; the 1x1
    global case included): each input element gathers ``dy / window size`` of the windows
    holding it (at most ceil(OH/H) + 1 per axis, from floor(h*OH/H) on)."""
    x, dy, _, lower = _grad_operands(2, input, grad_output)
    n, c, h, w = x.shape
    _check_grad(dy, x, (n, c, *dy.shape[2:]), "adaptive_avg_pool2d")
    if dy.shape[2] == 0 or dy.shape[3] == 0:
        raise ValueError(f"grad_output must have a non-empty output size, got shape {tuple(grad_output.shape)}")
    if x.numel() and (h == 0 or w == 0):
        raise ValueError(f"adaptive_avg_pool2d needs a non-empty H x W, got input shape {tuple(input.shape)}")
    return lower(_adaptive_grad(dy, x.shape, _common.is_channels_last(x), config))


def max_pool1d_backward(grad_output, input, indices, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False, *, config: PoolConfig | None = None) -> torch.Tensor:
    """The input gradient of :func:`max_pool1d` (indices are positions along L): the 2-D gather
    over an (N, C, 1, L) view."""
    x, dy, idx, lower = _grad_operands(1, input, grad_output, indices)
    g = PoolGeometry.from_args_1d(_stand_in((x.shape[0], x.shape[1], x.shape[3])), kernel_size, stride, padding,
                                  dilation, ceil_mode)
    return lower(max_pool2d_backward(dy, x, idx, g.kernel, g.stride, g.padding, g.dilation, ceil_mode,
                                     config=config))


def avg_pool1d_backward(grad_output, input, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, *, config: PoolConfig | None = None) -> torch.Tensor:
    """The input gradient of :func:`avg_pool1d` over an (N, C, 1, L) view."""
    x, dy, _, lower = _grad_operands(1, input, grad_output)
    g = PoolGeometry.from_args_1d(_stand_in((x.shape[0], x.shape[1], x.shape[3])), kernel_size, stride, padding, 1,
                                  ceil_mode)
    return lower(avg_pool2d_backward(dy, x, g.kernel, g.stride, g.padding, ceil_mode, count_include_pad,
                                     config=config))


def adaptive_avg_pool1d_backward(grad_output, input, *, config: PoolConfig | None = None) -> torch.Tensor:
    """The input gradient of :func:`adaptive_avg_pool1d` over an (N, C, 1, L) view."""
    x, dy, _, lower = _grad_operands(1, input, grad_output)
    return lower(adaptive_avg_pool2d_backward(dy, x, config=config))


class _MaxPoolFunction(torch.autograd.Function):
    """Max pooling that always keeps its indices for the backward (marked non-differentiable);
    saves only them and the input's shape and layout."""

    @staticmethod
    def forward(ctx, x, g: PoolGeometry, config):
        y, idx = _window_launch(x, g, kind="max", config=config, return_indices=True)
        ctx.g, ctx.config = g, config
        ctx.shape, ctx.channels_last = tuple(x.shape), _common.is_channels_last(x)
        ctx.save_for_backward(idx)
        ctx.mark_non_differentiable(idx)
        return y, idx

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, _didx):
        (idx,) = ctx.saved_tensors
        return _max_grad(dy, idx, ctx.g, ctx.shape, ctx.channels_last, ctx.config), None, None


class _AvgPoolFunction(torch.autograd.Function):
    """Average pooling; saves no tensor (the backward needs only the geometry and the options)."""

    @staticmethod
    def forward(ctx, x, g: PoolGeometry, options, config):
        count_include_pad, divisor_override = options
        y, _ = _window_launch(x, g, kind="avg", config=config, count_include_pad=count_include_pad,
                              divisor_override=divisor_override)
        ctx.g, ctx.options, ctx.config = g, options, config
        ctx.shape, ctx.channels_last = tuple(x.shape), _common.is_channels_last(x)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        return _avg_grad(dy, ctx.g, ctx.options, ctx.shape, ctx.channels_last, ctx.config), None, None, None


class _AdaptiveAvgFunction(torch.autograd.Function):
    """Adaptive average pooling (global included); saves no tensor."""

    @staticmethod
    def forward(ctx, x, size, config):
        ctx.shape, ctx.channels_last = tuple(x.shape), _common.is_channels_last(x)
        return _adaptive_forward(x, size[0], size[1], config)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        return _adaptive_grad(dy, ctx.shape, ctx.channels_last, None), None, None


# --------------------------------------------------------------------------------------------
# traffic and static specs
# --------------------------------------------------------------------------------------------
def min_bytes(op: str, geom: PoolGeometry, itemsize: int, *, indices: bool = False) -> int:
    """Minimum DRAM traffic of ``max_pool{1,2}d``/``avg_pool{1,2}d``: input read once, output
    (and int64 indices) written once."""
    if op not in ("max_pool2d", "avg_pool2d", "max_pool1d", "avg_pool1d"):
        raise ValueError(f"op must be a window pool (max_pool2d, avg_pool2d, max_pool1d, avg_pool1d), got {op!r}")
    return geom.min_bytes(itemsize, indices=indices and op.startswith("max"))


def adaptive_min_bytes(input_shape, output_size, itemsize: int) -> int:
    """Minimum DRAM traffic of ``adaptive_avg_pool2d``: (N*C*H*W + N*C*OH*OW) * itemsize."""
    n, c, h, w = input_shape
    oh, ow = _adaptive_size(output_size, (h, w))
    return (n * c * h * w + n * c * oh * ow) * itemsize


_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _spec(name, fn, names, ptrs, constexprs, cfg, default, ones=()):
    """A StaticSpec as a real launch specializes it: integer arguments equal to 1 (unit strides)
    become constexprs, torch's allocations are 16-byte aligned."""
    sig = {a: ptrs.get(a, "i32") for a in names.split()}
    consts = {**constexprs, **{a: 1 for a in ones}}
    sig.update({k: "constexpr" for k in consts})
    return StaticSpec(name, fn, sig, consts, cfg.num_warps, 1, default,
                      divisible_by_16=tuple(a for a in ptrs if a in sig))


def static_specs() -> list[StaticSpec]:
    """The default configs (window pools: the smallest block; global: the NCHW 7x7-head and the
    channels_last tiles) in fp32, fp16 and bf16; every other config and constexpr variant (no
    indices, count_include_pad, divisor, channels_last, 64-bit offsets) once in a 16-bit dtype:
    fp16 (bf16 for global pooling).  Shapes: 3x3 windows; NCHW unit strides for the window pools,
    channels_last for adaptive, each layout's unit stride for global pooling."""
    specs = []
    strides = "sxn sxc sxh sxw syn syc syp syq"
    for dt in _DTYPES:
        ptr = {"x_ptr": f"*{dt}", "y_ptr": f"*{dt}", "idx_ptr": "*i64"}
        for cfg in CONFIGS:
            default = cfg == CONFIGS[0]
            if not default and dt != "fp16":
                continue
            names = f"x_ptr y_ptr idx_ptr total C H W P Q {strides} stride_h stride_w pad_h pad_w dil_h dil_w"
            ce = dict(KH=3, KW=3, HAS_INDICES=True, CHANNELS_LAST=False, INT64=False, BLOCK=cfg.block)
            specs.append(_spec(f"pool.max/{dt}/{cfg}", _max_pool_kernel, names, ptr, ce, cfg, default,
                               ones=("sxw", "syq")))
            names = f"x_ptr y_ptr total C H W P Q {strides} stride_h stride_w pad_h pad_w divisor"
            ce = dict(KH=3, KW=3, COUNT_INCLUDE_PAD=True, HAS_DIVISOR=False, CHANNELS_LAST=False, INT64=False,
                      BLOCK=cfg.block)
            specs.append(_spec(f"pool.avg/{dt}/{cfg}", _avg_pool_kernel, names, ptr, ce, cfg, default,
                               ones=("sxw", "syq")))
            names = f"x_ptr y_ptr total C H W P Q max_kh max_kw {strides}"
            ce = dict(CHANNELS_LAST=True, INT64=False, BLOCK=cfg.block)
            specs.append(_spec(f"pool.adaptive/{dt}/{cfg}", _adaptive_avg_kernel, names, ptr, ce, cfg, default,
                               ones=("sxc", "syc")))
        # the other constexpr variants a launch can pick, on the default config: once, in fp16
        if dt == "fp16":
            cfg = CONFIGS[0]
            names = f"x_ptr y_ptr idx_ptr total C H W P Q {strides} stride_h stride_w pad_h pad_w dil_h dil_w"
            ce = dict(KH=2, KW=2, HAS_INDICES=False, CHANNELS_LAST=True, INT64=True, BLOCK=cfg.block)
            specs.append(_spec(f"pool.max/{dt}/{cfg}-noidx-cl-i64", _max_pool_kernel, names, ptr, ce, cfg, False,
                               ones=("sxc", "syc")))
            names = f"x_ptr y_ptr total C H W P Q {strides} stride_h stride_w pad_h pad_w divisor"
            for cip, div in ((False, False), (True, True)):
                ce = dict(KH=2, KW=2, COUNT_INCLUDE_PAD=cip, HAS_DIVISOR=div, CHANNELS_LAST=True, INT64=True,
                          BLOCK=cfg.block)
                specs.append(_spec(f"pool.avg/{dt}/{cfg}-cip{int(cip)}-div{int(div)}-cl-i64", _avg_pool_kernel,
                                   names, ptr, ce, cfg, False, ones=("sxc", "syc")))
        # backward gathers on the default config: 3x3/2 windows, both layouts in fp16, NCHW otherwise
        cfg = CONFIGS[0]
        grad_strides = "sxn sxc sxh sxw syn syc syp syq"
        gptr = {"dy_ptr": f"*{dt}", "dx_ptr": f"*{dt}", "idx_ptr": "*i64"}
        for channels_last in ((False, True) if dt == "fp16" else (False,)):
            ones = ("sxc", "syc", "sic") if channels_last else ("sxw", "syq", "siq")
            tag = "-cl" if channels_last else ""
            names = f"dy_ptr idx_ptr dx_ptr total C H W P Q {grad_strides} sin sic sip siq " \
                    "stride_h stride_w pad_h pad_w dil_h dil_w"
            ce = dict(KH=3, KW=3, CHANNELS_LAST=channels_last, INT64=False, BLOCK=cfg.block)
            specs.append(_spec(f"pool.max_grad/{dt}/{cfg}{tag}", _max_pool_grad_kernel, names, gptr, ce, cfg, True,
                               ones=ones))
            names = f"dy_ptr dx_ptr total C H W P Q {grad_strides} stride_h stride_w pad_h pad_w divisor"
            ce = dict(KH=3, KW=3, COUNT_INCLUDE_PAD=True, HAS_DIVISOR=False, CHANNELS_LAST=channels_last,
                      INT64=False, BLOCK=cfg.block)
            specs.append(_spec(f"pool.avg_grad/{dt}/{cfg}{tag}", _avg_pool_grad_kernel, names, gptr, ce, cfg, True,
                               ones=ones[:2]))
            names = f"dy_ptr dx_ptr total C H W P Q span_h span_w {grad_strides}"
            ce = dict(CHANNELS_LAST=channels_last, INT64=False, BLOCK=cfg.block)
            specs.append(_spec(f"pool.adaptive_grad/{dt}/{cfg}{tag}", _adaptive_avg_grad_kernel, names, gptr, ce, cfg,
                               True, ones=ones[:2]))
        for cfg in GLOBAL_CONFIGS:
            default = cfg in (GLOBAL_CONFIGS[2], GLOBAL_CONFIGS[3])
            if not default and dt != "bf16":
                continue
            channels_last = cfg.block_c >= 64
            ce = dict(INT64=cfg == GLOBAL_CONFIGS[0], BLOCK_C=cfg.block_c, BLOCK_HW=cfg.block_hw)
            specs.append(_spec(f"pool.global_avg/{dt}/{cfg}", _global_avg_kernel, "x_ptr y_ptr C HW sxn sxc sxs syn syc",
                               ptr, ce, cfg, default,
                               ones=("sxc", "syc") if channels_last else ("sxs", "syc")))
    return specs
