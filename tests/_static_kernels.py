"""Small kernels for testing the static analysis itself (not part of the product).

``tiled_gemm`` in a sane configuration, and the planted regressions ``tests/test_static.py``
expects the comparison to catch: a tile so large it spills, the same GEMM in fp32 with
``input_precision="ieee"`` (no tensor cores), and a larger tile that needs more registers.
"""

import triton
import triton.language as tl

from kernels._static_spec import StaticSpec


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


#: the sane kernel, as a baseline would record it
GOOD = _spec("test.gemm/fp16/BM64-BN64-BK32-w4-s2", "fp16", 64, 64, 32,
             default=True, expect_tensor_cores=True)
#: planted regressions, each compared against GOOD under GOOD's name
HUGE_TILE = _spec("test.gemm/fp16/BM256-BN256-BK64-w4-s2", "fp16", 256, 256, 64)
FP32_IEEE = _spec("test.gemm/fp32/BM64-BN64-BK32-w4-s2", "fp32", 64, 64, 32, precision="ieee")
WIDER = _spec("test.gemm/fp16/BM64-BN128-BK32-w4-s2", "fp16", 64, 128, 32)


def static_specs():
    return [GOOD, HUGE_TILE, FP32_IEEE, WIDER]


@triton.jit
def row_normalize(x_ptr, y_ptr, N,
                  # one row of N <= BLOCK elements per program, kept in registers
                  BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + row * N + cols, mask=cols < N, other=0.0)
    mean = tl.sum(x, axis=0) / N
    d = tl.where(cols < N, x - mean, 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(d * d, axis=0) / N + 1e-5)
    tl.store(y_ptr + row * N + cols, d * rstd, mask=cols < N)
