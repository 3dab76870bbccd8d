"""A network's convolutions as geometries, and its float64 reference forward, layer by layer.

* :func:`conv_layers`: every ``Conv2d`` call of one forward (meta device: nothing runs) as
  ``(module name, ConvGeometry)``;
* :func:`distinct_conv_layers`: the distinct geometries with how often each occurs (what a layer
  suite needs to weight its cells into a network total);
* :func:`reference_forward`: the network in float64 with every conv (the im2col reference), batch
  norm and pool computed by :mod:`convbench.reference` (NumPy) and the rest (activations, adds, concatenations, linear
  layers) by torch in float64 on the CPU;
* :func:`reference_network` ``(model, training=True)``: the same network differentiable, each
  NumPy layer an autograd Function whose backward is the NumPy reference backward (conv2d input
  and weight gradients, batch norm with batch statistics, pools), so a training step's
  gradients come from the references layer by layer too (:func:`reference_train_step`).
"""

from __future__ import annotations

import copy
from collections import Counter

import numpy as np
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


def _array(t):
    return None if t is None else t.detach().numpy()


def _conv_geometry(m):
    return dict(stride=m.stride, padding=m.padding, dilation=m.dilation, groups=m.groups)


# each NumPy layer: forward(m, a) -> (y, saved) and backward(m, a, saved, dy) -> (dx, {parameter: grad})
def _conv(m, a):
    # the im2col reference: float64 like the direct loop nest (tested against it), minutes faster
    return reference.conv2d_im2col(a, _array(m.weight), _array(m.bias), **_conv_geometry(m)), None


def _conv_backward(m, a, _saved, dy):
    w = _array(m.weight)
    grads = {"weight": reference.conv2d_weight_grad(a, w.shape, dy, **_conv_geometry(m))}
    if m.bias is not None:
        grads["bias"] = dy.sum(axis=(0, 2, 3))
    return reference.conv2d_input_grad(a.shape, w, dy, **_conv_geometry(m)), grads


def _batch_norm(m, a):
    # training: batch statistics (on copies of the running ones: the reference leaves the module alone)
    return reference.batch_norm(a, m.running_mean.numpy().copy(), m.running_var.numpy().copy(), _array(m.weight),
                                _array(m.bias), m.training, eps=m.eps), None


def _batch_norm_backward(m, a, _saved, dy):
    dx, dw, db = reference.batch_norm_backward(dy, a, m.running_mean.numpy(), m.running_var.numpy(),
                                               _array(m.weight), m.training, eps=m.eps)
    return dx, ({"weight": dw, "bias": db} if m.weight is not None else {})


def _max_pool(m, a):
    return reference.max_pool2d(a, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, return_indices=True)


def _max_pool_backward(m, a, indices, dy):
    return reference.max_pool2d_backward(dy, a, indices, m.kernel_size, m.stride, m.padding, m.dilation,
                                         m.ceil_mode), {}


def _avg_pool(m, a):
    return reference.avg_pool2d(a, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad,
                                m.divisor_override), None


def _avg_pool_backward(m, a, _saved, dy):
    return reference.avg_pool2d_backward(dy, a, m.kernel_size, m.stride, m.padding, m.ceil_mode,
                                         m.count_include_pad, m.divisor_override), {}


def _adaptive_avg_pool(m, a):
    return reference.adaptive_avg_pool2d(a, m.output_size), None


def _adaptive_avg_pool_backward(m, a, _saved, dy):
    return reference.adaptive_avg_pool2d_backward(dy, a), {}


class _NumpyLayer(torch.autograd.Function):
    """One layer through its NumPy reference, forward and backward; the layer's parameters are
    inputs, so autograd routes their gradients."""

    @staticmethod
    def forward(ctx, wrapper, x, *params):
        a = x.detach().numpy()
        y, saved = wrapper.forward_fn(wrapper.m, a)
        ctx.wrapper, ctx.a, ctx.saved = wrapper, a, saved
        return torch.from_numpy(np.ascontiguousarray(y))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        wrapper = ctx.wrapper
        dx, grads = wrapper.backward_fn(wrapper.m, ctx.a, ctx.saved, dy.contiguous().numpy())
        dparams = [None if grads.get(name) is None else torch.from_numpy(np.ascontiguousarray(grads[name]))
                   for name, _ in wrapper.m.named_parameters(recurse=False)]
        return (None, torch.from_numpy(np.ascontiguousarray(dx)), *dparams)


class _Reference(torch.nn.Module):
    """A layer computed by its NumPy reference (the layer keeps its parameters and buffers)."""

    def __init__(self, m: torch.nn.Module, forward_fn, backward_fn):
        super().__init__()
        self.m, self.forward_fn, self.backward_fn = m, forward_fn, backward_fn

    def forward(self, x):
        params = [p for _, p in self.m.named_parameters(recurse=False)]
        if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params)):
            return _NumpyLayer.apply(self, x, *params)
        return torch.from_numpy(np.ascontiguousarray(self.forward_fn(self.m, x.detach().numpy())[0]))


_REFERENCE_OF = ((torch.nn.Conv2d, _conv, _conv_backward), (torch.nn.BatchNorm2d, _batch_norm, _batch_norm_backward),
                 (torch.nn.MaxPool2d, _max_pool, _max_pool_backward),
                 (torch.nn.AvgPool2d, _avg_pool, _avg_pool_backward),
                 (torch.nn.AdaptiveAvgPool2d, _adaptive_avg_pool, _adaptive_avg_pool_backward))


def training_mode(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` in training mode with dropout off (a training step then is a deterministic
    function of the weights and the batch, comparable across implementations); returns it."""
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.dropout._DropoutNd):
            m.eval()
    return model


def reference_network(model: torch.nn.Module, training: bool = False) -> torch.nn.Module:
    """A float64 copy of ``model`` whose convs, batch norms and pools are the NumPy references:
    eval mode, or with ``training`` the mode of :func:`training_mode` (batch statistics)."""
    net = cnn.convert(copy.deepcopy(model).cpu(), "torch").double()
    training_mode(net) if training else net.eval()

    def swap(parent):
        for name, child in parent.named_children():
            for kind, forward_fn, backward_fn in _REFERENCE_OF:
                if isinstance(child, kind):
                    setattr(parent, name, _Reference(child, forward_fn, backward_fn))
                    break
            else:
                swap(child)

    swap(net)
    return net


def reference_train_step(model: torch.nn.Module, x, grad_output) -> tuple[np.ndarray, ...]:
    """The float64 training step of ``model`` through the NumPy references: (logits, then the
    gradient of every parameter in ``model.parameters()`` order) for ``logits.backward(grad_output)``
    in :func:`training_mode`."""
    net = reference_network(model, training=True)
    params = list(net.parameters())
    y = net(torch.as_tensor(x).detach().cpu().double())
    grads = torch.autograd.grad(y, params, torch.as_tensor(grad_output).detach().cpu().double())
    return (y.detach().numpy(), *(g.numpy() for g in grads))


def reference_forward(model: torch.nn.Module, x) -> torch.Tensor:
    """The float64 forward of ``model`` on ``x`` through the NumPy references (see the module docstring)."""
    with torch.no_grad():
        return reference_network(model)(torch.as_tensor(x).detach().cpu().double())
