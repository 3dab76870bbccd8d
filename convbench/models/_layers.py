"""Pieces the torchvision-shaped networks share: the per-layer algorithm choice, the
conv -> batch norm -> activation block (torchvision's ``Conv2dNormActivation``, same child names
``0``/``1``/``2``) and torchvision's weight initialisation."""

from __future__ import annotations

import torch

from convbench import nn as cnn


def layer_choice(algorithm: str) -> str:
    """What the norm and pool twins get: they have no algorithms of their own, only auto/torch."""
    return "torch" if algorithm == "torch" else "auto"


def check_model_args(num_classes, algorithm) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if algorithm not in cnn.CONV_CHOICES:
        raise ValueError(f"algorithm must be one of {cnn.CONV_CHOICES}, got {algorithm!r}")


def conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, *, groups: int = 1, bias: bool = False,
         padding: int | None = None, algorithm: str = "auto") -> cnn.Conv2d:
    pad = (kernel - 1) // 2 if padding is None else padding
    return cnn.Conv2d(in_ch, out_ch, kernel, stride, pad, groups=groups, bias=bias, algorithm=algorithm)


class ConvNormActivation(torch.nn.Sequential):
    """conv (no bias) -> BatchNorm2d -> activation (None: none), as torchvision's
    ``Conv2dNormActivation``: children ``0`` (conv), ``1`` (norm), ``2`` (activation)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, *, groups: int = 1,
                 activation=torch.nn.ReLU, algorithm: str = "auto"):
        layers = [conv(in_ch, out_ch, kernel, stride, groups=groups, algorithm=algorithm),
                  cnn.BatchNorm2d(out_ch, algorithm=layer_choice(algorithm))]
        if activation is not None:
            layers.append(activation(inplace=True))
        super().__init__(*layers)
        self.out_channels = out_ch


def init_weights(model: torch.nn.Module, *, linear: str = "normal") -> None:
    """torchvision's initialisation: convs kaiming-normal (fan_out), norms 1/0; linear layers
    normal(0, 0.01) (ResNet: torch's default; EfficientNet: uniform on 1/sqrt(out))."""
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                torch.nn.init.zeros_(m.bias)
        elif isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm)):
            torch.nn.init.ones_(m.weight)
            torch.nn.init.zeros_(m.bias)
        elif isinstance(m, torch.nn.Linear) and linear != "default":
            if linear == "uniform":
                bound = 1.0 / m.out_features ** 0.5
                torch.nn.init.uniform_(m.weight, -bound, bound)
            else:
                torch.nn.init.normal_(m.weight, 0, 0.01)
            torch.nn.init.zeros_(m.bias)
