"""EfficientNet-B0 with torchvision's module names (``features.1.0.block.0.0``, ...,
``block.N.fc1`` for squeeze-and-excitation, ``classifier.1``): MBConv blocks (1x1 expand, kxk
depthwise, squeeze-and-excitation, 1x1 projection; SiLU), stochastic depth rising linearly to 0.2
over the blocks, width and depth multipliers 1.0."""

from __future__ import annotations

import torch

from convbench import nn as cnn

from ._layers import ConvNormActivation, check_model_args, conv, init_weights, layer_choice

#: (expand ratio, kernel, stride, input channels, output channels, layers), torchvision's B0 table
B0 = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
      (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1))


class SqueezeExcitation(torch.nn.Module):
    """x * sigmoid(fc2(silu(fc1(mean over H, W of x)))), the 1x1 convs with bias (torchvision's names)."""

    def __init__(self, channels: int, squeeze: int, *, algorithm: str = "auto"):
        super().__init__()
        self.avgpool = cnn.AdaptiveAvgPool2d(1, algorithm=layer_choice(algorithm))
        self.fc1 = conv(channels, squeeze, 1, bias=True, algorithm=algorithm)
        self.fc2 = conv(squeeze, channels, 1, bias=True, algorithm=algorithm)
        self.activation = torch.nn.SiLU(inplace=True)
        self.scale_activation = torch.nn.Sigmoid()

    def forward(self, x):
        return x * self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))


class StochasticDepth(torch.nn.Module):
    """Drop the residual branch per sample with probability ``p`` in training (scaled by
    1/(1-p)); the identity in evaluation."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        keep = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
        return x * keep.bernoulli_(1.0 - self.p).div_(1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class MBConv(torch.nn.Module):
    def __init__(self, expand: int, kernel: int, stride: int, inp: int, out: int, sd_prob: float, *,
                 algorithm: str = "auto"):
        super().__init__()
        self.use_res_connect = stride == 1 and inp == out
        hidden = inp * expand
        layers = []
        if hidden != inp:
            layers.append(ConvNormActivation(inp, hidden, 1, activation=torch.nn.SiLU, algorithm=algorithm))
        layers += [ConvNormActivation(hidden, hidden, kernel, stride, groups=hidden, activation=torch.nn.SiLU,
                                      algorithm=algorithm),
                   SqueezeExcitation(hidden, max(1, inp // 4), algorithm=algorithm),
                   ConvNormActivation(hidden, out, 1, activation=None, algorithm=algorithm)]
        self.block = torch.nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(sd_prob)
        self.out_channels = out

    def forward(self, x):
        y = self.block(x)
        return x + self.stochastic_depth(y) if self.use_res_connect else y


class EfficientNet(torch.nn.Module):
    def __init__(self, setting=B0, num_classes: int = 1000, *, dropout: float = 0.2,
                 stochastic_depth_prob: float = 0.2, algorithm: str = "auto"):
        super().__init__()
        check_model_args(num_classes, algorithm)
        layers = [ConvNormActivation(3, setting[0][3], 3, 2, activation=torch.nn.SiLU, algorithm=algorithm)]
        total, done = sum(s[5] for s in setting), 0
        for expand, kernel, stride, inp, out, n in setting:
            stage = []
            for i in range(n):
                stage.append(MBConv(expand, kernel, stride if i == 0 else 1, inp if i == 0 else out, out,
                                    stochastic_depth_prob * done / total, algorithm=algorithm))
                done += 1
            layers.append(torch.nn.Sequential(*stage))
        last = 4 * setting[-1][4]
        layers.append(ConvNormActivation(setting[-1][4], last, 1, activation=torch.nn.SiLU, algorithm=algorithm))
        self.features = torch.nn.Sequential(*layers)
        self.avgpool = cnn.AdaptiveAvgPool2d(1, algorithm=layer_choice(algorithm))
        self.classifier = torch.nn.Sequential(torch.nn.Dropout(dropout, inplace=True), torch.nn.Linear(last, num_classes))
        init_weights(self, linear="uniform")

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def efficientnet_b0(num_classes: int = 1000, *, algorithm: str = "auto") -> EfficientNet:
    return EfficientNet(B0, num_classes, algorithm=algorithm)
