"""Geometry: output sizes against the shapes torch actually produces, str() format, bad input.

Property tests run torch on tiny CPU tensors for random (often invalid) argument combinations:
where torch produces an output, the geometry must give the same shape; where torch refuses, the
geometry must raise ValueError.  So the rules are checked in both directions.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from convbench.reference.geometry import (
    ConvGeometry,
    ConvTransposeGeometry,
    NormGeometry,
    PoolGeometry,
)

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")  # torch's own note

EXAMPLES = 40


def _torch_shape(fn):
    """The output shape torch produces, or None when torch refuses the arguments.

    (conv_transpose2d is the one op where torch returns an *empty* output instead of refusing;
    convbench refuses every empty output, so that test maps a 0-sized torch shape to None.)
    """
    try:
        return tuple(fn().shape)
    except RuntimeError:
        return None


def _geometry_shape(make):
    try:
        return make().output_shape
    except ValueError:
        return None


pairs = st.tuples(st.integers(1, 3), st.integers(1, 3))
pool_kernels = st.one_of(st.integers(1, 4), st.tuples(st.integers(1, 4), st.integers(1, 4)))
pool_strides = st.one_of(st.none(), st.integers(1, 3), pairs)
pool_paddings = st.one_of(st.integers(0, 2), st.tuples(st.integers(0, 2), st.integers(0, 2)))


# ---------------------------------------------------------------------------------------------
# output sizes against torch
# ---------------------------------------------------------------------------------------------
@settings(max_examples=EXAMPLES)
@given(
    n=st.integers(1, 2), cg=st.integers(1, 3), kg=st.integers(1, 3), groups=st.integers(1, 3),
    h=st.integers(1, 9), w=st.integers(1, 9), r=st.integers(1, 4), s=st.integers(1, 4),
    stride=st.one_of(st.integers(1, 3), pairs),
    padding=st.one_of(st.integers(0, 3), st.tuples(st.integers(0, 3), st.integers(0, 3)),
                      st.sampled_from(["same", "valid"])),
    dilation=st.one_of(st.integers(1, 3), pairs),
)
def test_conv2d_output_shape_matches_torch(n, cg, kg, groups, h, w, r, s, stride, padding, dilation):
    x, wt = torch.zeros(n, cg * groups, h, w), torch.zeros(kg * groups, cg, r, s)
    expected = _torch_shape(lambda: F.conv2d(x, wt, None, stride, padding, dilation, groups))
    got = _geometry_shape(lambda: ConvGeometry.from_shapes(x.shape, wt.shape, stride, padding, dilation, groups))
    assert got == expected


@settings(max_examples=EXAMPLES)
@given(
    c=st.integers(1, 4), k=st.integers(1, 4), groups=st.integers(1, 3),
    length=st.integers(1, 12), s=st.integers(1, 5), stride=st.integers(1, 3),
    padding=st.one_of(st.integers(0, 3), st.sampled_from(["same", "valid"])), dilation=st.integers(1, 3),
)
def test_conv1d_output_shape_matches_torch(c, k, groups, length, s, stride, padding, dilation):
    """Channels need not divide by groups here: the refusal must match torch's too."""
    x, wt = torch.zeros(2, c, length), torch.zeros(k, max(c // groups, 1), s)
    expected = _torch_shape(lambda: F.conv1d(x, wt, None, stride, padding, dilation, groups))
    got = _geometry_shape(lambda: ConvGeometry.from_shapes_1d(x.shape, wt.shape, stride, padding, dilation, groups))
    assert (got[:2] + got[3:] if got else None) == expected


@settings(max_examples=EXAMPLES)
@given(
    cg=st.integers(1, 3), kg=st.integers(1, 3), groups=st.integers(1, 3),
    h=st.integers(1, 6), w=st.integers(1, 6), r=st.integers(1, 4), s=st.integers(1, 4),
    stride=pairs, padding=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    output_padding=st.tuples(st.integers(0, 2), st.integers(0, 2)), dilation=pairs,
)
def test_conv_transpose2d_output_shape_matches_torch(cg, kg, groups, h, w, r, s, stride, padding,
                                                     output_padding, dilation):
    x, wt = torch.zeros(1, cg * groups, h, w), torch.zeros(cg * groups, kg, r, s)
    expected = _torch_shape(lambda: F.conv_transpose2d(x, wt, None, stride, padding, output_padding, groups, dilation))
    if expected is not None and 0 in expected:
        expected = None  # torch returns an empty tensor here; convbench refuses empty outputs
    got = _geometry_shape(lambda: ConvTransposeGeometry.from_shapes(
        x.shape, wt.shape, stride, padding, output_padding, groups, dilation))
    assert got == expected


@settings(max_examples=EXAMPLES)
@given(
    h=st.integers(1, 12), w=st.integers(1, 12), kernel=pool_kernels, stride=pool_strides, padding=pool_paddings,
    dilation=st.one_of(st.integers(1, 3), pairs), ceil_mode=st.booleans(),
)
def test_max_pool2d_output_shape_matches_torch(h, w, kernel, stride, padding, dilation, ceil_mode):
    x = torch.zeros(1, 2, h, w)
    expected = _torch_shape(lambda: F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode))
    got = _geometry_shape(lambda: PoolGeometry.from_args(x.shape, kernel, stride, padding, dilation, ceil_mode))
    assert got == expected


@settings(max_examples=EXAMPLES)
@given(
    h=st.integers(1, 12), w=st.integers(1, 12), kernel=pool_kernels, stride=pool_strides, padding=pool_paddings,
    ceil_mode=st.booleans(),
)
def test_avg_pool2d_output_shape_matches_torch(h, w, kernel, stride, padding, ceil_mode):
    x = torch.zeros(1, 2, h, w)
    expected = _torch_shape(lambda: F.avg_pool2d(x, kernel, stride, padding, ceil_mode))
    got = _geometry_shape(lambda: PoolGeometry.from_args(x.shape, kernel, stride, padding, 1, ceil_mode))
    assert got == expected


@settings(max_examples=EXAMPLES)
@given(length=st.integers(1, 12), kernel=st.integers(1, 5), stride=st.one_of(st.none(), st.integers(1, 3)),
       padding=st.integers(0, 2), dilation=st.integers(1, 3), ceil_mode=st.booleans())
def test_max_pool1d_output_shape_matches_torch(length, kernel, stride, padding, dilation, ceil_mode):
    x = torch.zeros(1, 2, length)
    expected = _torch_shape(lambda: F.max_pool1d(x, kernel, stride, padding, dilation, ceil_mode))
    got = _geometry_shape(lambda: PoolGeometry.from_args_1d(x.shape, kernel, stride, padding, dilation, ceil_mode))
    assert (got[:2] + got[3:] if got else None) == expected


def test_ceil_mode_drops_window_starting_in_padding():
    """H=5, k=2, s=2, p=1: ceil gives 4 windows, but the 4th starts at row 6 >= H + p."""
    geom = PoolGeometry.from_args((1, 1, 5, 5), 2, 2, 1, ceil_mode=True)
    torch_out = F.max_pool2d(torch.zeros(1, 1, 5, 5), 2, 2, 1, ceil_mode=True)
    assert geom.output_shape == (1, 1, 3, 3) == tuple(torch_out.shape)
    assert PoolGeometry.from_args((1, 1, 6, 6), 3, 2, 0, ceil_mode=True).p == 3  # a real extra window


def test_same_padding_puts_the_extra_pixel_bottom_right():
    geom = ConvGeometry.from_shapes((1, 1, 7, 7), (1, 1, 4, 2), padding="same", dilation=(1, 3))
    assert geom.padding == (1, 2, 1, 2)
    assert geom.output_shape == (1, 1, 7, 7)


# ---------------------------------------------------------------------------------------------
# str() format
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, text", [
    (((32, 64, 56, 56), (64, 64, 3, 3), 1, 1), "n32-c64-56x56-k64-3x3-s1-p1"),
    (((1, 3, 224, 224), (64, 3, 7, 7), 2, 3), "n1-c3-224x224-k64-7x7-s2-p3"),
    (((2, 32, 28, 30), (32, 1, 3, 3), 1, 1, 1, 32), "n2-c32-28x30-k32-3x3-s1-p1-g32"),
    (((1, 8, 9, 9), (4, 8, 3, 1), (2, 1), (1, 0), 2), "n1-c8-9x9-k4-3x1-s2x1-p1x0-d2"),
    (((1, 8, 9, 9), (4, 8, 2, 2), 1, "same"), "n1-c8-9x9-k4-2x2-s1-p0x1x0x1"),
])
def test_conv_str(args, text):
    assert str(ConvGeometry.from_shapes(*args)) == text


