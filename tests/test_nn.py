"""convbench.nn: the torch.nn twins and convert(), against torch's own modules.

Each twin is built with the same arguments as its torch class and the same weights; its
parameters, buffers and state_dict keys must be torch's, its outputs equal to torch's within the
kernels' tolerance, in training and evaluation mode, forward and backward.
"""

from __future__ import annotations

import copy

import pytest
import torch

import convbench.nn as cnn
from tests._compare import as_ref, assert_close, tolerance

DEV = "cuda" if torch.cuda.is_available() else "cpu"

#: (twin, torch class, constructor args, kwargs, input shape)
LAYERS = [
    (cnn.Conv2d, torch.nn.Conv2d, (4, 6, 3), dict(stride=2, padding=1), (2, 4, 9, 9)),
    (cnn.Conv2d, torch.nn.Conv2d, (4, 8, (3, 2)), dict(padding="same", dilation=(1, 2), groups=2, bias=False),
     (1, 4, 7, 8)),
    (cnn.Conv2d, torch.nn.Conv2d, (3, 5, 3), dict(padding=1, padding_mode="reflect"), (2, 3, 6, 6)),
    (cnn.Conv1d, torch.nn.Conv1d, (4, 6, 3), dict(stride=2, padding=2, dilation=2), (2, 4, 15)),
    (cnn.ConvTranspose2d, torch.nn.ConvTranspose2d, (6, 4, 4), dict(stride=2, padding=1), (2, 6, 5, 5)),
    (cnn.BatchNorm2d, torch.nn.BatchNorm2d, (6,), {}, (3, 6, 5, 5)),
    (cnn.BatchNorm2d, torch.nn.BatchNorm2d, (6,), dict(momentum=None, affine=False), (3, 6, 5, 5)),
    (cnn.InstanceNorm2d, torch.nn.InstanceNorm2d, (6,), dict(affine=True), (2, 6, 5, 5)),
    (cnn.LayerNorm, torch.nn.LayerNorm, ((6, 5, 5),), {}, (2, 6, 5, 5)),
    (cnn.GroupNorm, torch.nn.GroupNorm, (3, 6), {}, (2, 6, 5, 5)),
    (cnn.MaxPool2d, torch.nn.MaxPool2d, (3,), dict(stride=2, padding=1), (2, 4, 9, 9)),
    (cnn.AvgPool2d, torch.nn.AvgPool2d, (3,), dict(stride=2, ceil_mode=True, count_include_pad=False), (2, 4, 9, 9)),
    (cnn.AdaptiveAvgPool2d, torch.nn.AdaptiveAvgPool2d, ((2, 3),), {}, (2, 4, 7, 7)),
]
IDS = [f"{twin.__name__}-{i}" for i, (twin, *_rest) in enumerate(LAYERS)]


def _pair(twin, base, args, kwargs):
    torch.manual_seed(0)
    theirs = base(*args, **kwargs).to(DEV)
    ours = twin(*args, **kwargs).to(DEV)
    ours.load_state_dict(theirs.state_dict())
    with torch.no_grad():  # non-trivial affine parameters and running statistics
        for t in list(ours.parameters()) + [b for b in ours.buffers() if b.is_floating_point()]:
            t.uniform_(0.5, 1.5)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


@pytest.mark.parametrize("twin,base,args,kwargs,shape", LAYERS, ids=IDS)
def test_twin_has_torchs_parameters_and_state_dict(twin, base, args, kwargs, shape):
    ours, theirs = _pair(twin, base, args, kwargs)
    assert isinstance(ours, base)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [p.shape for p in ours.parameters()] == [p.shape for p in theirs.parameters()]
    assert "algorithm='auto'" in repr(ours)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("twin,base,args,kwargs,shape", LAYERS, ids=IDS)
def test_twin_forward_and_backward_match_torch(twin, base, args, kwargs, shape, training):
    ours, theirs = _pair(twin, base, args, kwargs)
    ours.train(training), theirs.train(training)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=g).to(DEV)
    xo, xt = x.clone().requires_grad_(), x.clone().requires_grad_()
    yo, yt = ours(xo), theirs(xt)
    tol = tolerance(torch.float32, 4 * 9 * 25)
    assert_close(yo, as_ref(yt), tol, f"{twin.__name__} forward")
    for name, b in theirs.named_buffers():  # running statistics moved the same way
        assert_close(dict(ours.named_buffers())[name], as_ref(b), tol, f"{twin.__name__} buffer {name}")
    dy = torch.randn(yt.shape, generator=g).to(DEV)
    yo.backward(dy), yt.backward(dy)
    assert_close(xo.grad, as_ref(xt.grad), tol, f"{twin.__name__} input gradient")
    for (name, po), pt in zip(ours.named_parameters(), theirs.parameters()):
        assert po.grad is not None, f"{twin.__name__}: no gradient for {name}"
        assert_close(po.grad, as_ref(pt.grad), tolerance(torch.float32, 3 * 9 * 25 * 4), f"{twin.__name__} d{name}")


def test_algorithm_torch_is_the_torch_module():
    ours, theirs = _pair(cnn.Conv2d, torch.nn.Conv2d, (4, 6, 3), {})
    ours.algorithm = "torch"
    x = torch.randn(1, 4, 6, 6, device=DEV)
    assert torch.equal(ours(x), theirs(x))


