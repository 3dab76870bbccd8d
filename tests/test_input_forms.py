"""Every input form ``torch.nn.functional`` takes, for every public op, against torch itself.

Unbatched inputs ((C, H, W) for the 2-D ops, (C, L) for the 1-D ones) give the unbatched result;
an empty batch, or another zero-size dimension torch allows, gives an output of torch's shape and
dtype without launching a kernel (a launch is made to fail here); a form torch refuses is refused.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from convbench import kernels

R = torch.randn


def _w(*shape):
    return R(*shape) / 4


#: name -> (op name, args builder); each builder returns (args, kwargs) for a fresh draw
UNBATCHED = {
    "conv2d": ("conv2d", lambda: ((R(3, 8, 7), _w(4, 3, 3, 3), R(4)), dict(padding=1))),
    "conv2d-groups": ("conv2d", lambda: ((R(4, 6, 6), _w(4, 1, 3, 3)), dict(groups=4, stride=2))),
    "conv1d": ("conv1d", lambda: ((R(3, 9), _w(5, 3, 3)), dict(padding="same"))),
    "conv_transpose2d": ("conv_transpose2d", lambda: ((R(3, 5, 5), _w(3, 4, 3, 3)), dict(stride=2))),
    "max_pool2d": ("max_pool2d", lambda: ((R(3, 8, 8), 3), dict(stride=2, padding=1))),
    "avg_pool2d": ("avg_pool2d", lambda: ((R(3, 8, 8), 2), {})),
    "adaptive_avg_pool2d": ("adaptive_avg_pool2d", lambda: ((R(3, 8, 7), (3, 2)), {})),
    "max_pool1d": ("max_pool1d", lambda: ((R(3, 9), 2), {})),
    "avg_pool1d": ("avg_pool1d", lambda: ((R(3, 9), 3), dict(stride=2))),
    "adaptive_avg_pool1d": ("adaptive_avg_pool1d", lambda: ((R(3, 9), 4), {})),
    "group_norm": ("group_norm", lambda: ((R(4, 6, 5), 2), {})),
    "layer_norm": ("layer_norm", lambda: ((R(3, 6, 5), (6, 5)), {})),
    "instance_norm": ("instance_norm", lambda: ((R(4, 6, 5),), {})),
}

EMPTY = {
    "conv2d-N0": ("conv2d", lambda: ((R(0, 3, 8, 8), _w(4, 3, 3, 3), R(4)), {})),
    "conv2d-N0-nhwc": ("conv2d", lambda: ((R(0, 3, 8, 8).to(memory_format=torch.channels_last),
                                           _w(4, 3, 3, 3)), dict(stride=2))),
    "conv2d-C0": ("conv2d", lambda: ((R(2, 0, 8, 8), _w(4, 0, 3, 3), R(4)), {})),
    "conv1d-N0": ("conv1d", lambda: ((R(0, 3, 8), _w(4, 3, 3)), {})),
    "conv_transpose2d-N0": ("conv_transpose2d", lambda: ((R(0, 3, 5, 5), _w(3, 4, 3, 3)), dict(stride=2))),
    "max_pool2d-N0": ("max_pool2d", lambda: ((R(0, 3, 8, 8), 2), dict(return_indices=True))),
    "avg_pool2d-N0": ("avg_pool2d", lambda: ((R(0, 3, 8, 8), 2), {})),
    "adaptive_avg_pool2d-N0": ("adaptive_avg_pool2d", lambda: ((R(0, 3, 8, 8), 2), {})),
    "adaptive_avg_pool2d-C0": ("adaptive_avg_pool2d", lambda: ((R(2, 0, 8, 8), 1), {})),
    "max_pool1d-N0": ("max_pool1d", lambda: ((R(0, 3, 8), 2), {})),
    "avg_pool1d-N0": ("avg_pool1d", lambda: ((R(0, 3, 8), 2), {})),
    "adaptive_avg_pool1d-N0": ("adaptive_avg_pool1d", lambda: ((R(0, 3, 8), 3), {})),
    "batch_norm-N0": ("batch_norm", lambda: ((R(0, 3, 4, 4), torch.zeros(3), torch.ones(3)), {})),
    "batch_norm-N0-train": ("batch_norm", lambda: ((R(0, 3, 4, 4), torch.zeros(3), torch.ones(3)),
                                                   dict(training=True))),
    "batch_norm-H0-train": ("batch_norm", lambda: ((R(2, 3, 0, 4), torch.zeros(3), torch.ones(3)),
                                                   dict(training=True))),
    "layer_norm-N0": ("layer_norm", lambda: ((R(0, 3, 4), (3, 4)), {})),
    "layer_norm-C0": ("layer_norm", lambda: ((R(2, 0, 4), (0, 4)), {})),
    "group_norm-N0": ("group_norm", lambda: ((R(0, 4, 4, 4), 2), {})),
    "instance_norm-N0": ("instance_norm", lambda: ((R(0, 4, 4, 4),), {})),
    "instance_norm-H0": ("instance_norm", lambda: ((R(2, 4, 0, 4),), {})),
}


def _on(device, value):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    return value


def _both(builder, op, device):
    torch.manual_seed(torch.seed() % 2**31)
    args, kwargs = builder()
    expected = getattr(F, op)(*args, **kwargs)
    clones = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    actual = getattr(kernels, op)(*[_on(device, a) for a in clones], **kwargs)
    return actual, expected, clones, args


def _compare(actual, expected, what):
    if isinstance(expected, tuple):
        for a, e in zip(actual, expected):
            _compare(a, e, what)
        return
    assert tuple(actual.shape) == tuple(expected.shape), f"{what}: shape {tuple(actual.shape)} != torch's"
    assert actual.dtype == expected.dtype, what
    torch.testing.assert_close(actual.cpu(), expected, rtol=1e-4, atol=1e-5, msg=what)


@pytest.mark.parametrize("case", list(UNBATCHED))
def test_unbatched_like_torch(case, device):
    op, builder = UNBATCHED[case]
    actual, expected, _, _ = _both(builder, op, device)
    assert actual.dim() == expected.dim()
    _compare(actual, expected, case)


@pytest.mark.parametrize("case", list(EMPTY))
def test_empty_like_torch_without_a_launch(case, device, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a kernel was launched for an empty problem")
    # every launch goes through kernel[grid] of the kernels' one class (JITFunction, or the
    # interpreter's wrapper): make it fail
    monkeypatch.setattr(type(kernels.conv.direct._direct_kernel), "__getitem__", lambda self, grid: refuse)
    op, builder = EMPTY[case]
    actual, expected, clones, args = _both(builder, op, device)
    _compare(actual, expected, case)
    for before, after in zip(args, clones):  # running statistics untouched, as torch leaves them
        if isinstance(before, torch.Tensor):
            assert torch.equal(before, after.cpu())


def test_unbatched_conv_keeps_gradient_free_semantics_and_layouts(device):
    """An unbatched fp16 conv through every GEMM algorithm equals the batched one squeezed."""
    x = R(16, 6, 7).half().to(device)
    w = _w(8, 16, 3, 3).half().to(device)
    for algorithm in ("direct", "implicit_gemm", "im2col"):
        batched = kernels.conv2d(x.unsqueeze(0), w, padding=1, algorithm=algorithm)
        assert torch.equal(kernels.conv2d(x, w, padding=1, algorithm=algorithm), batched.squeeze(0))


@pytest.mark.parametrize("call,match", [
    (lambda d: kernels.conv2d(R(8, 8).to(d), _w(4, 3, 3, 3).to(d)), "input"),
    (lambda d: kernels.conv2d(R(1, 1, 3, 8, 8).to(d), _w(4, 3, 3, 3).to(d)), "input"),
    (lambda d: kernels.conv1d(R(8).to(d), _w(4, 3, 3).to(d)), "input"),
    (lambda d: kernels.conv2d(R(0, 3, 2, 2).to(d), _w(4, 3, 3, 3).to(d)), "output size"),
    (lambda d: kernels.conv2d(R(2, 3, 8, 8).to(d), _w(0, 3, 3, 3).to(d)), "k must be a positive"),
    (lambda d: kernels.max_pool2d(R(2, 0, 8, 8).to(d), 2), "c must be a positive"),
    (lambda d: kernels.layer_norm(R(2, 3, 4).to(d), (3, -4)), "normalized_shape"),
    (lambda d: kernels.batch_norm(R(1, 3).to(d), torch.zeros(3, device=d), torch.ones(3, device=d),
                                  training=True), "more than 1 value"),
])
def test_forms_torch_refuses_are_refused(call, match, device):
    with pytest.raises(ValueError, match=match):
        call(device)
