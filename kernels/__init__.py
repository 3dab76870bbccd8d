"""Triton kernels with ``torch.nn.functional``-style launchers.

Tensors must be on CUDA, or on the CPU with ``TRITON_INTERPRET=1`` set *before* this package
is imported (Triton reads it when a kernel is defined):
:func:`convbench.runtime.use_interpreter_without_gpu` does that where there is no GPU.
"""

from . import norm, pool
from . import tuning
from .conv import (ACTIVATIONS, ALGORITHMS, CONV2D_ALGORITHMS, CONV_TRANSPOSE2D_ALGORITHMS, FUSED_EPILOGUE, Choice,
                   ConvPlan,
                   choose_algorithm, conv1d, conv1d_input_grad, conv1d_weight_grad, conv2d, conv2d_input_grad,
                   conv2d_weight_grad, conv_configs, conv_transpose2d, plan_conv2d, resolve_conv2d, tune_conv2d)
from .conv import depthwise_grad, direct, fft, im2col, implicit_gemm, transpose, wgrad, winograd
from .norm import *  # noqa: F401,F403  (names listed in norm.__all__)
from .pool import *  # noqa: F401,F403  (names listed in pool.__all__)

#: every kernel module, for the static compile check (explicit, no import-time registry)
KERNEL_MODULES = (direct, im2col, implicit_gemm, winograd, fft, transpose, wgrad, depthwise_grad, pool, norm)


def static_specs():
    """All (kernel, config) pairs the static check compiles, from every kernel module."""
    return [spec for module in KERNEL_MODULES for spec in module.static_specs()]


__all__ = [
    "ACTIVATIONS", "ALGORITHMS", "CONV2D_ALGORITHMS", "FUSED_EPILOGUE", "CONV_TRANSPOSE2D_ALGORITHMS", "Choice", "ConvPlan", "choose_algorithm", "plan_conv2d",
    "conv1d", "conv2d", "conv2d_input_grad", "conv2d_weight_grad", "conv1d_input_grad", "conv1d_weight_grad",
    "conv_configs", "conv_transpose2d", "resolve_conv2d", "tune_conv2d", "tuning", "static_specs", "KERNEL_MODULES",
    *pool.__all__, *norm.__all__,
]