def test_other_str_formats():
    transposed = ConvTransposeGeometry.from_shapes((1, 16, 7, 7), (16, 8, 4, 4), 2, 1, 1)
    assert str(transposed) == "n1-c16-7x7-k8-4x4-T-s2-p1-op1"
    assert str(PoolGeometry.from_args((8, 64, 112, 112), 3, 2, 1)) == "n8-c64-112x112-k3-s2-p1"
    assert str(PoolGeometry.from_args((1, 4, 7, 7), (3, 2), None, 0, 1, True)) == "n1-c4-7x7-k3x2-s3x2-p0-ceil"
    assert str(NormGeometry("group", 2, 32, 8, 8, 4)) == "group-n2-c32-8x8-g4"


# ---------------------------------------------------------------------------------------------
# bad input: ValueError naming the argument (and its value)
# ---------------------------------------------------------------------------------------------
CONV_BAD = [
    # non-positive output size
    (((1, 1, 2, 2), (1, 1, 3, 3)), {}, r"output size 0x0 is not positive"),
    (((1, 1, 5, 5), (1, 1, 3, 3)), {"dilation": 3}, r"output size -1x-1 is not positive.*dilation=\(3, 3\)"),
    # channels not divisible by groups
    (((1, 3, 4, 4), (2, 1, 1, 1)), {"groups": 2}, r"input channels C=3 are not divisible by groups=2"),
    (((1, 4, 4, 4), (3, 2, 1, 1)), {"groups": 2}, r"out_channels K=3 are not divisible by groups=2"),
    (((1, 4, 4, 4), (4, 1, 1, 1)), {"groups": 0}, r"groups must be a positive int, got 0"),
    # weight shape not matching input
    (((1, 4, 4, 4), (2, 3, 1, 1)), {}, r"weight shape \(2, 3, 1, 1\) does not match input shape \(1, 4, 4, 4\)"),
    (((1, 4, 4, 4), (2, 4, 1, 1)), {"groups": 2}, r"expected weight.shape\[1\] == C/groups == 2, got 4"),
    (((1, 4, 4, 4), (2, 4, 1)), {}, r"weight must be 4-D"),
    (((4, 4, 4), (2, 4, 1, 1)), {}, r"input must be 4-D"),
    # negative padding / stride / dilation
    (((1, 1, 4, 4), (1, 1, 1, 1)), {"padding": -1}, r"padding must be non-negative, got -1"),
    (((1, 1, 4, 4), (1, 1, 1, 1)), {"padding": (0, -2)}, r"padding must be non-negative, got \(0, -2\)"),
    (((1, 1, 4, 4), (1, 1, 1, 1)), {"stride": 0}, r"stride must be positive, got 0"),
    (((1, 1, 4, 4), (1, 1, 1, 1)), {"stride": (1, -1)}, r"stride must be positive, got \(1, -1\)"),
    (((1, 1, 4, 4), (1, 1, 1, 1)), {"dilation": -2}, r"dilation must be positive, got -2"),
    (((1, 1, 4, 4), (1, 1, 1, 1)), {"padding": "full"}, r"padding must be .* got 'full'"),
    (((1, 1, 4, 4), (1, 1, 1, 1)), {"stride": (1, 2, 3)}, r"stride must be an int or a sequence of 2 ints"),
    # 'same' with stride > 1
    (((1, 1, 8, 8), (1, 1, 3, 3)), {"padding": "same", "stride": 2}, r"padding='same'.*strided.*stride=\(2, 2\)"),
]


