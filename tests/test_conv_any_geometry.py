"""Every conv2d algorithm on geometries nobody chose: random C, K, groups, kernel, stride,
dilation, padding, batch and layout, through the public API, against the float64 reference.

The geometry of each case comes from a fresh seed (printed on failure, so it can be replayed):
C/g and K/g from 1 to 40 (depthwise included), groups 1/2/4 or depthwise, kernels 1-7 and
asymmetric, stride and dilation 1-3, padding an int, a pair or ``"same"``, batch 1-3, NCHW or
channels_last, fp32/fp16/bf16.  Outputs are NaN-poisoned (conftest).  Each algorithm runs with
its heuristic config on several geometries in its domain, and with *every* config of
:func:`convbench.kernels.conv_configs` once.  Tolerances come from the dtype, the algorithm's
error scale and the reduction length (tests/_compare.py).  Spatial sizes stay small: this runs
in the interpreter.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from convbench import kernels
from convbench.kernels.conv import BY_NAME
from convbench.reference.conv import direct as reference_direct
from convbench.reference.geometry import ConvGeometry
from tests._compare import as_ref, assert_close, tolerance
from tests._operands import fresh_seed

DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def random_problem(rng: random.Random, algorithm: str):
    """torch-style conv2d arguments for a random geometry in ``algorithm``'s domain."""
    for _ in range(1000):
        kind = rng.choice(["dense", "dense", "g2", "g4", "depthwise"])
        groups = {"dense": 1, "g2": 2, "g4": 4}.get(kind) or rng.randint(2, 12)
        cg = 1 if kind == "depthwise" else rng.randint(1, 40 // groups if groups > 1 else 40)
        kg = rng.choice([1, 2]) if kind == "depthwise" else rng.randint(1, 40 // groups if groups > 1 else 40)
        r, s = rng.randint(1, 7), rng.randint(1, 7)
        stride = (rng.randint(1, 3), rng.randint(1, 3))
        dilation = (rng.randint(1, 3), rng.randint(1, 3))
        padding = rng.choice([0, rng.randint(0, 3), (rng.randint(0, 3), rng.randint(0, 3)), "same"])
        if padding == "same":
            stride = (1, 1)
        if algorithm.startswith("winograd"):
            r = s = 3
            stride, dilation, groups, cg = (1, 1), (1, 1), 1, max(cg, 1)
            kg = max(kg, 1)
        elif algorithm == "fft":
            stride, dilation, groups = (1, 1), (1, 1), 1
        n = rng.randint(1, 3)
        h, w = rng.randint(1, 11), rng.randint(1, 11)
        try:
            geom = ConvGeometry.from_shapes((n, cg * groups, h, w), (kg * groups, cg, r, s), stride, padding,
                                            dilation, groups)
        except ValueError:
            continue  # e.g. an output size below 1: draw again
        if BY_NAME[algorithm].unsupported(geom, torch.float32) is None and geom.p * geom.q <= 81:
            return geom, stride, padding, dilation, groups
    raise AssertionError(f"no geometry found for {algorithm}")


def run_case(algorithm, geom, stride, padding, dilation, groups, dtype, channels_last, bias, seed, config=None):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(geom.input_shape, generator=g).to(dtype)
    w = (torch.randn(geom.weight_shape, generator=g) / np.sqrt(geom.reduction_length)).to(dtype)
    b = torch.randn(geom.k, generator=g).to(dtype) if bias else None
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    x, w, b = x.to(dev), w.to(dev), (b.to(dev) if b is not None else None)
    out = kernels.conv2d(x, w, b, stride, padding, dilation, groups, algorithm=algorithm, config=config)
    assert out.shape == geom.output_shape and out.dtype == dtype
    # the memory format torch gives the same call (a C=1 tensor made channels_last keeps NCHW strides)
    like = torch.nn.functional.conv2d(x.float().cpu(), w.float().cpu(), None, stride, padding, dilation, groups)
    for fmt in (torch.channels_last, torch.contiguous_format):
        if like.is_contiguous(memory_format=fmt):
            assert out.is_contiguous(memory_format=fmt), f"output not in torch's memory format {fmt}"
            break
    expected = reference_direct(as_ref(x), as_ref(w), geom)
    if b is not None:
        expected = expected + as_ref(b)[None, :, None, None]
    tol = tolerance(dtype, geom.reduction_length, algorithm_scale=BY_NAME[algorithm].error_scale)
    what = (f"{algorithm} {str(dtype)[6:]} {'nhwc' if channels_last else 'nchw'} {geom} bias={bias} "
            f"config={getattr(config, 'name', 'heuristic')} seed={seed}")
    assert_close(out, expected, tol, what)


@pytest.mark.parametrize("algorithm", kernels.CONV2D_ALGORITHMS)
def test_random_geometry_heuristic_config(algorithm):
    seed = fresh_seed()
    rng = random.Random(seed)
    for i in range(4):
        problem = random_problem(rng, algorithm)
        run_case(algorithm, *problem, DTYPES[(seed + i) % 3], rng.random() < 0.5, rng.random() < 0.5,
                 seed + i)


@pytest.mark.parametrize("algorithm", kernels.CONV2D_ALGORITHMS)
def test_every_config_on_random_geometry(algorithm):
    """Each config of the algorithm once, on a random geometry it can run (a direct config only
    runs the kernel of its kind: depthwise configs get a C/g == 1 problem)."""
    seed = fresh_seed()
    rng = random.Random(seed)
    algo = BY_NAME[algorithm]
    seen = set()
    for i, dtype in enumerate(DTYPES):
        for j, cfg in enumerate(kernels.conv_configs(algorithm, dtype)):
            if cfg.name in seen:
                continue
            seen.add(cfg.name)
            for _ in range(200):
                problem = random_problem(rng, algorithm)
                if algo.config_unsupported(problem[0], dtype, cfg) is None:
                    break
            else:
                raise AssertionError(f"no random geometry fits config {cfg.name}")
            run_case(algorithm, *problem, dtype, (i + j) % 2 == 0, j % 2 == 1, seed + 97 * i + j, config=cfg)
    assert seen, algorithm


def test_stem_depthwise_and_small_k_run_on_every_gemm_algorithm(device):
    """The layers the GEMM family used to refuse: an RGB 7x7/2 stem, a depthwise 3x3, a 1x1 with K=8."""
    cases = [
        (ConvGeometry(1, 3, 15, 15, 16, 7, 7, stride=(2, 2), padding=(3, 3, 3, 3)), (2, 2), 3, 1, 1),
        (ConvGeometry(2, 12, 7, 7, 12, 3, 3, padding=(1, 1, 1, 1), groups=12), 1, 1, 1, 12),
        (ConvGeometry(2, 24, 5, 5, 8, 1, 1), 1, 0, 1, 1),
    ]
    seed = fresh_seed()
    for algorithm in ("implicit_gemm", "im2col"):
        for i, (geom, stride, padding, dilation, groups) in enumerate(cases):
            for j, dtype in enumerate(DTYPES):
                run_case(algorithm, geom, stride, padding, dilation, groups, dtype, j == 1, True, seed + i + j)


def test_auto_rule_picks_gemm_for_stems_and_1x1_and_direct_for_depthwise():
    choose = kernels.choose_algorithm
    assert choose(ConvGeometry(32, 3, 224, 224, 64, 7, 7, (2, 2), (3, 3, 3, 3)), torch.float16) == "implicit_gemm"
    assert choose(ConvGeometry(32, 256, 14, 14, 8, 1, 1), torch.float16) == "implicit_gemm"
    # a grayscale stem (one input channel, dense) is a stem: the flat GEMM, not the depthwise rule
    assert choose(ConvGeometry(32, 1, 28, 28, 32, 3, 3, padding=(1, 1, 1, 1)), torch.float16) == "implicit_gemm"
    assert choose(ConvGeometry(32, 144, 56, 56, 144, 3, 3, padding=(1, 1, 1, 1), groups=144),
                  torch.float16) == "direct"
    assert choose(ConvGeometry(8, 32, 14, 14, 32, 3, 3, padding=(1, 1, 1, 1), groups=8), torch.float16) == "direct"
    assert choose(ConvGeometry(8, 128, 14, 14, 128, 3, 3, padding=(1, 1, 1, 1), groups=4),
                  torch.float16) == "implicit_gemm"
