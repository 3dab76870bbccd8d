"""What a kernel module declares so the static compile check can build it without a GPU.

Every kernel module exposes ``static_specs() -> list[StaticSpec]``: one entry per
(kernel, config, dtype) worth checking, each enough for
``triton.compile(ASTSource(fn, signature, constexprs), target=GPUTarget("cuda", cc, 32))``.
``convbench.suites.static`` compiles them for sm_80 and sm_90 and reads registers, spills, shared
memory and tensor-core instructions; ``kernels.static_specs()`` gathers them from the explicit
module list in ``kernels/__init__.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StaticSpec:
    #: unique and stable, e.g. "conv.implicit_gemm/fp16/BM128-BN128-BK32-w4-s3"
    name: str
    #: the @triton.jit function
    fn: Any
    #: argument name -> Triton type string ("*fp16", "*fp32", "i32", "i64", "fp32", "constexpr")
    signature: dict[str, str]
    #: values of the constexpr arguments
    constexprs: dict[str, Any] = field(default_factory=dict)
    num_warps: int = 4
    num_stages: int = 3
    #: the config a default launch uses (a spill here is an error, not a warning)
    default: bool = False
    #: whether tensor-core instructions (HMMA/HGMMA) are expected in the SASS
    expect_tensor_cores: bool = False
    #: where tensor cores are expected: whether sm_90 should run them as warpgroup MMA (wgmma,
    #: SASS HGMMA).  Triton emits wgmma only for tiles of at least 64 rows (one warpgroup's M);
    #: a smaller tile (a depthwise weight gradient's 16 x 16) runs mma.sync (HMMA) on sm_90 too
    expect_wgmma: bool = True
    #: arguments a real launch sees as multiples of 16 (Triton's "D" specialization: pointers
    #: 16-byte aligned, integers divisible by 16); compile them with
    #: ``attrs={(fn.arg_names.index(a),): [["tt.divisibility", 16]]}`` or vectorized loads,
    #: cp.async pipelining and so registers/spills differ from what the GPU runs
    divisible_by_16: tuple[str, ...] = ()
