"""A small CNN for attacks and demonstrations (CIFAR/MNIST/digits-sized inputs)."""

from __future__ import annotations

import torch

from convbench import nn as cnn


class SmallCNN(torch.nn.Sequential):
    """conv3x3(C->w) BN ReLU maxpool2 | conv3x3(w->2w) BN ReLU | adaptive avg pool 2x2 | linear.

    Works on any input of at least 2x2 pixels; parameter names follow ``torch.nn.Sequential``
    (``0.weight``, ``1.running_mean``, ...)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 16, *, algorithm: str = "auto"):
        for name, value in (("in_channels", in_channels), ("num_classes", num_classes), ("width", width)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        a = algorithm
        super().__init__(
            cnn.Conv2d(in_channels, width, 3, padding=1, bias=False, algorithm=a),
            cnn.BatchNorm2d(width, algorithm="torch" if a == "torch" else "auto"),
            torch.nn.ReLU(),
            cnn.MaxPool2d(2, ceil_mode=True, algorithm="torch" if a == "torch" else "auto"),
            cnn.Conv2d(width, 2 * width, 3, padding=1, bias=False, algorithm=a),
            cnn.BatchNorm2d(2 * width, algorithm="torch" if a == "torch" else "auto"),
            torch.nn.ReLU(),
            cnn.AdaptiveAvgPool2d(2, algorithm="torch" if a == "torch" else "auto"),
            torch.nn.Flatten(),
            torch.nn.Linear(8 * width, num_classes),
        )


def small_cnn(in_channels: int = 1, num_classes: int = 10, width: int = 16, *, algorithm: str = "auto") -> SmallCNN:
    return SmallCNN(in_channels, num_classes, width, algorithm=algorithm)
