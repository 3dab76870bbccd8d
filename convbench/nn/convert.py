"""``convert(model, algorithm)``: swap a torch model's layers for their convbench twins, in place.

A twin subclasses its torch class and adds attributes only, so a swap is a new object of the
other class carrying the very same parameters, buffers, hooks and attributes (the Parameter
objects are shared: an optimizer built on the model before the swap still updates it).
"""

from __future__ import annotations

import torch

from .modules import CONV_CHOICES, TWINS, _ConvAlgorithm

#: twin -> its torch class (for converting back)
TORCH_OF = {twin: base for base, twin in TWINS.items()}
_OWN_ATTRIBUTES = ("algorithm", "fallback", "fell_back", "input_precision", "config")


def _retyped(module: torch.nn.Module, cls: type) -> torch.nn.Module:
    new = cls.__new__(cls)
    state = dict(module.__dict__)
    for name in ("_parameters", "_buffers", "_modules"):
        state[name] = dict(state[name])  # the same tensors, in a dict of the new module's own
    if cls in TORCH_OF.values():
        for name in _OWN_ATTRIBUTES:
            state.pop(name, None)
    new.__dict__.update(state)
    return new


def _swap(module: torch.nn.Module, algorithm: str, fallback) -> torch.nn.Module:
    kind = type(module)
    if algorithm == "torch":
        return _retyped(module, TORCH_OF[kind]) if kind in TORCH_OF else module
    twin = TWINS.get(kind, kind if kind in TORCH_OF else None)
    if twin is None:
        return module
    new = _retyped(module, twin) if twin is not kind else module
    is_conv = issubclass(twin, _ConvAlgorithm)
    new._set_algorithm(algorithm if is_conv or algorithm == "auto" else "auto")
    if is_conv:
        new._set_fallback(fallback)
        new.fell_back = None
    return new


def convert(model: torch.nn.Module, algorithm: str = "auto", *, fallback: str | None = "auto",
            input_precision: str | None = None, config=None) -> torch.nn.Module:
    """Swap every ``torch.nn`` layer with a convbench twin (``Conv1d``, ``Conv2d``,
    ``ConvTranspose2d``, ``BatchNorm2d``, ``InstanceNorm2d``, ``LayerNorm``, ``GroupNorm``,
    ``MaxPool2d``, ``AvgPool2d``, ``AdaptiveAvgPool2d``) for the twin, in place, keeping weights.

    ``algorithm``: ``"auto"``; a conv2d algorithm name (convolutions take it, with ``fallback``
    where it does not apply; the other layers take ``"auto"``); or ``"torch"``, which turns twins
    back into plain ``torch.nn`` modules.  Already converted layers are re-set.  Exact classes
    only: a user's subclass of ``torch.nn.Conv2d`` keeps its own forward.  ``input_precision``
    and ``config`` (None: leave as they are) are set on every convbench convolution of the
    result, fused ones (:class:`convbench.nn.FusedConv2d`) included.  Returns the model (a new
    object only when ``model`` itself is one of the layers).
    """
    if algorithm not in CONV_CHOICES:
        raise ValueError(f"algorithm must be one of {CONV_CHOICES}, got {algorithm!r}")
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if algorithm == "torch" and (input_precision is not None or config is not None):
        raise ValueError("input_precision and config apply to convbench's kernels, not to algorithm='torch'")
    for parent in list(model.modules()):
        for name, child in list(parent._modules.items()):
            if child is not None:
                swapped = _swap(child, algorithm, fallback)
                if swapped is not child:
                    parent._modules[name] = swapped
    model = _swap(model, algorithm, fallback)
    if input_precision is not None or config is not None:
        for m in model.modules():
            if isinstance(m, _ConvAlgorithm):
                m._set_launch(m.input_precision if input_precision is None else input_precision,
                              m.config if config is None else config)
    return model
