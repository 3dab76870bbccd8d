"""The convolution references are trustworthy: against torch float64, and against each other.

* ``conv2d``, ``conv1d``, ``conv_transpose2d`` against ``torch.nn.functional`` on the CPU in
  float64 (an independent implementation) over hypothesis-generated geometry;
* every algorithm reference (im2col, Winograd F(2,3)/F(4,3), FFT full and tiled, Toeplitz)
  against the direct ``reference.conv2d``;
* the adjoint identity ``<conv2d(x, w), y> == <x, conv_transpose2d(y, w)>``;
* the derived Winograd matrices reproduce 1-D correlation exactly, and rounding the transformed
  operands reproduces the design notes' error table (section 5).

Tolerances are max|diff| / max|ref| and fixed per algorithm (float64 throughout): the direct
rearrangements (im2col, Toeplitz) and torch differ only in summation order, ~1e-15 measured;
Winograd's transforms add a few multiplications by constants, FFT a log-depth transform
(~1e-15 measured), so their bounds leave room for the transforms' growth, not for bugs.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from convbench import reference
from convbench.reference.geometry import ConvGeometry
from tests._compare import assert_close

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")  # torch's own note

EXAMPLES = 30
TOL_DIRECT = 1e-12  # torch float64 and the exact rearrangements (im2col, Toeplitz)
TOL_WINOGRAD = 1e-10  # float64 transforms: F(4,3) multiplies by up to 8 and 1/24
TOL_FFT = 1e-9  # float64 FFTs of the image or tile


# ---------------------------------------------------------------------------------------------
# problem generation
# ---------------------------------------------------------------------------------------------
@st.composite
def conv_cases(draw, *, max_stride=3, max_dilation=3, grouped=True, kernel=None, paddings="all"):
    """A valid conv2d problem: (x, w, bias, kwargs) with kwargs stride/padding/dilation/groups.

    Groups: 1, 2, 3 or depthwise; kernels up to 4x4 incl. asymmetric; padding int, pair,
    'same' (stride 1 only) or 'valid'; input sizes from the smallest valid one up, so odd sizes
    and sizes that strides do not divide come up all the time.
    """
    kind = draw(st.sampled_from(["1", "2", "3", "depthwise"])) if grouped else "1"
    if kind == "depthwise":
        groups = draw(st.integers(2, 6))
        cg, kg = 1, draw(st.integers(1, 2))
    else:
        groups = int(kind)
        cg, kg = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    r, s = kernel if kernel is not None else (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, max_stride)), draw(st.integers(1, max_stride)))
    dilation = (draw(st.integers(1, max_dilation)), draw(st.integers(1, max_dilation)))
    kinds = ["int", "pair", "valid"] + (["same"] if stride == (1, 1) and paddings == "all" else [])
    pad_kind = draw(st.sampled_from(kinds))
    if pad_kind == "int":
        padding = draw(st.integers(0, 3))
        totals = (2 * padding, 2 * padding)
    elif pad_kind == "pair":
        padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
        totals = (2 * padding[0], 2 * padding[1])
    else:
        padding = pad_kind
        totals = (dilation[0] * (r - 1), dilation[1] * (s - 1)) if pad_kind == "same" else (0, 0)
    eff = (dilation[0] * (r - 1) + 1, dilation[1] * (s - 1) + 1)
    h = max(1, eff[0] - totals[0]) + draw(st.integers(0, 6))
    w = max(1, eff[1] - totals[1]) + draw(st.integers(0, 6))
    n = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((n, cg * groups, h, w))
    wt = rng.standard_normal((kg * groups, cg, r, s))
    bias = rng.standard_normal(kg * groups) if draw(st.booleans()) else None
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return x, wt, bias, kwargs


def torch_conv2d(x, wt, bias, kwargs) -> np.ndarray:
    t = (lambda a: None if a is None else torch.from_numpy(a))
    return F.conv2d(t(x), t(wt), t(bias), **kwargs).numpy()


# ---------------------------------------------------------------------------------------------
# direct references against torch float64
# ---------------------------------------------------------------------------------------------
@settings(max_examples=EXAMPLES)
@given(case=conv_cases())
def test_conv2d_matches_torch(case):
    x, wt, bias, kwargs = case
    assert_close(reference.conv2d(x, wt, bias, **kwargs), torch_conv2d(x, wt, bias, kwargs), TOL_DIRECT,
                 f"conv2d {x.shape} {wt.shape} {kwargs}")


@settings(max_examples=EXAMPLES)
@given(groups=st.integers(1, 3), cg=st.integers(1, 3), kg=st.integers(1, 3), s=st.integers(1, 5),
       stride=st.integers(1, 3), pad=st.one_of(st.integers(0, 3), st.sampled_from(["same", "valid"])),
       dilation=st.integers(1, 3), extra=st.integers(0, 9), bias=st.booleans(), seed=st.integers(0, 2**31))
def test_conv1d_matches_torch(groups, cg, kg, s, stride, pad, dilation, extra, bias, seed):
    if pad == "same":
        stride = 1
    rng = np.random.default_rng(seed)
    length = dilation * (s - 1) + 1 + extra
    x = rng.standard_normal((2, cg * groups, length))
    wt = rng.standard_normal((kg * groups, cg, s))
    b = rng.standard_normal(kg * groups) if bias else None
    expected = F.conv1d(torch.from_numpy(x), torch.from_numpy(wt), None if b is None else torch.from_numpy(b),
                        stride, pad, dilation, groups).numpy()
    assert_close(reference.conv1d(x, wt, b, stride, pad, dilation, groups), expected, TOL_DIRECT, "conv1d")


@st.composite
def transpose_cases(draw):
    groups = draw(st.integers(1, 3))
    c, kg = groups * draw(st.integers(1, 3)), draw(st.integers(1, 3))
    r, s = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    padding = draw(st.one_of(st.integers(0, 2), st.tuples(st.integers(0, 2), st.integers(0, 2))))
    output_padding = tuple(draw(st.integers(0, max(sd) - 1)) for sd in zip(stride, dilation))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    try:
        reference.ConvTransposeGeometry.from_shapes((1, c, h, w), (c, kg, r, s), stride, padding,
                                                    output_padding, groups, dilation)
    except ValueError:
        reject()  # empty output: padding crops everything
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((draw(st.integers(1, 2)), c, h, w))
    wt = rng.standard_normal((c, kg, r, s))
    bias = rng.standard_normal(kg * groups) if draw(st.booleans()) else None
    return x, wt, bias, dict(stride=stride, padding=padding, output_padding=output_padding,
                             groups=groups, dilation=dilation)


@settings(max_examples=EXAMPLES)
@given(case=transpose_cases())
def test_conv_transpose2d_matches_torch(case):
    x, wt, bias, kwargs = case
    expected = F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(wt),
                                  None if bias is None else torch.from_numpy(bias), **kwargs).numpy()
    assert_close(reference.conv_transpose2d(x, wt, bias, **kwargs), expected, TOL_DIRECT,
                 f"conv_transpose2d {x.shape} {wt.shape} {kwargs}")


@settings(max_examples=EXAMPLES)
@given(case=conv_cases(paddings="symmetric"), seed=st.integers(0, 2**31))
def test_adjoint_identity(case, seed):
    """conv_transpose2d is the adjoint of conv2d: <conv2d(x, w), y> == <x, conv_transpose2d(y, w)>.

    conv2d's weight (K, C/g, R, S) is exactly conv_transpose2d's (in=K, out/g=C/g, R, S); the
    output_padding that restores H is (H + 2p - d(R-1) - 1) mod stride.
    """
    x, wt, _, kwargs = case
    geom = ConvGeometry.from_shapes(x.shape, wt.shape, **kwargs)
    y = np.random.default_rng(seed).standard_normal(geom.output_shape)
    pad = (geom.padding[0], geom.padding[2])
    out_pad = tuple((size + 2 * p - d * (k - 1) - 1) % st_ for size, p, d, k, st_ in
                    zip((geom.h, geom.w), pad, geom.dilation, (geom.r, geom.s), geom.stride))
    back = reference.conv_transpose2d(y, wt, None, geom.stride, pad, out_pad, geom.groups, geom.dilation)
    assert back.shape == x.shape
    forward = reference.conv2d(x, wt, **kwargs)
    lhs, rhs = np.vdot(forward, y), np.vdot(x, back)
    scale = np.abs(forward * y).sum() + np.abs(x * back).sum()
    assert abs(lhs - rhs) <= TOL_DIRECT * scale, f"<Ax, y>={lhs!r} != <x, A^T y>={rhs!r} for {geom}"


# ---------------------------------------------------------------------------------------------
# algorithm references against the direct one
# ---------------------------------------------------------------------------------------------
@settings(max_examples=EXAMPLES)
@given(case=conv_cases())
def test_im2col_matches_direct(case):
    x, wt, bias, kwargs = case
    geom = ConvGeometry.from_shapes(x.shape, wt.shape, **kwargs)
    cols = reference.im2col(x, geom)
    assert cols.shape == (geom.groups, geom.n * geom.p * geom.q, geom.reduction_length)
    assert_close(reference.conv2d_im2col(x, wt, bias, **kwargs), reference.conv2d(x, wt, bias, **kwargs),
                 TOL_DIRECT, f"im2col {geom}")


@pytest.mark.parametrize("m", [2, 4])
@settings(max_examples=EXAMPLES)
@given(case=conv_cases(max_stride=1, max_dilation=1, grouped=False, kernel=(3, 3)))
def test_winograd_matches_direct(m, case):
    """Any padding, output sizes that m does not divide (partial edge tiles)."""
    x, wt, bias, kwargs = case
    expected = reference.conv2d(x, wt, bias, **kwargs)
    got = reference.conv2d_winograd(x, wt, bias, kwargs["padding"], m)
    assert_close(got, expected, TOL_WINOGRAD, f"winograd F({m},3) {x.shape} {kwargs}")


@settings(max_examples=EXAMPLES)
@given(case=conv_cases(max_stride=1), tile=st.one_of(
    st.none(), st.integers(1, 7), st.tuples(st.integers(1, 7), st.integers(1, 7))))
def test_fft_matches_direct(case, tile):
    """Full image (tile=None) and overlap-add over tiles that need not divide the image."""
    x, wt, bias, kwargs = case
    expected = reference.conv2d(x, wt, bias, **kwargs)
    got = reference.conv2d_fft(x, wt, bias, kwargs["padding"], tile, dilation=kwargs["dilation"],
                               groups=kwargs["groups"])
    assert_close(got, expected, TOL_FFT, f"fft tile={tile} {x.shape} {wt.shape} {kwargs}")


def test_fft_tiles_not_dividing_the_image():
    """A fixed case on top of the property test: 13x11 image, 3x3 kernel, tiles 4 and (5, 3)."""
    rng = np.random.default_rng(7)
    x, wt = rng.standard_normal((2, 3, 13, 11)), rng.standard_normal((4, 3, 3, 3))
    expected = reference.conv2d(x, wt, padding=1)
    for tile in (None, 4, (5, 3), 16):
        assert_close(reference.conv2d_fft(x, wt, padding=1, tile=tile), expected, TOL_FFT, f"tile={tile}")


@settings(max_examples=EXAMPLES)
@given(case=conv_cases(max_stride=2, max_dilation=2))
def test_toeplitz_matches_direct(case):
    x, wt, bias, kwargs = case
    got = reference.conv2d_toeplitz(x, wt, kwargs["padding"], kwargs["stride"], kwargs["dilation"],
                                    groups=kwargs["groups"], bias=bias)
    assert_close(got, reference.conv2d(x, wt, bias, **kwargs), TOL_DIRECT, f"toeplitz {x.shape} {kwargs}")


def test_toeplitz_matrix_is_doubly_block_toeplitz():
    """Stride 1: within each (k, c) block, the (p, h) blocks of size Q x W are constant along
    diagonals (block Toeplitz) and each block is itself Toeplitz."""
    geom = ConvGeometry.from_shapes((1, 2, 6, 5), (3, 2, 3, 2), padding=1)
    wt = np.random.default_rng(0).standard_normal(geom.weight_shape)
    mat = reference.toeplitz_matrix(geom, wt).reshape(geom.k, geom.p, geom.q, geom.c, geom.h, geom.w)
    for k in range(geom.k):
        for c in range(geom.c):
            blocks = mat[k, :, :, c]  # p, q, h, w
            # block (p, h) depends only on h - p; inside a block, entry (q, w) only on w - q
            assert np.array_equal(blocks[1:, :, 1:, :], blocks[:-1, :, :-1, :])
            assert np.array_equal(blocks[:, 1:, :, 1:], blocks[:, :-1, :, :-1])
    assert np.count_nonzero(mat) <= geom.k * geom.c * geom.p * geom.q * geom.r * geom.s


def test_toeplitz_refuses_large_shapes():
    geom = ConvGeometry.from_shapes((1, 64, 32, 32), (64, 64, 3, 3), padding=1)
    with pytest.raises(ValueError, match=r"65536 x 65536 = 4.29e\+09 entries"):
        reference.toeplitz_matrix(geom, np.zeros(geom.weight_shape))


# ---------------------------------------------------------------------------------------------
# Winograd transforms
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("m, r, points", [
    (2, 3, None), (4, 3, None), (6, 3, None), (3, 2, None), (2, 5, None),
    (4, 3, (0, 1, -1, Fraction(1, 2), Fraction(-1, 2))),
])
def test_winograd_matrices_reproduce_1d_correlation(m, r, points):
    """out[i] = sum_j d[i+j] g[j], exactly with Fractions on integers, and to rounding in float64."""
    at, g, bt = reference.winograd_matrices(m, r, points, exact=True)
    alpha = m + r - 1
    assert (at.shape, g.shape, bt.shape) == ((m, alpha), (alpha, r), (alpha, alpha))
    rng = np.random.default_rng(m * 10 + r)
    for _ in range(5):
        d = np.array([Fraction(int(v)) for v in rng.integers(-50, 50, alpha)], dtype=object)
        w = np.array([Fraction(int(v)) for v in rng.integers(-50, 50, r)], dtype=object)
        expected = [sum(d[i + j] * w[j] for j in range(r)) for i in range(m)]
        assert list(at.dot(g.dot(w) * bt.dot(d))) == expected
    at, g, bt = reference.winograd_matrices(m, r, points)
    assert at.dtype == g.dtype == bt.dtype == np.float64
    d, w = rng.standard_normal(alpha), rng.standard_normal(r)
    expected = np.correlate(d, w, "valid")
    assert np.max(np.abs(at @ ((g @ w) * (bt @ d)) - expected)) <= 1e-13 * np.abs(d).sum() * np.abs(w).sum()


def test_winograd_default_points():
    assert reference.default_points(2) == (0, 1, -1)
    assert reference.default_points(4) == (0, 1, -1, 2, -2)
    with pytest.raises(ValueError, match=r"F\(4, 3\) needs 5 finite points .* got 7"):
        reference.winograd_matrices(4, 3, (0, 1, -1, 2, -2, 0.5, -0.5))
    with pytest.raises(ValueError, match=r"points must be distinct"):
        reference.winograd_matrices(2, 3, (0, 1, 1))


#: design notes section 5: max rel error vs float64 direct, C=64, K=32, 24x24, normal data
DESIGN_TABLE = {
    (2, "float32"): 3.3e-7, (2, "float16"): 4.6e-4, (2, "bfloat16"): 3.6e-3,
    (4, "float32"): 5.4e-6, (4, "float16"): 8.2e-3, (4, "bfloat16"): 6.0e-2,
}


@pytest.fixture(scope="module")
def design_problem():
    rng = np.random.default_rng(2024)
    # data that is exactly fp32, so the fp32 column measures the algorithm, not the input rounding
    x = rng.standard_normal((1, 64, 24, 24)).astype(np.float32).astype(np.float64)
    wt = rng.standard_normal((32, 64, 3, 3)).astype(np.float32).astype(np.float64)
    return x, wt, reference.conv2d(x, wt, padding=1)


@pytest.mark.parametrize("m, operand", sorted(DESIGN_TABLE))
def test_winograd_operand_rounding_reproduces_design_table(design_problem, m, operand):
    """Rounding U and V to fp16/bf16 (fp32 transforms and accumulation) gives the tabulated
    error within a factor of 3 (one random draw; 5 seeds measured 0.6x-1.5x of the table)."""
    x, wt, expected = design_problem
    got = reference.conv2d_winograd(x, wt, padding=1, m=m, operand_dtype=operand)
    max_rel = np.max(np.abs(got - expected)) / np.max(np.abs(expected))
    table = DESIGN_TABLE[(m, operand)]
    assert table / 3 <= max_rel <= table * 3, f"F({m},3) {operand}: {max_rel:.2e} vs notes {table:.1e}"


def test_round_to_bfloat16_matches_torch():
    values = np.random.default_rng(3).standard_normal(1000) * 10.0 ** np.arange(-5, 5).repeat(100)
    expected = torch.from_numpy(values.astype(np.float32)).to(torch.bfloat16).float().numpy()
    assert np.array_equal(reference.round_to(values.astype(np.float32), "bfloat16"), expected)
    assert np.array_equal(reference.round_to(values, torch.float16), values.astype(np.float16).astype(np.float32))


# ---------------------------------------------------------------------------------------------
# domains and inputs
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    ({"stride": 2}, r"needs stride 1, got stride=\(2, 2\)"),
    ({"dilation": 2}, r"needs dilation 1, got dilation=\(2, 2\)"),
    ({"groups": 2}, r"needs groups=1, got groups=2"),
    ({"weight_shape": (4, 4, 5, 5)}, r"needs a 3x3 kernel, got weight shape \(4, 4, 5, 5\)"),
    ({"operand_dtype": "int8"}, r"operand_dtype must be float16, bfloat16 or float32, got 'int8'"),
    ({"m": 0}, r"m must be a positive int, got 0"),
])
def test_winograd_refuses_out_of_domain(kwargs, message):
    weight_shape = kwargs.pop("weight_shape", (4, 4 // kwargs.get("groups", 1), 3, 3))
    x, wt = np.ones((1, 4, 8, 8)), np.ones(weight_shape)
    with pytest.raises(ValueError, match=message):
        reference.conv2d_winograd(x, wt, **kwargs)


def test_fft_refuses_stride_and_bad_tile():
    x, wt = np.ones((1, 2, 8, 8)), np.ones((2, 2, 3, 3))
    with pytest.raises(ValueError, match=r"conv2d_fft needs stride 1, got stride=\(1, 2\)"):
        reference.conv2d_fft(x, wt, stride=(1, 2))
    with pytest.raises(ValueError, match=r"tile must be positive, got 0"):
        reference.conv2d_fft(x, wt, tile=0)


def test_references_accept_cpu_tensors():
    gen = torch.Generator().manual_seed(0)
    x, wt, b = (torch.randn(*shape, generator=gen) for shape in ((2, 4, 7, 6), (4, 4, 3, 3), (4,)))
    expected = F.conv2d(x.double(), wt.double(), b.double(), padding=1).numpy()
    results = {
        "conv2d": reference.conv2d(x, wt, b, padding=1),
        "im2col": reference.conv2d_im2col(x, wt, b, padding=1),
        "winograd": reference.conv2d_winograd(x, wt, b, padding=1, m=4),
        "fft": reference.conv2d_fft(x, wt, b, padding=1, tile=3),
        "toeplitz": reference.conv2d_toeplitz(x, wt, padding=1, bias=b),
    }
    for name, out in results.items():
        assert isinstance(out, np.ndarray) and out.dtype == np.float64, name
        assert_close(out, expected, TOL_FFT, name)
    back = reference.conv_transpose2d(x, wt, b, stride=2, padding=1)
    assert back.dtype == np.float64
    assert_close(back, F.conv_transpose2d(x.double(), wt.double(), b.double(), stride=2, padding=1).numpy(),
                 TOL_DIRECT, "conv_transpose2d")
