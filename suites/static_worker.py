"""Where :mod:`suites.static` compiles: clean worker processes, batched disassembly.

* Under ``TRITON_INTERPRET=1`` (tests, the CLI on a CPU machine) ``@triton.jit`` gives objects
  that cannot be compiled, so compiles run in worker subprocesses started without it.  A spec
  travels as its kernel's ``module`` + ``qualname`` (the worker imports the module itself) and the
  rest of the spec pickled.  No ``__main__`` re-import (unlike multiprocessing's spawn), so any
  caller works.
* One task is one spec for all its targets: the first target is compiled from the Python AST,
  the others from the first one's TTIR, which Triton 3.6 produces identically for sm_80 and
  sm_90 (the front end's code generation does not depend on the CUDA target below sm_100); this
  saves the front end, ~10% of the compile time, and :func:`compile_spec` can be told not to.
* Disassembling costs ~0.3 s per ``nvdisasm`` run, so :func:`fill_sass` disassembles the
  machine code of many kernels per run (:func:`suites.sass.disassemble_many`).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import importlib
import json
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable

from . import sass

_REPLY = "@@convbench-static@@ "
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

    Returns one :class:`~suites.static.StaticResult` per target with the cubin's resource usage
    and its machine code in ``sass_text`` (the SASS counts come from :func:`fill_sass`)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.runtime.jit import JITFunction

    from .static import StaticResult, target_name

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


# ---------------------------------------------------------------------------------- workers
def encode_task(spec, ccs) -> str:
    raw = raw_fn(spec.fn)
    module, qualname = getattr(raw, "__module__", None), getattr(raw, "__qualname__", "")
    if not module or "<locals>" in qualname:
        raise ValueError(f"static spec {spec.name!r}: its kernel must be a module-level "
                         f"@triton.jit function, got {qualname or raw!r}")
    payload = (module, qualname, dataclasses.replace(spec, fn=None), list(ccs))
    return base64.b64encode(pickle.dumps(payload)).decode()


def _run_task(task: str) -> list:
    from .static import StaticResult, target_name

    module, qualname, spec, ccs = pickle.loads(base64.b64decode(task))
    try:
        fn = importlib.import_module(module)
        for part in qualname.split("."):
            fn = getattr(fn, part)
    except Exception as exc:
        return [StaticResult(name=spec.name, target=target_name(cc),
                             error=f"{type(exc).__name__} finding {module}.{qualname}: {exc}") for cc in ccs]
    return compile_spec(dataclasses.replace(spec, fn=fn), ccs)


def worker_main() -> None:
    """Compile loop of one worker process: a task per stdin line, a reply line per task."""
    for line in sys.stdin:
        replies = [dict(r.to_dict(), compile_seconds=r.compile_seconds,
                        sass_text=base64.b64encode(r.sass_text).decode()) for r in _run_task(line.strip())]
        sys.stdout.write(_REPLY + json.dumps(replies) + "\n")
        sys.stdout.flush()


class Worker:
    """A fresh interpreter without TRITON_INTERPRET, seeing the same ``sys.path`` as this one."""

    def __init__(self):
        env = dict(os.environ)
        env.pop("TRITON_INTERPRET", None)
        env["PYTHONPATH"] = os.pathsep.join(p or os.getcwd() for p in sys.path)
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from suites.static_worker import worker_main; worker_main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=env, text=True)

    def run(self, task: str, name: str, ccs) -> list:
        from .static import StaticResult, target_name

        try:
            self.proc.stdin.write(task + "\n")
            self.proc.stdin.flush()
            for line in self.proc.stdout:
                if line.startswith(_REPLY):
                    replies = json.loads(line[len(_REPLY):])
                    for d in replies:
                        d["sass_text"] = base64.b64decode(d.get("sass_text", ""))
                    return [StaticResult.from_dict(d) for d in replies]
        except OSError:
            pass
        self.proc.wait()
        self.log.seek(0)
        tail = self.log.read()[-1500:]
        return [StaticResult(name=name, target=target_name(cc),
                             error=f"worker exited with status {self.proc.returncode}: {tail}") for cc in ccs]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        self.proc.wait()
        self.log.close()


def run_pool(tasks: list, jobs: int, done: Callable) -> None:
    """Run ``(spec, ccs, token)`` tasks on ``jobs`` workers; ``done(token, results)`` each."""
    queue = [(encode_task(spec, ccs), spec.name, ccs, token) for spec, ccs, token in reversed(tasks)]
    lock = threading.Lock()

    def drive():
        worker = Worker()
        try:
            while True:
                with lock:
                    if not queue:
                        return
                    task, name, ccs, token = queue.pop()
                results = worker.run(task, name, ccs)
                if worker.proc.poll() is not None:  # it died: later tasks get a new one
                    worker.close()
                    worker = Worker()
                with lock:
                    done(token, results)
        finally:
            worker.close()

    threads = [threading.Thread(target=drive, daemon=True) for _ in range(min(jobs, len(tasks)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
