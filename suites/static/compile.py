"""Compiling one spec for sm_80/sm_90 in this process, and batched disassembly of the results.

* One call is one spec for all its targets: the first target is compiled from the Python AST,
  the others from the first one's TTIR, which Triton 3.6 produces identically for sm_80 and
  sm_90 (the front end's code generation does not depend on the CUDA target below sm_100); this
  saves the front end, ~10% of the compile time, and :func:`compile_spec` can be told not to.
* Disassembling costs ~0.3 s per ``nvdisasm`` run, so :func:`fill_sass` disassembles the
  machine code of many kernels per run (:func:`.sass.disassemble_many`).

Under ``TRITON_INTERPRET=1`` ``@triton.jit`` gives objects that cannot be compiled: then the
compiles run in :mod:`.worker` processes started without it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import threading
import time

from . import sass
from .result import StaticResult, target_name

#: Triton versions whose TTIR is known to be target-independent between sm_80 and sm_90
TTIR_REUSE_VERSIONS = ("3.6.",)


def raw_fn(fn):
    """The Python function behind a JITFunction or an interpreter InterpretedFunction."""
    return getattr(fn, "fn", fn)


def divisibility_attrs(spec) -> dict:
    """Triton's "multiple of 16" specialization of the arguments a real launch would get it for
    (aligned pointers, sizes divisible by 16): without it loads are not vectorized."""
    names = spec.fn.arg_names
    attrs = {}
    for arg in getattr(spec, "divisible_by_16", ()) or ():
        if arg not in names:
            raise ValueError(f"{spec.name}: divisible_by_16 names {arg!r}, not an argument of "
                             f"{spec.fn.__name__}")
        attrs[(names.index(arg),)] = [["tt.divisibility", 16]]
    return attrs


def compile_spec(spec, ccs, *, reuse_ttir: bool = True) -> list:
    """Compile ``spec`` for each of ``ccs`` in this process (needs a real JITFunction).

    Returns one :class:`~.result.StaticResult` per target with the cubin's resource usage
    and its machine code in ``sass_text`` (the SASS counts come from :func:`fill_sass`)."""
    import triton  # triton only when compiling or reading its version (a slow import)
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.runtime.jit import JITFunction

    reuse_ttir = reuse_ttir and triton.__version__.startswith(TTIR_REUSE_VERSIONS)
    options = {"num_warps": spec.num_warps, "num_stages": spec.num_stages}
    results, ttir_path = [], None
    try:
        for cc in ccs:
            result = StaticResult(name=spec.name, target=target_name(cc), num_warps=spec.num_warps,
                                  num_stages=spec.num_stages, default=spec.default,
                                  expect_tensor_cores=spec.expect_tensor_cores,
                                  triton_version=triton.__version__, ptxas_version=sass.ptxas_version())
            results.append(result)
            start = time.perf_counter()
            try:
                if ttir_path is not None:
                    src = ttir_path
                elif not isinstance(spec.fn, JITFunction):
                    raise TypeError(f"{spec.name}: fn is {type(spec.fn).__name__}, not a @triton.jit "
                                    "function (was kernels imported with TRITON_INTERPRET=1?)")
                else:
                    src = ASTSource(fn=spec.fn, signature=dict(spec.signature),
                                    constexprs=dict(spec.constexprs), attrs=divisibility_attrs(spec))
                compiled = triton.compile(src, target=GPUTarget("cuda", cc, 32), options=options)
                cubin, function = compiled.asm["cubin"], compiled.metadata.name
                usage = sass.res_usage(cubin, function)
                result.sass_text = sass.text_section(cubin, function)
            except Exception as exc:  # recorded, reported and flagged, never swallowed silently
                result.error = f"{type(exc).__name__}: {str(exc).strip()[:2000]}"
                continue
            finally:
                result.compile_seconds = time.perf_counter() - start
            result.registers = usage.get("REG", 0)
            result.stack_bytes = usage.get("STACK", 0)
            result.static_shared_bytes = usage.get("SHARED", 0)
            result.shared_bytes = int(compiled.metadata.shared)
            if reuse_ttir and ttir_path is None and "ttir" in compiled.asm:
                with tempfile.NamedTemporaryFile("w", suffix=".ttir", delete=False) as f:
                    f.write(compiled.asm["ttir"])
                ttir_path = f.name
    finally:
        if ttir_path is not None:
            with contextlib.suppress(OSError):
                os.remove(ttir_path)
    return results


def fill_sass(results: list, jobs: int) -> None:
    """Disassemble the compiled results' machine code, a few ``nvdisasm`` runs per target
    (chunks in parallel), and fill in instruction, spill and MMA counts."""
    chunks = []
    for cc in sorted({r.cc for r in results}):
        todo = [r for r in results if r.cc == cc and r.sass_text and not r.error]
        n = max(1, min(jobs, len(todo)))
        chunks += [(cc, todo[i::n]) for i in range(n) if todo[i::n]]

    def work(chunk):
        cc, rs = chunk
        try:
            counts = sass.disassemble_many([r.sass_text for r in rs], cc)
        except (OSError, ValueError, subprocess.CalledProcessError) as exc:
            for r in rs:
                r.error = f"disassembly failed: {type(exc).__name__}: {exc}"
            return
        for r, (count, ops) in zip(rs, counts):
            r.sass_instructions = count
            r.spill_store_bytes, r.spill_load_bytes, r.mma = sass.count_ops(ops)

    threads = [threading.Thread(target=work, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        r.sass_text = b""
