"""GPU only: every kernel and config compiled and run against the float64 reference.

Collected everywhere, skipped with a reason without CUDA (the ``gpu`` mark).  Fresh random
inputs per run (the seed is in every failure message), NaN-poisoned outputs (conftest),
tolerances from the dtype, the algorithm's error scale, the reduction length and, for fp32, the
input precision ("ieee" to fp32 tolerances, "tf32" to TF32 ones); NCHW and channels_last; a
problem whose element offsets pass 2**31 (the 64-bit index path).
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from convbench import kernels
from convbench.kernels.conv import BY_NAME
from convbench.reference.conv import direct as reference_direct
from convbench.reference.geometry import ConvGeometry
from tests._compare import as_ref, assert_close, tolerance
from tests._operands import fresh_seed

pytestmark = pytest.mark.gpu

PRECISIONS = [(torch.float32, "ieee"), (torch.float32, "tf32"), (torch.float16, "ieee"), (torch.bfloat16, "ieee")]
GEOMETRIES = [  # a dense 3x3 (every algorithm), a strided grouped one, a stem, a depthwise layer, a 1x1
    ConvGeometry(2, 32, 14, 14, 48, 3, 3, padding=(1, 1, 1, 1)),
    ConvGeometry(2, 32, 15, 13, 32, 3, 3, stride=(2, 2), padding=(1, 1, 1, 1), groups=2),
    ConvGeometry(2, 3, 33, 33, 16, 7, 7, stride=(2, 2), padding=(3, 3, 3, 3)),
    ConvGeometry(2, 24, 12, 12, 24, 3, 3, padding=(1, 1, 1, 1), groups=24),
    ConvGeometry(2, 64, 9, 9, 8, 1, 1),
]


def _check(algorithm, geom, dtype, precision, channels_last, seed, config=None):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(geom.input_shape, generator=g).to(dtype)
    w = (torch.randn(geom.weight_shape, generator=g) / np.sqrt(geom.reduction_length)).to(dtype)
    b = torch.randn(geom.k, generator=g).to(dtype)
    expected = reference_direct(as_ref(x), as_ref(w), geom) + as_ref(b)[None, :, None, None]
    x, w, b = x.cuda(), w.cuda(), b.cuda()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = kernels.conv2d(x, w, b, geom.stride, (geom.padding[0], geom.padding[2]), geom.dilation, geom.groups,
                         algorithm=algorithm, input_precision=precision, config=config)
    torch.cuda.synchronize()
    tol = tolerance(dtype, geom.reduction_length, algorithm_scale=BY_NAME[algorithm].error_scale,
                    input_precision=precision)
    assert_close(out, expected, tol, f"{algorithm} {dtype} {precision} cl={channels_last} {geom} "
                                     f"config={getattr(config, 'name', 'heuristic')} seed={seed}")


@pytest.mark.parametrize("dtype,precision", PRECISIONS, ids=["fp32", "tf32", "fp16", "bf16"])
@pytest.mark.parametrize("algorithm", kernels.CONV2D_ALGORITHMS)
def test_every_config_compiled(algorithm, dtype, precision):
    seed = fresh_seed()
    algo = BY_NAME[algorithm]
    for i, cfg in enumerate(kernels.conv_configs(algorithm, dtype)):
        for j, geom in enumerate(GEOMETRIES):
            if algo.unsupported(geom, dtype) or algo.config_unsupported(geom, dtype, cfg):
                continue
            _check(algorithm, geom, dtype, precision, (i + j) % 2 == 0, seed + 31 * i + j, config=cfg)


@pytest.mark.parametrize("algorithm", kernels.CONV2D_ALGORITHMS)
def test_heuristic_config_both_layouts(algorithm):
    seed = fresh_seed()
    for dtype, precision in PRECISIONS:
        for geom in GEOMETRIES:
            if BY_NAME[algorithm].unsupported(geom, dtype):
                continue
            for cl in (False, True):
                _check(algorithm, geom, dtype, precision, cl, seed)


def test_random_geometry_against_torch():
    seed = fresh_seed()
    rng = random.Random(seed)
    for i in range(40):
        groups = rng.choice([1, 1, 2, 4])
        cg, kg = rng.randint(1, 40 // groups), rng.randint(1, 40 // groups)
        r, s = rng.randint(1, 7), rng.randint(1, 7)
        stride, dil = (rng.randint(1, 3), rng.randint(1, 3)), (rng.randint(1, 3), rng.randint(1, 3))
        h, w = rng.randint((r - 1) * dil[0] + 1, 40), rng.randint((s - 1) * dil[1] + 1, 40)
        x = torch.randn(rng.randint(1, 3), cg * groups, h, w, device="cuda", dtype=torch.float16)
        wt = torch.randn(kg * groups, cg, r, s, device="cuda", dtype=torch.float16) / (cg * r * s) ** 0.5
        expected = F.conv2d(x.double(), wt.double(), None, stride, 0, dil, groups)
        for algorithm in ("direct", "im2col", "implicit_gemm"):
            out = kernels.conv2d(x, wt, None, stride, 0, dil, groups, algorithm=algorithm)
            err = ((out.double() - expected).abs().max() / expected.abs().max().clamp_min(1)).item()
            assert err < tolerance(torch.float16, cg * r * s), (algorithm, i, seed, err)


def test_offsets_past_2_31_use_64_bit_indices():
    """A 1x1 conv over an input of more than 2**31 elements (fp16: 4.3 GB); the last rows are
    compared with torch on the same rows, where 32-bit offsets would have wrapped."""
    n, c, h, w = 1, 4, 32768, 16400
    assert n * c * h * w > 2**31
    x = torch.randn(n, c, h, w, device="cuda", dtype=torch.float16)
    wt = torch.randn(4, 4, 1, 1, device="cuda", dtype=torch.float16) / 2
    for algorithm in ("direct", "implicit_gemm"):
        out = kernels.conv2d(x, wt, algorithm=algorithm)
        tail = F.conv2d(x[:, :, -4:].float(), wt.float())
        torch.testing.assert_close(out[:, :, -4:].float(), tail, rtol=2e-3, atol=2e-3)
        del out
        torch.cuda.empty_cache()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_pools_and_norms_compiled(dtype):
    x = torch.randn(4, 32, 17, 15, device="cuda").to(dtype)
    for cl in (False, True):
        xi = x.contiguous(memory_format=torch.channels_last) if cl else x
        pairs = [
            (kernels.max_pool2d(xi, 3, 2, 1), F.max_pool2d(xi.float(), 3, 2, 1)),
            (kernels.avg_pool2d(xi, 3, 2, 1, count_include_pad=False), F.avg_pool2d(xi.float(), 3, 2, 1,
                                                                                    count_include_pad=False)),
            (kernels.adaptive_avg_pool2d(xi, 1), F.adaptive_avg_pool2d(xi.float(), 1)),
            (kernels.group_norm(xi, 4), F.group_norm(xi.float(), 4)),
            (kernels.layer_norm(xi, (32, 17, 15)), F.layer_norm(xi.float(), (32, 17, 15))),
            (kernels.batch_norm(xi, torch.zeros(32, device="cuda"), torch.ones(32, device="cuda"), training=True),
             F.batch_norm(xi.float(), torch.zeros(32, device="cuda"), torch.ones(32, device="cuda"), training=True)),
        ]
        tol = {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 2e-2}[dtype]
        for ours, theirs in pairs:
            torch.testing.assert_close(ours.float(), theirs, rtol=tol, atol=tol)
