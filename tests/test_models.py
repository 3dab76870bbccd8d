"""convbench.models: the torchvision architectures built from convbench.nn.

Parameter counts and MACs against torchvision's published figures; torchvision's state_dict key
names; the forward through torch (algorithm="torch") against float64; the forward through
convbench's kernels against torch and float64.  Under the CPU interpreter a whole network is
slow (9-22 s per forward at 1x3x32x32 on the 2-core VM), so the default run takes ResNet-18
through our kernels and the rest only with ``CONVBENCH_NETWORK_TESTS=1`` or on a GPU.
"""

from __future__ import annotations

import copy
import os

import pytest
import torch

from convbench import models
from convbench import nn as cnn
from tests._compare import as_ref, assert_close, tolerance

HAS_CUDA = torch.cuda.is_available()
DEV = "cuda" if HAS_CUDA else "cpu"
ALL_NETWORKS = HAS_CUDA or os.environ.get("CONVBENCH_NETWORK_TESTS") == "1"

#: torchvision's published parameter counts and GFLOPS (multiply-accumulates) at 1x3x224x224
PUBLISHED = {"resnet18": (11_689_512, 1.81), "resnet50": (25_557_032, 4.09), "densenet121": (7_978_856, 2.83),
             "efficientnet_b0": (5_288_548, 0.39), "mobilenet_v2": (3_504_872, 0.30)}

#: state_dict keys of the torchvision models (a sample per kind of block)
TORCHVISION_KEYS = {
    "resnet18": ["conv1.weight", "bn1.running_var", "bn1.num_batches_tracked", "layer1.0.conv1.weight",
                 "layer2.0.downsample.0.weight", "layer2.0.downsample.1.bias", "layer4.1.bn2.weight", "fc.bias"],
    "resnet50": ["layer1.0.conv3.weight", "layer1.0.bn3.running_mean", "layer1.0.downsample.0.weight",
                 "layer3.5.conv2.weight", "layer4.2.bn3.bias", "fc.weight"],
    "densenet121": ["features.conv0.weight", "features.norm0.running_mean",
                    "features.denseblock1.denselayer1.norm1.weight", "features.denseblock1.denselayer6.conv2.weight",
                    "features.transition1.norm.bias", "features.transition3.conv.weight",
                    "features.denseblock4.denselayer16.conv2.weight", "features.norm5.running_var", "classifier.weight"],
    "efficientnet_b0": ["features.0.0.weight", "features.0.1.running_mean", "features.1.0.block.0.0.weight",
                        "features.1.0.block.1.fc1.weight", "features.1.0.block.1.fc2.bias",
                        "features.1.0.block.2.1.weight", "features.2.0.block.0.0.weight",
                        "features.2.0.block.3.0.weight", "features.6.3.block.2.fc1.bias", "features.8.0.weight",
                        "classifier.1.weight"],
    "mobilenet_v2": ["features.0.0.weight", "features.1.conv.0.0.weight", "features.1.conv.1.weight",
                     "features.1.conv.2.running_var", "features.2.conv.0.0.weight", "features.2.conv.3.bias",
                     "features.17.conv.2.weight", "features.18.0.weight", "features.18.1.bias", "classifier.1.weight"],
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_counts_macs_and_state_dict_keys(name):
    model = models.ZOO[name]()
    params, gmacs = PUBLISHED[name]
    assert sum(p.numel() for p in model.parameters()) == params
    macs = models.count_macs(model, (1, 3, 224, 224))
    assert abs(macs / 1e9 - gmacs) <= 0.02 * gmacs, f"{name}: {macs / 1e9:.3f} GMACs, published {gmacs}"
    keys = model.state_dict().keys()
    missing = [k for k in TORCHVISION_KEYS[name] if k not in keys]
    assert not missing, f"{name} lacks torchvision keys {missing}"
    # a state dict round-trips strictly into a fresh model (as a torchvision checkpoint would)
    other = models.ZOO[name](algorithm="torch")
    other.load_state_dict(model.state_dict(), strict=True)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))


def test_count_macs_scales_with_batch_and_leaves_the_model_alone():
    model = models.resnet18()
    before = copy.deepcopy(model.state_dict())
    one, four = models.count_macs(model, (1, 3, 64, 64)), models.count_macs(model, (4, 3, 64, 64))
    assert four == 4 * one
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert next(model.parameters()).device.type == "cpu"
    with pytest.raises(ValueError, match="input_shape"):
        models.count_macs(model, (1, 3, 0, 8))


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="num_classes"):
        models.resnet50(num_classes=0)
    with pytest.raises(ValueError, match="algorithm"):
        models.mobilenet_v2(algorithm="nope")


def test_num_classes_and_algorithm_reach_every_layer():
    model = models.efficientnet_b0(num_classes=7, algorithm="implicit_gemm")
    assert model.classifier[1].out_features == 7
    convs = [m for m in model.modules() if isinstance(m, cnn.Conv2d)]
    assert convs and all(m.algorithm == "implicit_gemm" for m in convs)
    norms = [m for m in model.modules() if isinstance(m, cnn.BatchNorm2d)]
    assert norms and all(m.algorithm == "auto" for m in norms)
    plain = models.efficientnet_b0(algorithm="torch")
    assert all(m.algorithm == "torch" for m in plain.modules() if isinstance(m, cnn.Conv2d))


def _float64_twin(model):
    """The same network and weights in float64 through torch: the reference forward."""
    return cnn.convert(copy.deepcopy(model), "torch").double()


def _random_stats(model, seed):
    """Non-trivial running statistics, so eval-mode batch norm is not the identity."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
    return model


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_torch_forward_matches_float64(name):
    torch.manual_seed(0)
    model = _random_stats(models.ZOO[name](algorithm="torch"), 1).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        y, ref = model(x), _float64_twin(model)(x.double())
    assert y.shape == (2, 1000)
    assert_close(y, as_ref(ref), tolerance(torch.float32, 4096) * 4, name)


NETWORKS_THROUGH_KERNELS = ["resnet18"] + (["mobilenet_v2", "efficientnet_b0", "resnet50", "densenet121"]
                                           if ALL_NETWORKS else [])


@pytest.mark.slow
@pytest.mark.parametrize("name", NETWORKS_THROUGH_KERNELS)
def test_forward_through_our_kernels_matches_torch_and_float64(name):
    """auto: every conv, norm and pool of the network on convbench's kernels, against the same
    weights through torch and through float64.  The tolerance: fp32 over the longest reduction
    (the widest 3x3 conv's C*R*S), times the network depth (each layer's rounding carries
    forward, amplified at most by a batch norm's 1/std)."""
    torch.manual_seed(0)
    model = _random_stats(models.ZOO[name](), 2).eval().to(DEV)
    # 16x16 still reaches every stage of the others (the last ones at 1x1); DenseNet's third
    # transition pools 2x2, so it needs 32x32 (at 16x16 its input there is 1x1: torch refuses too)
    size = 32 if HAS_CUDA or name == "densenet121" else 16
    x = torch.randn(1, 3, size, size, device=DEV)
    depth = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    longest = max(m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
                  for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        ours = model(x)
        theirs = cnn.convert(copy.deepcopy(model), "torch")(x)
        ref = _float64_twin(model.cpu())(x.cpu().double())
    tol = tolerance(torch.float32, longest) * depth
    assert_close(ours, as_ref(ref), tol, f"{name} ours vs float64 (depth {depth})")
    assert_close(theirs, as_ref(ref), tol, f"{name} torch vs float64")
