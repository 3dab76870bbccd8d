"""A network's convolutions as geometries, and its float64 reference forward, layer by layer.

* :func:`conv_layers`: every ``Conv2d`` call of one forward (meta device: nothing runs) as
  ``(module name, ConvGeometry)``;
* :func:`distinct_conv_layers`: the distinct geometries with how often each occurs (what a layer
  suite needs to weight its cells into a network total);
* :func:`reference_forward`: the network in float64 with every conv (the im2col reference), batch
  norm and pool computed by :mod:`convbench.reference` (NumPy) and the rest (activations, adds, concatenations, linear
  layers) by torch in float64 on the CPU.
"""

from __future__ import annotations

import copy
from collections import Counter

import torch

from convbench import nn as cnn
from convbench import reference
from convbench.reference.geometry import ConvGeometry


def meta_forward(model: torch.nn.Module, input_shape, hooks: dict) -> None:
    """One forward of a meta-device copy of ``model`` (as plain torch.nn, eval mode) on
    ``input_shape``, calling ``hooks[kind](name, module, inputs, output)`` for each module of each
    kind (a class or a tuple of classes): shapes without arithmetic or memory."""
    probe = cnn.convert(copy.deepcopy(model).to("meta"), "torch").eval()

    def bound(name, hook):
        return lambda mod, inputs, output: hook(name, mod, inputs, output)

    handles = [m.register_forward_hook(bound(name, hook)) for name, m in probe.named_modules()
               for kind, hook in hooks.items() if isinstance(m, kind)]
    try:
        with torch.no_grad():
            dtype = next((p.dtype for p in probe.parameters()), torch.float32)
            probe(torch.empty(tuple(input_shape), device="meta", dtype=dtype))
    finally:
        for h in handles:
            h.remove()


def conv_layers(model: torch.nn.Module, input_shape) -> list[tuple[str, ConvGeometry]]:
    """Every conv2d call of one forward on ``input_shape``, in call order."""
    out: list[tuple[str, ConvGeometry]] = []

    def hook(name, mod, inputs, _output):
        out.append((name, ConvGeometry.from_shapes(inputs[0].shape, mod.weight.shape, mod.stride, mod.padding,
                                                   mod.dilation, mod.groups)))

    meta_forward(model, input_shape, {torch.nn.Conv2d: hook})
    return out


def distinct_conv_layers(model: torch.nn.Module, input_shape) -> list[tuple[ConvGeometry, int, str]]:
    """(geometry, occurrences, first module name) per distinct conv geometry, in first-call order."""
    layers = conv_layers(model, input_shape)
    counts = Counter(g for _, g in layers)
    first: dict = {}
    for name, g in layers:
        first.setdefault(g, name)
    return [(g, counts[g], first[g]) for g in first]


def _conv(m, a):
    # the im2col reference: float64 like the direct loop nest (tested against it), minutes faster
    return reference.conv2d_im2col(a, m.weight.detach().numpy(), None if m.bias is None else m.bias.detach().numpy(),
                                   m.stride, m.padding, m.dilation, m.groups)


def _batch_norm(m, a):
    return reference.batch_norm(a, m.running_mean.numpy(), m.running_var.numpy(),
                                None if m.weight is None else m.weight.detach().numpy(),
                                None if m.bias is None else m.bias.detach().numpy(), False, eps=m.eps)


def _max_pool(m, a):
    return reference.max_pool2d(a, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)


def _avg_pool(m, a):
    return reference.avg_pool2d(a, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad,
                                m.divisor_override)


def _adaptive_avg_pool(m, a):
    return reference.adaptive_avg_pool2d(a, m.output_size)


class _Reference(torch.nn.Module):
    """A layer computed by its NumPy reference ``fn(layer, array)`` (the layer keeps its parameters)."""

    def __init__(self, m: torch.nn.Module, fn):
        super().__init__()
        self.m, self.fn = m, fn

    def forward(self, x):
        return torch.from_numpy(self.fn(self.m, x.detach().numpy()))


_REFERENCE_OF = ((torch.nn.Conv2d, _conv), (torch.nn.BatchNorm2d, _batch_norm), (torch.nn.MaxPool2d, _max_pool),
                 (torch.nn.AvgPool2d, _avg_pool), (torch.nn.AdaptiveAvgPool2d, _adaptive_avg_pool))


def reference_network(model: torch.nn.Module) -> torch.nn.Module:
    """A float64 copy of ``model`` (eval mode) whose convs, batch norms and pools are the NumPy references."""
    net = cnn.convert(copy.deepcopy(model).cpu(), "torch").double().eval()

    def swap(parent):
        for name, child in parent.named_children():
            for kind, fn in _REFERENCE_OF:
                if isinstance(child, kind):
                    setattr(parent, name, _Reference(child, fn))
                    break
            else:
                swap(child)

    swap(net)
    return net


def reference_forward(model: torch.nn.Module, x) -> torch.Tensor:
    """The float64 forward of ``model`` on ``x`` through the NumPy references (see the module docstring)."""
    with torch.no_grad():
        return reference_network(model)(torch.as_tensor(x).detach().cpu().double())
