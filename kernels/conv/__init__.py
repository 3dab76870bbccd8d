"""Convolution: the public launchers and the one explicit list of algorithms.

Each algorithm lives in its own module and exposes the same two things:

``launch(x, weight, bias, geom, *, input_precision) -> Tensor``
    ``x`` is validated NCHW-shaped (any memory format), ``weight`` KCRS, ``bias`` (K,) or None,
    ``geom`` the :class:`convbench.reference.geometry.ConvGeometry`; returns the output in ``x``'s dtype
    and memory format.
``unsupported(geom, dtype) -> str | None``
    why the algorithm does not apply to this problem, or None when it does.

:data:`ALGORITHMS` lists them; nothing is registered by import side effects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from convbench.reference.geometry import ConvGeometry, ConvTransposeGeometry

from .. import _common
from . import direct, fft, im2col, implicit_gemm, transpose, winograd


@dataclass(frozen=True)
class ConvAlgorithm:
    name: str
    launch: Callable[..., torch.Tensor]
    unsupported: Callable[[ConvGeometry, torch.dtype], Optional[str]]
    #: workspace bytes the algorithm allocates beyond input, weight and output
    workspace_bytes: Callable[[ConvGeometry, int], int]
    #: scalar multiplies the algorithm performs (direct: N*K*C/g*R*S*P*Q)
    multiplies: Callable[[ConvGeometry], int]
    #: error relative to the direct algorithm's, for tolerances (Winograd/FFT lose precision)
    error_scale: float = 1.0


def _direct_multiplies(g: ConvGeometry) -> int:
    return g.flops // 2


ALGORITHMS: tuple[ConvAlgorithm, ...] = (
    ConvAlgorithm("direct", direct.launch, direct.unsupported, direct.workspace_bytes, _direct_multiplies),
    ConvAlgorithm("im2col", im2col.launch, im2col.unsupported, im2col.workspace_bytes, _direct_multiplies),
    ConvAlgorithm("implicit_gemm", implicit_gemm.launch, implicit_gemm.unsupported,
                  implicit_gemm.workspace_bytes, _direct_multiplies),
    ConvAlgorithm("winograd_f2", winograd.launch_f2, winograd.unsupported_f2, winograd.workspace_bytes_f2,
                  winograd.multiplies_f2, error_scale=winograd.ERROR_SCALE_F2),
    ConvAlgorithm("winograd_f4", winograd.launch_f4, winograd.unsupported_f4, winograd.workspace_bytes_f4,
                  winograd.multiplies_f4, error_scale=winograd.ERROR_SCALE_F4),
    ConvAlgorithm("fft", fft.launch, fft.unsupported, fft.workspace_bytes, fft.multiplies,
                  error_scale=fft.ERROR_SCALE),
)

BY_NAME = {a.name: a for a in ALGORITHMS}
CONV2D_ALGORITHMS: tuple[str, ...] = tuple(a.name for a in ALGORITHMS)
CONV_TRANSPOSE2D_ALGORITHMS: tuple[str, ...] = ("phase",)


def choose_algorithm(geom: ConvGeometry, dtype: torch.dtype) -> str:
    """The documented ``auto`` rule (the benchmark suite measures how good it is).

    1. ``direct`` when ``tl.dot`` cannot be fed: depthwise/grouped with fewer than 16 channels
       per group on either side (C/g < 16 or K/g < 16), e.g. MobileNet depthwise, RGB stems.
    2. otherwise ``implicit_gemm`` (which has its own 1x1 fast path).
    Winograd and FFT are never chosen automatically until measurements show where they win.
    """
    if geom.c_per_group < 16 or geom.k_per_group < 16:
        return "direct"
    return "implicit_gemm"


def algorithm_for(name: str, geom: ConvGeometry, dtype: torch.dtype) -> ConvAlgorithm:
    """Resolve ``algorithm=`` (``"auto"`` or a name) and check that it applies."""
    if name == "auto":
        name = choose_algorithm(geom, dtype)
    if name not in BY_NAME:
        raise ValueError(f"algorithm must be 'auto' or one of {CONV2D_ALGORITHMS}, got {name!r}")
    algo = BY_NAME[name]
    reason = algo.unsupported(geom, dtype)
    if reason is not None:
        raise ValueError(f"algorithm={name!r} does not apply to {geom}: {reason}")
    return algo


def _check_conv_tensors(input, weight, bias, in_ndim: int) -> None:
    _common.check_tensor(input, "input", ndim=in_ndim)
    _common.check_tensor(weight, "weight", ndim=in_ndim)
    _common.check_same(input, "input", weight, "weight")
    if bias is not None:
        _common.check_tensor(bias, "bias", ndim=1)
        _common.check_same(input, "input", bias, "bias")


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           algorithm: str = "auto", input_precision: str = "ieee") -> torch.Tensor:
    """``torch.nn.functional.conv2d`` with a choice of algorithm (see :data:`CONV2D_ALGORITHMS`).

    ``input_precision`` applies to fp32 inputs: ``"ieee"`` (exact fp32 products) or ``"tf32"``.
    fp16/bf16 inputs always accumulate in fp32.  The output has the input's dtype and memory
    format (NCHW or channels_last).
    """
    _check_conv_tensors(input, weight, bias, 4)
    geom = ConvGeometry.from_shapes(input.shape, weight.shape, stride, padding, dilation, groups)
    if bias is not None and bias.shape[0] != geom.k:
        raise ValueError(f"bias must have shape ({geom.k},), got {tuple(bias.shape)}")
    _common.check_input_precision(input_precision)
    algo = algorithm_for(algorithm, geom, input.dtype)
    return algo.launch(input, weight, bias, geom, input_precision=input_precision)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           algorithm: str = "auto", input_precision: str = "ieee") -> torch.Tensor:
    """``torch.nn.functional.conv1d``: a 2-D convolution over an (N, C, 1, L) view."""
    _check_conv_tensors(input, weight, bias, 3)
    geom = ConvGeometry.from_shapes_1d(input.shape, weight.shape, stride, padding, dilation, groups)
    padding2d = padding if isinstance(padding, str) else (0, geom.padding[2])
    out = conv2d(input.unsqueeze(2), weight.unsqueeze(2), bias, (1, geom.stride[1]), padding2d,
                 (1, geom.dilation[1]), groups, algorithm=algorithm, input_precision=input_precision)
    return out.squeeze(2)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, algorithm: str = "auto", input_precision: str = "ieee") -> torch.Tensor:
    """``torch.nn.functional.conv_transpose2d`` by output-phase (sub-pixel) decomposition."""
    _common.check_tensor(input, "input", ndim=4)
    _common.check_tensor(weight, "weight", ndim=4)
    _common.check_same(input, "input", weight, "weight")
    geom = ConvTransposeGeometry.from_shapes(input.shape, weight.shape, stride, padding,
                                             output_padding, groups, dilation)
    if bias is not None:
        _common.check_vector(bias, "bias", geom.k, input)
        _common.check_same(input, "input", bias, "bias")
    _common.check_input_precision(input_precision)
    if algorithm not in ("auto",) + CONV_TRANSPOSE2D_ALGORITHMS:
        raise ValueError(f"algorithm must be 'auto' or one of {CONV_TRANSPOSE2D_ALGORITHMS}, got {algorithm!r}")
    return transpose.launch(input, weight, bias, geom, input_precision=input_precision)
