"""Static analysis of every Triton kernel and config, without a GPU.

Each :class:`convbench.kernels._static_spec.StaticSpec` is compiled with
``triton.compile(ASTSource(fn, signature, constexprs), target=GPUTarget("cuda", cc, 32))`` for
sm_80 and sm_90 on the CPU, and the cubin is read with the tools bundled in the Triton wheel
(:mod:`.sass`): registers, stack frame and static shared memory (``cuobjdump -res-usage``),
spill bytes, SASS instruction count and tensor-core instructions (``nvdisasm``), plus Triton's
shared memory allocation and the Triton and ptxas versions.  These numbers are deterministic for
a Triton/ptxas version, so they make a GPU-free regression gate (:mod:`.baseline`).

API, used by the ``convbench static`` CLI and by the kernel tests::

    from convbench.suites import static
    r = static.analyse(spec, "sm_90")          # one spec, one target -> StaticResult
    rs = static.analyse_all(["sm_80", "sm_90"])  # every convbench.kernels.static_specs() entry

Compiles run in worker subprocesses with ``TRITON_INTERPRET`` unset (:mod:`.worker`),
so this works from a test session that runs the interpreter.  Results are cached on disk
(:mod:`.cache`), so the CLI and the tests share one compile and an edit recompiles only what it
can affect.

Modules: :mod:`.result` (the result model, targets, JSON documents), :mod:`.analysis` (the API
below), :mod:`.compile` (one spec in this process, batched disassembly), :mod:`.worker` (clean
compile processes), :mod:`.cache`, :mod:`.sass` (the cubin tools), :mod:`.baseline` (the
regression gate's comparison of two documents).  Rendering is :mod:`convbench.reports.static_report`.
"""

from .analysis import analyse, analyse_all, select
from .baseline import Flag, StaticComparison, compare_documents
from .cache import cache_dir
from .result import (SCHEMA, SHARED_LIMIT, TARGETS, StaticResult, dump_document, load_document, parse_target,
                     results_of, target_name, to_document, versions)

__all__ = [
    "analyse", "analyse_all", "select", "Flag", "StaticComparison", "compare_documents", "cache_dir",
    "SCHEMA", "SHARED_LIMIT", "TARGETS", "StaticResult", "dump_document", "load_document", "parse_target",
    "results_of", "target_name", "to_document", "versions",
]
