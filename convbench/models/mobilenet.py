"""MobileNetV2 with torchvision's module names (``features.0.0``, ``features.1.conv.0.0``, ...,
``classifier.1``): inverted residual blocks (1x1 expand, 3x3 depthwise, 1x1 linear projection;
ReLU6), width multiplier 1.0."""

from __future__ import annotations

import torch

from convbench import nn as cnn

from ._layers import ConvNormActivation, check_model_args, conv, init_weights, layer_choice

#: (expansion t, output channels c, repeats n, first stride s), torchvision's table
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
            (6, 320, 1, 1))


class InvertedResidual(torch.nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int, *, algorithm: str = "auto"):
        super().__init__()
        self.stride = stride
        hidden = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers = []
        if expand_ratio != 1:
            layers.append(ConvNormActivation(inp, hidden, 1, activation=torch.nn.ReLU6, algorithm=algorithm))
        layers += [ConvNormActivation(hidden, hidden, 3, stride, groups=hidden, activation=torch.nn.ReLU6,
                                      algorithm=algorithm),
                   conv(hidden, oup, 1, algorithm=algorithm),
                   cnn.BatchNorm2d(oup, algorithm=layer_choice(algorithm))]
        self.conv = torch.nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(torch.nn.Module):
    def __init__(self, num_classes: int = 1000, *, dropout: float = 0.2, algorithm: str = "auto"):
        super().__init__()
        check_model_args(num_classes, algorithm)
        features = [ConvNormActivation(3, 32, 3, 2, activation=torch.nn.ReLU6, algorithm=algorithm)]
        inp = 32
        for t, c, n, s in SETTINGS:
            for i in range(n):
                features.append(InvertedResidual(inp, c, s if i == 0 else 1, t, algorithm=algorithm))
                inp = c
        features.append(ConvNormActivation(inp, 1280, 1, activation=torch.nn.ReLU6, algorithm=algorithm))
        self.features = torch.nn.Sequential(*features)
        self.avgpool = cnn.AdaptiveAvgPool2d((1, 1), algorithm=layer_choice(algorithm))
        self.classifier = torch.nn.Sequential(torch.nn.Dropout(dropout), torch.nn.Linear(1280, num_classes))
        init_weights(self)

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def mobilenet_v2(num_classes: int = 1000, *, algorithm: str = "auto") -> MobileNetV2:
    return MobileNetV2(num_classes, algorithm=algorithm)
