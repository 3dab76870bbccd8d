"""Multiply-accumulates of a model's convolutions and linear layers, from the geometry alone.

The model is copied to the meta device and run through ``torch.nn`` (no kernel runs, no memory
is touched); forward hooks read each conv's and linear layer's output shape:
``conv: N * K * P * Q * (C / groups) * R * S``, ``linear: rows * in * out``.  Biases, norms,
activations and pools are not counted (as torchvision's published "GFLOPS", which are MACs).
"""

from __future__ import annotations

import math

import torch

from .layers import meta_forward


def count_macs(model: torch.nn.Module, input_shape) -> int:
    """The multiply-accumulates of one forward of ``model`` on an input of ``input_shape``."""
    shape = tuple(input_shape)
    if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ValueError(f"input_shape must be positive ints, got {input_shape!r}")
    total = 0

    def conv_hook(name, m, inputs, out):
        nonlocal total
        total += out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)

    def linear_hook(name, m, inputs, out):
        nonlocal total
        total += out.numel() * m.in_features

    meta_forward(model, shape, {(torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d): conv_hook,
                                torch.nn.Linear: linear_hook})
    return total