@pytest.mark.parametrize("shapes, kwargs, message", CONV_BAD)
def test_conv_bad_input_raises(shapes, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ConvGeometry.from_shapes(*shapes, **kwargs)


def test_conv_bad_direct_construction_raises():
    with pytest.raises(ValueError, match=r"padding must be non-negative"):
        ConvGeometry(1, 1, 4, 4, 1, 1, 1, padding=(0, -1, 0, 0))
    with pytest.raises(ValueError, match=r"c must be a positive int, got 0"):
        ConvGeometry(1, 0, 4, 4, 1, 1, 1)
    with pytest.raises(ValueError, match=r"in_channels=3 is not divisible by groups=2"):
        ConvGeometry(1, 3, 4, 4, 2, 1, 1, groups=2)


def test_conv1d_bad_input_raises():
    with pytest.raises(ValueError, match=r"input must be 3-D"):
        ConvGeometry.from_shapes_1d((1, 4, 4, 4), (2, 4, 1))
    with pytest.raises(ValueError, match=r"padding='same'.*stride=\(1, 2\)"):
        ConvGeometry.from_shapes_1d((1, 4, 8), (2, 4, 3), stride=2, padding="same")
    with pytest.raises(ValueError, match=r"output size 1x0 is not positive"):
        ConvGeometry.from_shapes_1d((1, 4, 2), (2, 4, 3))


TRANSPOSE_BAD = [
    (((1, 4, 4, 4), (3, 2, 3, 3)), {},
     r"weight shape \(3, 2, 3, 3\) does not match input.*expected weight.shape\[0\] == C == 4"),
    (((1, 3, 4, 4), (3, 1, 3, 3)), {"groups": 2}, r"input channels C=3 are not divisible by groups=2"),
    (((1, 4, 4, 4), (4, 2, 3, 3)), {"padding": -1}, r"padding must be non-negative, got -1"),
    (((1, 4, 4, 4), (4, 2, 3, 3)), {"stride": 0}, r"stride must be positive, got 0"),
    (((1, 4, 4, 4), (4, 2, 3, 3)), {"dilation": (0, 1)}, r"dilation must be positive, got \(0, 1\)"),
    (((1, 4, 4, 4), (4, 2, 3, 3)), {"output_padding": -1}, r"output_padding must be non-negative, got -1"),
    (((1, 4, 4, 4), (4, 2, 3, 3)), {"stride": 2, "output_padding": 2},
     r"output_padding=\(2, 2\) must be smaller than stride"),
    (((1, 4, 2, 2), (4, 2, 1, 1)), {"padding": 1}, r"output size 0x0 is not positive"),
    (((1, 4, 4, 4), (4, 2, 3, 3)), {"padding": "same"}, r"padding must be an int or a pair .* got 'same'"),
]


@pytest.mark.parametrize("shapes, kwargs, message", TRANSPOSE_BAD)
def test_conv_transpose_bad_input_raises(shapes, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ConvTransposeGeometry.from_shapes(*shapes, **kwargs)


POOL_BAD = [
    ({"kernel_size": 3, "padding": 2}, r"padding=\(2, 2\) must be at most half of kernel_size=\(3, 3\)"),
    ({"kernel_size": (2, 4), "padding": (1, 3)}, r"padding=\(1, 3\) must be at most half of kernel_size=\(2, 4\)"),
    ({"kernel_size": 3, "padding": -1}, r"padding must be non-negative, got \(-1, -1\)"),
    ({"kernel_size": 0}, r"kernel_size must be positive, got \(0, 0\)"),
    ({"kernel_size": 2, "stride": 0}, r"stride must be positive, got \(0, 0\)"),
    ({"kernel_size": 2, "dilation": -1}, r"dilation must be positive, got \(-1, -1\)"),
    ({"kernel_size": 6}, r"output size 0x0 is not positive.*kernel_size=\(6, 6\)"),
    ({"kernel_size": 3, "dilation": 3}, r"output size 0x0 is not positive.*dilation=\(3, 3\)"),
]


@pytest.mark.parametrize("kwargs, message", POOL_BAD)
def test_pool_bad_input_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PoolGeometry.from_args((1, 2, 5, 5), **kwargs)


def test_pool_and_norm_bad_shapes_raise():
    with pytest.raises(ValueError, match=r"input must be 4-D"):
        PoolGeometry.from_args((2, 5, 5), 2)
    with pytest.raises(ValueError, match=r"input must be 3-D"):
        PoolGeometry.from_args_1d((1, 2, 5, 5), 2)
    with pytest.raises(ValueError, match=r"num_groups=3 does not divide channels C=8"):
        NormGeometry("group", 1, 8, 4, 4, 3)
    with pytest.raises(ValueError, match=r"kind must be one of .* got 'batchnorm'"):
        NormGeometry("batchnorm", 1, 8, 4, 4)
