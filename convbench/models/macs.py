"""Multiply-accumulates of a model's convolutions and linear layers, from the geometry alone.

The model is copied to the meta device and run through ``torch.nn`` (no kernel runs, no memory
is touched); forward hooks read each conv's and linear layer's output shape:
``conv: N * K * P * Q * (C / groups) * R * S``, ``linear: rows * in * out``.  Biases, norms,
activations and pools are not counted (as torchvision's published "GFLOPS", which are MACs).
"""

from __future__ import annotations

import copy
import math

import torch

from convbench import nn as cnn


def count_macs(model: torch.nn.Module, input_shape) -> int:
    """The multiply-accumulates of one forward of ``model`` on an input of ``input_shape``."""
    shape = tuple(input_shape)
    if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ValueError(f"input_shape must be positive ints, got {input_shape!r}")
    probe = cnn.convert(copy.deepcopy(model).to("meta"), "torch")
    total = 0

    def conv_hook(m, inputs, out):
        nonlocal total
        total += out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)

    def linear_hook(m, inputs, out):
        nonlocal total
        total += out.numel() * m.in_features

    hooks = []
    for m in probe.modules():
        if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, torch.nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    probe.eval()
    with torch.no_grad():
        probe(torch.empty(shape, device="meta"))
    for h in hooks:
        h.remove()
    return total
