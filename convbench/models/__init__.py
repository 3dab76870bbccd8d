"""Networks built from :mod:`convbench.nn`.

* :func:`resnet18`, :func:`resnet50`, :func:`densenet121`, :func:`efficientnet_b0`,
  :func:`mobilenet_v2`: the torchvision architectures with torchvision's module names, parameter
  shapes and ``state_dict`` keys (a torchvision checkpoint loads with ``strict=True``), each with
  ``num_classes=`` and ``algorithm=`` ("auto", a conv algorithm with per-layer fallback, or
  "torch" for plain ``torch.nn.functional``);
* :func:`small_cnn`: the network of the attack suite and the digits demonstration;
* :func:`count_macs`: multiply-accumulates of the convolutions and linear layers, from the geometry;
* :func:`conv_layers` / :func:`distinct_conv_layers`: a network's conv geometries (with counts);
  :func:`reference_forward`: its float64 forward through the NumPy references, layer by layer.
"""

from .densenet import DenseNet, densenet121
from .efficientnet import EfficientNet, efficientnet_b0
from .layers import conv_layers, distinct_conv_layers, reference_forward, reference_network
from .macs import count_macs
from .mobilenet import MobileNetV2, mobilenet_v2
from .resnet import ResNet, resnet18, resnet50
from .small import SmallCNN, small_cnn

#: name -> constructor, the networks with torchvision twins
ZOO = {"resnet18": resnet18, "resnet50": resnet50, "densenet121": densenet121,
       "efficientnet_b0": efficientnet_b0, "mobilenet_v2": mobilenet_v2}

__all__ = ["DenseNet", "EfficientNet", "MobileNetV2", "ResNet", "SmallCNN", "ZOO", "conv_layers", "count_macs", "densenet121", "distinct_conv_layers",
           "efficientnet_b0", "mobilenet_v2", "reference_forward", "reference_network", "resnet18", "resnet50", "small_cnn"]
