"""convbench.nn.fuse: batch norm folded into the conv before it, conv -> bn -> (+ residual) ->
activation chains as one conv2d call with an epilogue; outputs equal the unfused network within
tolerance (float64 reference), for the five torchvision networks and for a plain torch model."""

from __future__ import annotations

import copy
import os

import pytest
import torch
import torch.nn.functional as F

from convbench import models
from convbench import nn as cnn
from tests._compare import as_ref, assert_close, tolerance

DEV = "cuda" if torch.cuda.is_available() else "cpu"


def _with_stats(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            if m.track_running_stats:
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.weight.data.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(m.num_features, generator=g))
    return model.eval()


def _float64(model):
    return cnn.convert(copy.deepcopy(model), "torch").double()


#: name -> (fused chains, batch norms left unfused): DenseNet's pre-activation norms follow a concat
EXPECTED = {"resnet18": (20, 0), "resnet50": (53, 0), "densenet121": (59, 62), "efficientnet_b0": (81, 0),
            "mobilenet_v2": (52, 0)}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fused_networks_match_the_unfused_float64_forward(name):
    torch.manual_seed(0)
    model = _with_stats(models.ZOO[name](algorithm="torch"))
    fused = cnn.fuse(model, algorithm="torch")
    chains = sum(isinstance(m, cnn.FusedConv2d) for m in fused.modules())
    norms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert (chains, norms) == EXPECTED[name]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        y, ref = fused(x), _float64(model)(x.double())
    depth = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    assert_close(y, as_ref(ref), tolerance(torch.float32, 4608) * depth, name)


@pytest.mark.slow
@pytest.mark.skipif(DEV == "cpu" and os.environ.get("CONVBENCH_NETWORK_TESTS") != "1",
                    reason="12 s under the interpreter; the default run takes the fused resnet18 through our kernels "
                           "in tests/test_networks.py::test_network_suite_runs_end_to_end (CONVBENCH_NETWORK_TESTS=1 "
                           "runs this one too)")
def test_fused_resnet18_through_our_kernels():
    """Every fused chain through convbench's conv2d with its epilogue (auto: the GEMM family and
    direct kernels fuse), against the float64 forward of the unfused network (batch-norm
    statistics drawn at random, where the network suite calibrates them)."""
    torch.manual_seed(0)
    model = _with_stats(models.resnet18()).to(DEV)
    fused = cnn.fuse(model)
    assert all(m.algorithm == "auto" for m in fused.modules() if isinstance(m, cnn.FusedConv2d))
    x = torch.randn(1, 3, 16, 16, device=DEV)
    with torch.no_grad():
        y = fused(x)
        ref = _float64(model.cpu())(x.cpu().double())
    assert_close(y, as_ref(ref), tolerance(torch.float32, 4608) * 20, "fused resnet18")


class _Block(torch.nn.Module):
    """A plain torch model: conv-bn-relu, conv-bn + identity (torch.add) -> F.relu, a conv with a
    second user (not fused), and a bare conv."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1, bias=False), torch.nn.BatchNorm2d(8),
                                     torch.nn.ReLU())
        self.conv = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.shared = torch.nn.Conv2d(8, 8, 1)
        self.head = torch.nn.Conv2d(8, 2, 1)

    def forward(self, x):
        h = self.a(x)
        y = F.relu(torch.add(self.bn(self.conv(h)), h))
        s = self.shared(y)
        return self.head(s * torch.sigmoid(s))


def test_plain_torch_model_and_what_is_left_alone():
    torch.manual_seed(1)
    model = _with_stats(_Block())
    fused = cnn.fuse(model)
    kinds = {n: type(m).__name__ for n, m in fused.named_children()}
    assert sum(k == "FusedConv2d" for k in kinds.values()) == 2, kinds  # a.0+1+2, conv+bn+add+relu
    assert "shared" in kinds and "head" in kinds  # two users / nothing after it: left as they are
    x = torch.randn(2, 4, 6, 6)
    with torch.no_grad():
        assert_close(fused(x), as_ref(_float64(model)(x.double())), tolerance(torch.float32, 72) * 8)
    # the fused model owns its (folded) weights: the original is untouched and independent
    before = fused(x).detach().clone()
    with torch.no_grad():
        model.conv.weight.zero_()
        assert torch.equal(fused(x), before)


class _Broadcasting(torch.nn.Module):
    """conv-bn + a per-channel parameter, conv-bn + one image's map for the batch, conv-bn with
    batch statistics in eval mode (track_running_stats=False): valid torch models whose adds
    broadcast or whose norm cannot be folded."""

    def __init__(self):
        super().__init__()
        self.c1, self.b1 = torch.nn.Conv2d(4, 6, 3, padding=1), torch.nn.BatchNorm2d(6)
        self.t = torch.nn.Parameter(torch.randn(1, 6, 1, 1))
        self.c2, self.b2 = torch.nn.Conv2d(6, 6, 1), torch.nn.BatchNorm2d(6)
        self.c3, self.b3 = torch.nn.Conv2d(6, 6, 1), torch.nn.BatchNorm2d(6, track_running_stats=False)

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)) + self.t)
        y = F.silu(self.b2(self.c2(y)) + y[:1])
        return F.relu(self.b3(self.c3(y)))


def test_broadcasting_adds_and_batch_statistics_norms_keep_the_model_s_outputs():
    torch.manual_seed(2)
    model = _with_stats(_Broadcasting())
    fused = cnn.fuse(model)
    kinds = [type(m).__name__ for m in fused.children()]
    assert kinds.count("FusedConv2d") == 2 and "BatchNorm2d" in kinds, kinds  # b3 uses batch statistics
    x = torch.randn(3, 4, 5, 5)
    with torch.no_grad():
        assert_close(fused(x), as_ref(_float64(model)(x.double())), tolerance(torch.float32, 36) * 8)


def test_fuse_refuses_training_mode_and_bad_algorithms():
    with pytest.raises(ValueError, match="eval"):
        cnn.fuse(_Block().train())
    with pytest.raises(ValueError, match="algorithm"):
        cnn.fuse(_Block().eval(), algorithm="magic")
    with pytest.raises(ValueError, match="activation"):
        cnn.FusedConv2d(2, 2, 1, activation="tanh")
