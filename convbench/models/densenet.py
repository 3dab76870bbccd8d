"""DenseNet-121 with torchvision's module names (``features.conv0``, ``features.denseblock1.denselayer1.norm1``,
``features.transition1.conv``, ``features.norm5``, ``classifier``): dense blocks of BN-ReLU-1x1
(bottleneck 4 x growth) -> BN-ReLU-3x3 (growth 32) layers whose outputs are concatenated, and
BN-ReLU-1x1-avgpool transitions that halve the channels."""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F

from convbench import nn as cnn

from ._layers import check_model_args, conv, init_weights, layer_choice


class DenseLayer(torch.nn.Module):
    def __init__(self, inp: int, growth: int, bn_size: int, *, algorithm: str = "auto"):
        super().__init__()
        norm = layer_choice(algorithm)
        self.norm1 = cnn.BatchNorm2d(inp, algorithm=norm)
        self.relu1 = torch.nn.ReLU(inplace=True)
        self.conv1 = conv(inp, bn_size * growth, 1, algorithm=algorithm)
        self.norm2 = cnn.BatchNorm2d(bn_size * growth, algorithm=norm)
        self.relu2 = torch.nn.ReLU(inplace=True)
        self.conv2 = conv(bn_size * growth, growth, 3, algorithm=algorithm)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(features, 1)
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class DenseBlock(torch.nn.ModuleDict):
    def __init__(self, layers: int, inp: int, growth: int, bn_size: int, *, algorithm: str = "auto"):
        super().__init__()
        for i in range(layers):
            self.add_module(f"denselayer{i + 1}", DenseLayer(inp + i * growth, growth, bn_size, algorithm=algorithm))

    def forward(self, x):
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(torch.nn.Sequential):
    def __init__(self, inp: int, out: int, *, algorithm: str = "auto"):
        norm = layer_choice(algorithm)
        super().__init__(OrderedDict([("norm", cnn.BatchNorm2d(inp, algorithm=norm)),
                                      ("relu", torch.nn.ReLU(inplace=True)),
                                      ("conv", conv(inp, out, 1, algorithm=algorithm)),
                                      ("pool", cnn.AvgPool2d(2, 2, algorithm=norm))]))


class DenseNet(torch.nn.Module):
    def __init__(self, growth: int = 32, blocks=(6, 12, 24, 16), init_features: int = 64, bn_size: int = 4,
                 num_classes: int = 1000, *, algorithm: str = "auto"):
        super().__init__()
        check_model_args(num_classes, algorithm)
        norm = layer_choice(algorithm)
        parts = OrderedDict([("conv0", conv(3, init_features, 7, 2, padding=3, algorithm=algorithm)),
                             ("norm0", cnn.BatchNorm2d(init_features, algorithm=norm)),
                             ("relu0", torch.nn.ReLU(inplace=True)),
                             ("pool0", cnn.MaxPool2d(3, 2, 1, algorithm=norm))])
        channels = init_features
        for i, n in enumerate(blocks):
            parts[f"denseblock{i + 1}"] = DenseBlock(n, channels, growth, bn_size, algorithm=algorithm)
            channels += n * growth
            if i != len(blocks) - 1:
                parts[f"transition{i + 1}"] = Transition(channels, channels // 2, algorithm=algorithm)
                channels //= 2
        parts["norm5"] = cnn.BatchNorm2d(channels, algorithm=norm)
        self.features = torch.nn.Sequential(parts)
        self.avgpool = cnn.AdaptiveAvgPool2d((1, 1), algorithm=norm)
        self.classifier = torch.nn.Linear(channels, num_classes)
        init_weights(self, linear="default")
        torch.nn.init.zeros_(self.classifier.bias)

    def forward(self, x):
        x = F.relu(self.features(x))
        return self.classifier(torch.flatten(self.avgpool(x), 1))


def densenet121(num_classes: int = 1000, *, algorithm: str = "auto") -> DenseNet:
    return DenseNet(32, (6, 12, 24, 16), 64, 4, num_classes, algorithm=algorithm)