def test_forced_algorithm_falls_back_where_it_does_not_apply():
    conv = cnn.Conv2d(16, 16, 3, stride=2, padding=1, algorithm="winograd_f2").to(DEV)
    ref = torch.nn.Conv2d(16, 16, 3, stride=2, padding=1).to(DEV)
    ref.load_state_dict(conv.state_dict())
    x = torch.randn(1, 16, 8, 8, device=DEV)
    out = conv(x)
    assert conv.fell_back and "winograd_f2 -> auto" in conv.fell_back and "stride" in conv.fell_back
    assert_close(out, as_ref(ref(x)), tolerance(torch.float32, 144), "fallback output")
    strict = cnn.Conv2d(16, 16, 3, stride=2, algorithm="winograd_f2", fallback=None).to(DEV)
    with pytest.raises(ValueError, match="winograd_f2"):
        strict(x)
    same = cnn.Conv2d(16, 16, 3, padding=1, algorithm="winograd_f2").to(DEV)
    same(x)
    assert same.fell_back is None


def test_bad_algorithm_is_a_value_error():
    with pytest.raises(ValueError, match="algorithm"):
        cnn.Conv2d(3, 4, 3, algorithm="cudnn")
    with pytest.raises(ValueError, match="algorithm"):
        cnn.BatchNorm2d(4, algorithm="fft")
    with pytest.raises(ValueError, match="algorithm"):
        cnn.convert(torch.nn.Conv2d(3, 4, 3), "nope")


def _model():
    torch.manual_seed(3)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1, bias=False), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Sequential(torch.nn.Conv2d(16, 16, 3, padding=1, groups=16), torch.nn.GroupNorm(4, 16),
                            torch.nn.ReLU()),
        torch.nn.Conv2d(16, 32, 1), torch.nn.AvgPool2d(2), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(32, 5),
    ).to(DEV)


def test_convert_round_trip_keeps_weights_outputs_and_gradients():
    model = _model().eval()
    reference = copy.deepcopy(model)
    weight = model[0].weight
    converted = cnn.convert(model)
    assert converted is model and type(model[0]) is cnn.Conv2d and type(model[4][1]) is cnn.GroupNorm
    assert model[0].weight is weight, "convert must keep the very Parameter objects"
    assert type(model[9]) is torch.nn.Linear and type(model[2]) is torch.nn.ReLU
    assert list(model.state_dict()) == list(reference.state_dict())
    x = torch.rand(2, 3, 8, 8, device=DEV)
    xo, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    yo, yr = model(xo), reference(xr)
    tol = tolerance(torch.float32, 16 * 9 * 4)
    assert_close(yo, as_ref(yr), tol, "converted model output")
    yo.sum().backward(), yr.sum().backward()
    assert_close(xo.grad, as_ref(xr.grad), tol, "converted model input gradient")
    assert_close(model[0].weight.grad, as_ref(reference[0].weight.grad), tolerance(torch.float32, 2 * 64),
                 "converted model weight gradient")
    back = cnn.convert(model, "torch")
    assert type(back[0]) is torch.nn.Conv2d and type(back[4][1]) is torch.nn.GroupNorm
    assert not hasattr(back[0], "algorithm")
    assert torch.equal(back(x), reference(x))  # plain torch modules again: the very same computation
    forced = cnn.convert(_model(), "winograd_f4")
    assert all(m.algorithm == "winograd_f4" for m in forced.modules() if isinstance(m, cnn.Conv2d))
    assert all(m.algorithm == "auto" for m in forced.modules() if isinstance(m, cnn.BatchNorm2d))


def test_convert_a_single_layer_returns_its_twin():
    layer = torch.nn.Conv2d(3, 4, 3)
    twin = cnn.convert(layer, "direct")
    assert type(twin) is cnn.Conv2d and twin.algorithm == "direct" and twin.weight is layer.weight


def test_input_precision_and_config_reach_every_conv2d_call(monkeypatch):
    """The conv modules pass input_precision and config to kernels.conv2d; convert sets them on
    every convbench conv (fused ones too) and bad values are named."""
    from convbench import kernels

    seen = []
    real = kernels.conv2d

    def spy(*args, **kwargs):
        seen.append((kwargs["input_precision"], kwargs["config"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(kernels, "conv2d", spy)
    model = cnn.convert(_model().eval(), "auto", input_precision="tf32", config="heuristic")
    convs = [m for m in model.modules() if isinstance(m, cnn.Conv2d)]
    assert len(convs) == 3 and all((m.input_precision, m.config) == ("tf32", "heuristic") for m in convs)
    assert "input_precision='tf32'" in repr(convs[0]) and "config='heuristic'" in repr(convs[0])
    x = torch.rand(2, 3, 8, 8, device=DEV)
    y = model(x)
    assert seen == [("tf32", "heuristic")] * 3
    # tf32 products round operands to 10 mantissa bits: the tolerance of tf32 operands
    reference = cnn.convert(copy.deepcopy(model), "torch")
    assert_close(y, as_ref(reference(x)), tolerance(torch.float32, 16 * 9 * 4, input_precision="tf32"), "tf32 model")
    fused = cnn.convert(cnn.fuse(_model().eval()), "auto", config="tune")
    assert {m.config for m in fused.modules() if isinstance(m, cnn.FusedConv2d)} == {"tune"}
    kept = cnn.convert(model, "direct")  # None: leave them as they are
    assert all((m.input_precision, m.config) == ("tf32", "heuristic") for m in kept.modules()
               if isinstance(m, cnn.Conv2d))
    back = cnn.convert(model, "torch")
    assert not any(hasattr(m, "input_precision") for m in back.modules() if type(m) is torch.nn.Conv2d)
    with pytest.raises(ValueError, match="input_precision"):
        cnn.Conv2d(3, 4, 3, input_precision="fp8")
    with pytest.raises(ValueError, match="config"):
        cnn.Conv2d(3, 4, 3, config=3)
    with pytest.raises(ValueError, match="input_precision"):
        cnn.convert(_model(), "auto", input_precision="tf64")
    with pytest.raises(ValueError, match="algorithm='torch'"):
        cnn.convert(_model(), "torch", input_precision="tf32")
