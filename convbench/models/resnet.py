"""ResNet-18 and ResNet-50 with torchvision's module names and ``state_dict`` keys (``conv1``,
``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``, ..., ``fc``), so a torchvision checkpoint
loads with ``strict=True``.  ResNet-50's bottleneck strides in its 3x3 conv (v1.5, as torchvision)."""

from __future__ import annotations

import torch

from convbench import nn as cnn

from ._layers import check_model_args, conv, init_weights, layer_choice


class BasicBlock(torch.nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample=None, *, algorithm: str = "auto"):
        super().__init__()
        norm = layer_choice(algorithm)
        self.conv1 = conv(inplanes, planes, 3, stride, algorithm=algorithm)
        self.bn1 = cnn.BatchNorm2d(planes, algorithm=norm)
        self.relu = torch.nn.ReLU(inplace=True)
        self.conv2 = conv(planes, planes, 3, algorithm=algorithm)
        self.bn2 = cnn.BatchNorm2d(planes, algorithm=norm)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(torch.nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample=None, *, algorithm: str = "auto"):
        super().__init__()
        norm = layer_choice(algorithm)
        self.conv1 = conv(inplanes, planes, 1, algorithm=algorithm)
        self.bn1 = cnn.BatchNorm2d(planes, algorithm=norm)
        self.conv2 = conv(planes, planes, 3, stride, algorithm=algorithm)
        self.bn2 = cnn.BatchNorm2d(planes, algorithm=norm)
        self.conv3 = conv(planes, planes * 4, 1, algorithm=algorithm)
        self.bn3 = cnn.BatchNorm2d(planes * 4, algorithm=norm)
        self.relu = torch.nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(torch.nn.Module):
    def __init__(self, block, layers: list[int], num_classes: int = 1000, *, algorithm: str = "auto"):
        super().__init__()
        check_model_args(num_classes, algorithm)
        self.algorithm = algorithm
        norm = layer_choice(algorithm)
        self.inplanes = 64
        self.conv1 = conv(3, 64, 7, 2, padding=3, algorithm=algorithm)
        self.bn1 = cnn.BatchNorm2d(64, algorithm=norm)
        self.relu = torch.nn.ReLU(inplace=True)
        self.maxpool = cnn.MaxPool2d(3, 2, 1, algorithm=norm)
        self.layer1 = self._stage(block, 64, layers[0], 1)
        self.layer2 = self._stage(block, 128, layers[1], 2)
        self.layer3 = self._stage(block, 256, layers[2], 2)
        self.layer4 = self._stage(block, 512, layers[3], 2)
        self.avgpool = cnn.AdaptiveAvgPool2d((1, 1), algorithm=norm)
        self.fc = torch.nn.Linear(512 * block.expansion, num_classes)
        init_weights(self, linear="default")

    def _stage(self, block, planes: int, blocks: int, stride: int) -> torch.nn.Sequential:
        a = self.algorithm
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = torch.nn.Sequential(conv(self.inplanes, planes * block.expansion, 1, stride, algorithm=a),
                                             cnn.BatchNorm2d(planes * block.expansion, algorithm=layer_choice(a)))
        layers = [block(self.inplanes, planes, stride, downsample, algorithm=a)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, algorithm=a) for _ in range(1, blocks)]
        return torch.nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(num_classes: int = 1000, *, algorithm: str = "auto") -> ResNet:
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, algorithm=algorithm)


def resnet50(num_classes: int = 1000, *, algorithm: str = "auto") -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, algorithm=algorithm)
