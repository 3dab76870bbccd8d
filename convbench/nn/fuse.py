"""``fuse(model)``: fold eval-mode batch norms into the convolutions before them and fuse
conv -> bn -> (+ residual) -> activation chains into single conv2d calls with an epilogue.

The model is traced with ``torch.fx`` (convs, norms, pools and activations kept as leaf modules);
in the graph, a ``Conv2d`` whose only user is an eval-mode ``BatchNorm2d`` takes the norm into
its weights (``w * gamma / sqrt(var + eps)``, bias ``(b - mean) * gamma / sqrt(var + eps) +
beta``); then, while the chain's value has one user, an ``add`` of another tensor becomes the
epilogue's residual and a ReLU / ReLU6 / SiLU / Sigmoid (module or function) its activation.
Each chain becomes one :class:`FusedConv2d` module (a :class:`convbench.nn.Conv2d` with
``activation`` and a residual input), so the fused network makes one kernel launch per chain
where the unfused one makes up to four.  An add whose other operand broadcasts (not the output's
shape) is applied after the conv at run time, as the unfused graph did.  Returns a new
``torch.fx.GraphModule`` sharing nothing with ``model`` (the folded weights are new tensors); the
model must be in eval mode.
"""

from __future__ import annotations

import copy
import operator

import torch
import torch.fx
import torch.nn.functional as F

from convbench import kernels
from convbench.kernels.conv import TORCH_ACTIVATIONS
from convbench.reference.geometry import conv_out_size

from .modules import CONV_CHOICES, Conv2d

ACTIVATION_MODULES = {torch.nn.ReLU: "relu", torch.nn.ReLU6: "relu6", torch.nn.SiLU: "silu",
                      torch.nn.Sigmoid: "sigmoid"}
