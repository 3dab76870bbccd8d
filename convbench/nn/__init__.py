"""``torch.nn`` twins on convbench's kernels, and :func:`convert` for whole models.

    model = torchvision_or_any_model()
    convbench.nn.convert(model)                  # its conv/norm/pool layers now run our kernels
    convbench.nn.convert(model, "implicit_gemm") # force an algorithm (others fall back per layer)
    convbench.nn.convert(model, "torch")         # back to plain torch.nn modules
    fused = convbench.nn.fuse(model.eval())      # batch norm folded, conv-bn-add-act chains as one call
"""

from .convert import convert
from .fuse import FusedConv2d, fuse
from .modules import (CONV_CHOICES, TWINS, AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Conv1d, Conv2d,
                      ConvTranspose2d, GroupNorm, InstanceNorm2d, LayerNorm, MaxPool2d)

__all__ = ["AdaptiveAvgPool2d", "AvgPool2d", "BatchNorm2d", "CONV_CHOICES", "Conv1d", "Conv2d", "ConvTranspose2d",
           "FusedConv2d", "GroupNorm", "InstanceNorm2d", "LayerNorm", "MaxPool2d", "TWINS", "convert", "fuse"]
