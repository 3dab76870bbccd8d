"""Small kernels for testing the static analysis itself (not part of the product).

``tiled_gemm`` in a sane configuration (:data:`GOOD`) and the planted regressions that
``tests/test_static.py`` expects ``convbench static --compare`` to catch when they replace it
under the same name: a much larger tile (:data:`BIG_TILE`: spills on sm_80, +60% registers on
sm_90) and the same GEMM in fp32 with ``input_precision="ieee"`` (:data:`FP32_IEEE`: no tensor
cores).  The ``*_specs`` functions are what ``convbench static --specs MODULE:FUNCTION`` loads.
"""

import triton
import triton.language as tl

from convbench.kernels._static_spec import StaticSpec


@triton.jit
def tiled_gemm(a_ptr, b_ptr, c_ptr, M, N, K,
               # tile sizes and dot precision
               BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, PRECISION: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rm = pid_m * BM + tl.arange(0, BM)
    rn = pid_n * BN + tl.arange(0, BN)
    rk = tl.arange(0, BK)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k in range(0, K, BK):
        a = tl.load(a_ptr + rm[:, None] * K + (k + rk)[None, :],
                    mask=(rm[:, None] < M) & ((k + rk)[None, :] < K), other=0.0)
        b = tl.load(b_ptr + (k + rk)[:, None] * N + rn[None, :],
                    mask=((k + rk)[:, None] < K) & (rn[None, :] < N), other=0.0)
        acc += tl.dot(a, b, input_precision=PRECISION)
    tl.store(c_ptr + rm[:, None] * N + rn[None, :], acc, mask=(rm[:, None] < M) & (rn[None, :] < N))


def _spec(name, dtype, bm, bn, bk, precision="ieee", warps=4, stages=2, **kw):
    sig = {"a_ptr": f"*{dtype}", "b_ptr": f"*{dtype}", "c_ptr": "*fp32", "M": "i32", "N": "i32",
           "K": "i32", "BM": "constexpr", "BN": "constexpr", "BK": "constexpr",
           "PRECISION": "constexpr"}
    return StaticSpec(name=name, fn=tiled_gemm, signature=sig,
                      constexprs={"BM": bm, "BN": bn, "BK": bk, "PRECISION": precision},
                      num_warps=warps, num_stages=stages, **kw)


NAME = "test.gemm/fp16/BM64-BN64-BK32-w4-s2"
#: the sane kernel, as the baseline records it
GOOD = _spec(NAME, "fp16", 64, 64, 32, default=True, expect_tensor_cores=True)
#: planted regressions: each replaces GOOD under GOOD's name
BIG_TILE = _spec(NAME, "fp16", 128, 128, 32, stages=3, default=True, expect_tensor_cores=True)
FP32_IEEE = _spec(NAME, "fp32", 64, 64, 32, precision="ieee", default=True, expect_tensor_cores=True)


def good_specs():
    return [GOOD]


def big_tile_specs():
    return [BIG_TILE]


def fp32_specs():
    return [FP32_IEEE]