ACTIVATION_FUNCTIONS = {F.relu: "relu", torch.relu: "relu", F.relu6: "relu6", F.silu: "silu",
                        torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid"}
_ADDS = (operator.add, torch.add, operator.iadd)


class FusedConv2d(Conv2d):
    """A convolution with batch norm folded in and ``act(conv(x) + residual)`` in one call.
    ``algorithm="torch"`` computes the same thing with ``torch.nn.functional`` ops (unfused)."""

    def __init__(self, *args, activation: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if activation is not None and activation not in kernels.ACTIVATIONS:
            raise ValueError(f"activation must be None or one of {kernels.ACTIVATIONS}, got {activation!r}")
        self.activation = activation

    def forward(self, input, residual=None):
        if residual is not None and residual.shape != self._output_shape(input):
            # an add that broadcasts (a per-channel term, one image's map for a batch): torch's
            # add after the conv, exactly as the unfused graph computed it
            return TORCH_ACTIVATIONS[self.activation](self._conv_forward(input, self.weight, self.bias) + residual)
        return self._conv_forward(input, self.weight, self.bias, activation=self.activation, residual=residual)

    def _output_shape(self, input) -> tuple:
        """The convolution's output shape for ``input`` (fuse only folds numeric zero padding)."""
        hw = tuple(conv_out_size(n, k, s, p, p, d) for n, k, s, p, d in
                   zip(input.shape[-2:], self.kernel_size, self.stride, self.padding, self.dilation))
        return (*input.shape[:-3], self.out_channels, *hw)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", activation={self.activation!r}"


class _Tracer(torch.fx.Tracer):
    """Every conv, norm, pool and activation module is a leaf (convbench's twins included)."""

    def is_leaf_module(self, m: torch.nn.Module, qualname: str) -> bool:
        if isinstance(m, (torch.nn.modules.conv._ConvNd, torch.nn.modules.batchnorm._NormBase,
                          torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.Linear, torch.nn.Dropout,
                          torch.nn.modules.pooling._MaxPoolNd, torch.nn.modules.pooling._AvgPoolNd,
                          torch.nn.modules.pooling._AdaptiveAvgPoolNd, *ACTIVATION_MODULES)):
            return True
        return super().is_leaf_module(m, qualname)


def _fold(conv: torch.nn.Conv2d, bn: torch.nn.BatchNorm2d | None, activation, algorithm) -> FusedConv2d:
    fused = FusedConv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                        conv.dilation, conv.groups, True, conv.padding_mode, activation=activation,
                        algorithm=algorithm, input_precision=getattr(conv, "input_precision", "ieee"),
                        config=getattr(conv, "config", None), device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        w = conv.weight.detach().double()
        b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(conv.out_channels, dtype=torch.float64,
                                                                                   device=w.device)
        if bn is not None:
            scale = (bn.weight.detach().double() if bn.weight is not None else 1.0) / torch.sqrt(
                bn.running_var.double() + bn.eps)
            shift = bn.bias.detach().double() if bn.bias is not None else 0.0
            w = w * scale.reshape(-1, 1, 1, 1)
            b = (b - bn.running_mean.double()) * scale + shift
        fused.weight.copy_(w)
        fused.bias.copy_(b)
    return fused


def _activation_of(gm: torch.fx.GraphModule, node: torch.fx.Node) -> str | None:
    if node.op == "call_module":
        return ACTIVATION_MODULES.get(type(gm.get_submodule(node.target)))
    if node.op == "call_function" and len(node.args) == 1 and not node.kwargs:
        return ACTIVATION_FUNCTIONS.get(node.target)
    if node.op == "call_method" and node.target in ("relu", "relu_", "sigmoid") and len(node.args) == 1:
        return "sigmoid" if node.target == "sigmoid" else "relu"
    return None


def _single_user(node: torch.fx.Node):
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def fuse(model: torch.nn.Module, *, algorithm: str | None = None) -> torch.fx.GraphModule:
    """The fused twin of ``model`` (eval mode): see the module docstring.  ``algorithm``: for the
    fused convolutions (default: each conv's own, ``auto`` for plain torch convs)."""
    if model.training:
        raise ValueError("fuse folds batch norm with its running statistics: call model.eval() first")
    if algorithm is not None and algorithm not in CONV_CHOICES:
        raise ValueError(f"algorithm must be one of {CONV_CHOICES}, got {algorithm!r}")
    model = copy.deepcopy(model)
    graph = _Tracer().trace(model)
    gm = torch.fx.GraphModule(model, graph, type(model).__name__ + "Fused")
    modules = dict(gm.named_modules())
    count = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or type(modules.get(node.target)) not in (torch.nn.Conv2d, Conv2d):
            continue
        conv = modules[node.target]
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            continue
        last, bn, residual, activation = node, None, None, None
        nxt = _single_user(last)
        if nxt is not None and nxt.op == "call_module" and isinstance(modules.get(nxt.target), torch.nn.BatchNorm2d):
            cand = modules[nxt.target]
            if not cand.training and cand.track_running_stats and cand.running_mean is not None:
                bn, last = cand, nxt
        nxt = _single_user(last)
        if (nxt is not None and nxt.op == "call_function" and nxt.target in _ADDS and len(nxt.args) == 2
                and not nxt.kwargs and all(isinstance(a, torch.fx.Node) for a in nxt.args)):
            residual = nxt.args[1] if nxt.args[0] is last else nxt.args[0]
            last = nxt
        nxt = _single_user(last)
        if nxt is not None and _activation_of(gm, nxt) is not None:
            activation, last = _activation_of(gm, nxt), nxt
        if last is node:
            continue  # a bare conv: nothing to fuse
        own = conv.algorithm if isinstance(conv, Conv2d) else "auto"
        name = f"fused_{count}"
        count += 1
        gm.add_submodule(name, _fold(conv, bn, activation, algorithm or own))
        with gm.graph.inserting_after(last):
            args = (node.args[0],) + ((residual,) if residual is not None else ())
            new = gm.graph.call_module(name, args)
        last.replace_all_uses_with(new)
        for dead in reversed(_chain(node, last)):
            gm.graph.erase_node(dead)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.graph.lint()
    gm.recompile()
    return gm


def _chain(first: torch.fx.Node, last: torch.fx.Node) -> list:
    """The nodes from ``first`` to ``last`` along single users."""
    out = [first]
    while out[-1] is not last:
        out.append(_single_user(out[-1]))
    return out
