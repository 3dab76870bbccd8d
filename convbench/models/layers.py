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


def conv_layers(model: torch.nn.Module, input_shape) -> list[tuple[str, ConvGeometry]]:
    """Every conv2d call of one forward on ``input_shape``, in call order."""
    probe = cnn.convert(copy.deepcopy(model).to("meta"), "torch").eval()
    out: list[tuple[str, ConvGeometry]] = []
    hooks = []
    for name, m in probe.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            def hook(mod, inputs, _out, name=name):
                out.append((name, ConvGeometry.from_shapes(inputs[0].shape, mod.weight.shape, mod.stride,
                                                           mod.padding, mod.dilation, mod.groups)))
            hooks.append(m.register_forward_hook(hook))
    with torch.no_grad():
        dtype = next((p.dtype for p in probe.parameters()), torch.float32)
        probe(torch.empty(tuple(input_shape), device="meta", dtype=dtype))
    for h in hooks:
        h.remove()
    return out


def distinct_conv_layers(model: torch.nn.Module, input_shape) -> list[tuple[ConvGeometry, int, str]]:
    """(geometry, occurrences, first module name) per distinct conv geometry, in first-call order."""
    layers = conv_layers(model, input_shape)
    counts = Counter(g for _, g in layers)
    first: dict = {}
    for name, g in layers:
        first.setdefault(g, name)
    return [(g, counts[g], first[g]) for g in first]


class _ReferenceConv(torch.nn.Module):
    def __init__(self, m: torch.nn.Conv2d):
        super().__init__()
        self.m = m

    def forward(self, x):
        m = self.m
        b = None if m.bias is None else m.bias.detach().numpy()
        # the im2col reference: float64 like the direct loop nest (tested against it), minutes faster
        y = reference.conv2d_im2col(x.detach().numpy(), m.weight.detach().numpy(), b, m.stride, m.padding,
                                    m.dilation, m.groups)
        return torch.from_numpy(y)


class _ReferenceBatchNorm(torch.nn.Module):
    def __init__(self, m: torch.nn.BatchNorm2d):
        super().__init__()
        self.m = m

    def forward(self, x):
        m = self.m
        y = reference.batch_norm(x.detach().numpy(), m.running_mean.numpy(), m.running_var.numpy(),
                                 None if m.weight is None else m.weight.detach().numpy(),
                                 None if m.bias is None else m.bias.detach().numpy(), False, eps=m.eps)
        return torch.from_numpy(y)


class _ReferencePool(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        m, a = self.m, x.detach().numpy()
        if isinstance(m, torch.nn.MaxPool2d):
            y = reference.max_pool2d(a, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)
        elif isinstance(m, torch.nn.AvgPool2d):
            y = reference.avg_pool2d(a, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad,
                                     m.divisor_override)
        else:
            y = reference.adaptive_avg_pool2d(a, m.output_size)
        return torch.from_numpy(y)


_REFERENCE_OF = ((torch.nn.Conv2d, _ReferenceConv), (torch.nn.BatchNorm2d, _ReferenceBatchNorm),
                 ((torch.nn.MaxPool2d, torch.nn.AvgPool2d, torch.nn.AdaptiveAvgPool2d), _ReferencePool))


def reference_network(model: torch.nn.Module) -> torch.nn.Module:
    """A float64 copy of ``model`` (eval mode) whose convs, batch norms and pools are the NumPy references."""
    net = cnn.convert(copy.deepcopy(model).cpu(), "torch").double().eval()

    def swap(parent):
        for name, child in parent.named_children():
            for kind, ref in _REFERENCE_OF:
                if isinstance(child, kind):
                    setattr(parent, name, ref(child))
                    break
            else:
                swap(child)

    swap(net)
    return net


def reference_forward(model: torch.nn.Module, x) -> torch.Tensor:
    """The float64 forward of ``model`` on ``x`` through the NumPy references (see the module docstring)."""
    with torch.no_grad():
        return reference_network(model)(torch.as_tensor(x).detach().cpu().double())
