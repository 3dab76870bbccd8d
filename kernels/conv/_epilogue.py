"""The fused epilogue of a convolution: ``y = act((conv(x, w) + bias) * scale + shift + residual)``.

``scale``/``shift`` are per output channel (a batch norm folded for inference: scale =
gamma / sqrt(var + eps), shift = beta - mean * scale), ``residual`` has the output's shape, the
activation is one of :data:`ACTIVATIONS`.  The GEMM family (implicit GEMM, im2col + GEMM, the
1x1 GEMM) and the direct kernels apply it to the fp32 accumulator before the one store
(:func:`apply_epilogue`), which saves the output a round trip through DRAM per fused op;
Winograd and FFT, whose outputs leave an inverse transform, apply it after their kernels
(:meth:`Epilogue.apply`, unfused), and so does every call that needs gradients (autograd then
sees ordinary torch ops on top of the convolution's Function, so no gradient is lost).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .. import _common

ACTIVATIONS = ("relu", "relu6", "silu", "sigmoid")
#: each activation (None: the identity) as torch ops, for every epilogue applied outside a kernel
TORCH_ACTIVATIONS = {None: lambda y: y, "relu": torch.relu, "relu6": lambda y: torch.clamp(y, 0.0, 6.0),
                     "silu": torch.nn.functional.silu, "sigmoid": torch.sigmoid}


@dataclass(frozen=True)
class Epilogue:
    activation: str | None = None
    scale: torch.Tensor | None = None
    shift: torch.Tensor | None = None
    residual: torch.Tensor | None = None

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.activation, self.scale, self.shift, self.residual))

    def meta(self) -> dict:
        """The kernels' constexprs."""
        return dict(ACT=self.activation or "none", HAS_SCALE=self.scale is not None,
                    HAS_SHIFT=self.shift is not None, HAS_RES=self.residual is not None)

    def pointers(self, out: torch.Tensor) -> tuple:
        """(scale, shift, residual) for a launch writing ``out``: absent ones are ``out`` (never
        read); the residual laid out as ``out`` (copied where it is not), so one offset addresses
        both.  Strides of size-1 dimensions never move an offset, so they need not agree: a
        (N, K, 1, 1) residual is both NCHW and channels_last."""
        res = self.residual
        if res is not None and any(a != b for n, a, b in zip(out.shape, res.stride(), out.stride()) if n > 1):
            res = torch.empty_strided(out.shape, out.stride(), dtype=res.dtype, device=res.device).copy_(res)
        return (self.scale if self.scale is not None else out, self.shift if self.shift is not None else out,
                res if res is not None else out)

    def apply(self, y: torch.Tensor) -> torch.Tensor:
        """The same epilogue in torch ops on a finished output (unfused; differentiable)."""
        if not self.active:
            return y
        z = y.float()
        shape = (1, -1) + (1,) * (y.dim() - 2)
        if self.scale is not None:
            z = z * self.scale.float().reshape(shape)
        if self.shift is not None:
            z = z + self.shift.float().reshape(shape)
        if self.residual is not None:
            z = z + self.residual.float()
        return TORCH_ACTIVATIONS[self.activation](z).to(y.dtype)

    def tensors(self) -> tuple:
        return tuple(t for t in (self.scale, self.shift, self.residual) if t is not None)


NONE = Epilogue()


def sample_epilogue(output_shape, dtype: torch.dtype, memory_format, activation: str = "silu") -> Epilogue:
    """Every part of the epilogue on meta tensors: what the static specs of a fused store compile."""
    k = output_shape[1]
    return Epilogue(activation, torch.empty(k, dtype=dtype, device="meta"), torch.empty(k, dtype=dtype, device="meta"),
                    torch.empty(output_shape, dtype=dtype, device="meta").contiguous(memory_format=memory_format))


def make_epilogue(activation, residual, scale, shift, input: torch.Tensor, output_shape: tuple) -> Epilogue:
    """Validate the epilogue arguments of a conv2d call (named in every error)."""
    if activation is not None and activation not in ACTIVATIONS:
        raise ValueError(f"activation must be None or one of {ACTIVATIONS}, got {activation!r}")
    k = output_shape[1]
    for name, t in (("scale", scale), ("shift", shift)):
        _common.check_vector(t, name, k, input)
        if t is not None and t.device != input.device:
            raise ValueError(f"{name} is on {t.device} but input is on {input.device}")
    if residual is not None:
        _common.check_tensor(residual, "residual")
        _common.check_same(input, "input", residual, "residual")
        if tuple(residual.shape) != tuple(output_shape):
            raise ValueError(f"residual must have the output's shape {tuple(output_shape)}, "
                             f"got {tuple(residual.shape)}")
    return Epilogue(activation, scale, shift, residual)


@triton.jit
def apply_epilogue(acc, offs_k, k_ok, row_off, col_off, mask, scale_ptr, shift_ptr, res_ptr,
                   HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr, HAS_RES: tl.constexpr, ACT: tl.constexpr):
    """The epilogue on an fp32 (rows x channels) tile: channel ``offs_k`` per column, the output
    element of entry (i, j) at ``row_off[i] + col_off[j]`` (the residual shares the output's layout)."""
    if HAS_SCALE:
        acc = acc * tl.load(scale_ptr + offs_k, mask=k_ok, other=1.0).to(tl.float32)[None, :]
    if HAS_SHIFT:
        acc = acc + tl.load(shift_ptr + offs_k, mask=k_ok, other=0.0).to(tl.float32)[None, :]
    if HAS_RES:
        acc = acc + tl.load(res_ptr + row_off[:, None] + col_off[None, :], mask=mask, other=0.0).to(tl.float32)
    # comparisons that are false for NaN, so NaN passes through as in torch
    if ACT == "relu":
        acc = tl.where(acc < 0.0, 0.0, acc)
    elif ACT == "relu6":
        acc = tl.where(acc < 0.0, 0.0, tl.where(acc > 6.0, 6.0, acc))
    elif ACT == "silu":
        acc = acc / (1.0 + tl.exp(-acc))
    elif ACT == "sigmoid":
        acc = 1.0 / (1.0 + tl.exp(-acc))
    return acc
