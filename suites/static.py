"""Static analysis of every Triton kernel and config, without a GPU.

Each :class:`kernels._static_spec.StaticSpec` is compiled with
``triton.compile(ASTSource(fn, signature, constexprs), target=GPUTarget("cuda", cc, 32))`` for
sm_80 and sm_90 on the CPU, and the cubin is read with the ``cuobjdump`` bundled in the Triton
wheel (:mod:`suites.sass`): registers, spill bytes and stack frame, shared memory (Triton's
dynamic allocation plus any static), SASS instruction count and tensor-core instructions.
These numbers are deterministic for a Triton/ptxas version, so they make a GPU-free regression
gate (:mod:`suites.static_compare`).

API: :func:`analyse` (one spec, one target) and :func:`analyse_all` (many), both used by the
``convbench static`` CLI and by the kernel tests.  Compiles run in worker subprocesses with
``TRITON_INTERPRET`` unset (under the interpreter ``@triton.jit`` gives objects that cannot be
compiled); workers import the kernel's module themselves.  Results are
cached on disk under a key of the spec, the Triton and ptxas versions and a digest of the
kernel package's source, so the CLI and the tests share one compile.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import hashlib
import importlib
import json
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from . import sass

#: bump when the meaning of a recorded field changes (invalidates the cache)
SCHEMA = 1
TARGETS = {"sm_80": 80, "sm_90": 90}
#: largest shared memory one block may opt in to, bytes (A100: 163 KB, H100: 227 KB)
SHARED_LIMIT = {80: 163 * 1024, 90: 227 * 1024}


def parse_target(target) -> int:
    """``"sm_90"``, ``"sm90"``, ``"90"`` or ``90`` -> compute capability 90."""
    text = str(target).strip().lower().replace("sm_", "").replace("sm", "")
    if not text.isdigit() or int(text) not in SHARED_LIMIT:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    return int(text)


def target_name(cc: int) -> str:
    return f"sm_{cc}"


@dataclass
class StaticResult:
    """What compiling one spec for one target produced."""

    name: str
    target: str
    num_warps: int = 4
    num_stages: int = 3
    default: bool = False
    expect_tensor_cores: bool = False
    registers: int = 0
    stack_bytes: int = 0
    spill_store_bytes: int = 0
    spill_load_bytes: int = 0
    #: Triton's (dynamic) shared memory allocation, bytes
    shared_bytes: int = 0
    #: static shared memory in the cubin (barriers and the like), bytes
    static_shared_bytes: int = 0
    sass_instructions: int = 0
    #: tensor-core opcode family -> count, e.g. {"HGMMA": 16}
    mma: dict = field(default_factory=dict)
    triton_version: str = ""
    ptxas_version: str = ""
    #: the compile or disassembly error, if any (then the numbers above are zero)
    error: str | None = None
    compile_seconds: float = field(default=0.0, compare=False)
    cached: bool = field(default=False, compare=False)

    @property
    def cc(self) -> int:
        return parse_target(self.target)

    @property
    def spills(self) -> bool:
        return self.spill_store_bytes + self.spill_load_bytes > 0

    @property
    def total_shared_bytes(self) -> int:
        return self.shared_bytes + self.static_shared_bytes

    @property
    def shared_limit_bytes(self) -> int:
        return SHARED_LIMIT[self.cc]

    @property
    def tensor_core_instructions(self) -> int:
        """Tensor-core instructions of the kind the target is judged by: HMMA-family on sm_80,
        warpgroup HGMMA-family on sm_90."""
        families = sass.WARPGROUP_MMA if self.cc >= 90 else sass.WARP_MMA
        return sum(self.mma.get(f, 0) for f in families)

    @property
    def has_tensor_cores(self) -> bool:
        return self.tensor_core_instructions > 0

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("compile_seconds")
        d.pop("cached")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "StaticResult":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# ----------------------------------------------------------------------------- compile one
def _raw_fn(fn):
    """The Python function behind a JITFunction or an interpreter InterpretedFunction."""
    return getattr(fn, "fn", fn)


def _divisibility_attrs(spec) -> dict:
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


def _compile(spec, cc: int) -> StaticResult:
    """Compile ``spec`` for ``cc`` in this process (needs a real JITFunction) and read the cubin."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.runtime.jit import JITFunction

    result = StaticResult(name=spec.name, target=target_name(cc), num_warps=spec.num_warps,
                          num_stages=spec.num_stages, default=spec.default,
                          expect_tensor_cores=spec.expect_tensor_cores,
                          triton_version=triton.__version__, ptxas_version=sass.ptxas_version())
    start = time.perf_counter()
    try:
        if not isinstance(spec.fn, JITFunction):
            raise TypeError(f"{spec.name}: fn is {type(spec.fn).__name__}, not a @triton.jit "
                            "function (was kernels imported with TRITON_INTERPRET=1?)")
        src = ASTSource(fn=spec.fn, signature=dict(spec.signature), constexprs=dict(spec.constexprs),
                        attrs=_divisibility_attrs(spec))
        compiled = triton.compile(src, target=GPUTarget("cuda", cc, 32),
                                  options={"num_warps": spec.num_warps, "num_stages": spec.num_stages})
        summary = sass.disassemble(compiled.asm["cubin"], compiled.metadata.name)
    except Exception as exc:  # recorded, reported and flagged, never swallowed silently
        result.error = f"{type(exc).__name__}: {str(exc).strip()[:2000]}"
        result.compile_seconds = time.perf_counter() - start
        return result
    result.compile_seconds = time.perf_counter() - start
    result.registers = summary.registers
    result.stack_bytes = summary.stack_bytes
    result.spill_store_bytes = summary.spill_store_bytes
    result.spill_load_bytes = summary.spill_load_bytes
    result.shared_bytes = int(compiled.metadata.shared)
    result.static_shared_bytes = summary.static_shared_bytes
    result.sass_instructions = summary.instructions
    result.mma = summary.mma
    return result


# ------------------------------------------------------------------ workers (subprocesses)
_REPLY = "@@convbench-static@@ "


def _encode_task(spec, cc: int) -> str:
    """A spec travels to a worker as its kernel's ``module`` + ``qualname`` and the rest pickled:
    the worker imports the module itself, so it gets a compilable ``JITFunction``."""
    raw = _raw_fn(spec.fn)
    module, qualname = getattr(raw, "__module__", None), getattr(raw, "__qualname__", "")
    if not module or "<locals>" in qualname:
        raise ValueError(f"static spec {spec.name!r}: its kernel must be a module-level "
                         f"@triton.jit function, got {qualname or raw!r}")
    payload = (module, qualname, dataclasses.replace(spec, fn=None), cc)
    return base64.b64encode(pickle.dumps(payload)).decode()


def _run_task(task: str) -> StaticResult:
    module, qualname, spec, cc = pickle.loads(base64.b64decode(task))
    try:
        fn = importlib.import_module(module)
        for part in qualname.split("."):
            fn = getattr(fn, part)
    except Exception as exc:
        return StaticResult(name=spec.name, target=target_name(cc),
                            error=f"{type(exc).__name__} finding {module}.{qualname}: {exc}")
    return _compile(dataclasses.replace(spec, fn=fn), cc)


def _worker_main() -> None:
    """Compile loop of one worker process: a JSON task per stdin line, a reply per task."""
    for line in sys.stdin:
        result = _run_task(line.strip())
        reply = dict(result.to_dict(), compile_seconds=result.compile_seconds)
        sys.stdout.write(_REPLY + json.dumps(reply) + "\n")
        sys.stdout.flush()


class _Worker:
    """A fresh interpreter without TRITON_INTERPRET (so ``@triton.jit`` gives compilable
    functions), seeing the same ``sys.path`` as this process; no ``__main__`` re-import."""

    def __init__(self):
        env = dict(os.environ)
        env.pop("TRITON_INTERPRET", None)
        env["PYTHONPATH"] = os.pathsep.join(p or os.getcwd() for p in sys.path)
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from suites.static import _worker_main; _worker_main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=env, text=True)

    def run(self, task: str, name: str, cc: int) -> StaticResult:
        try:
            self.proc.stdin.write(task + "\n")
            self.proc.stdin.flush()
            for line in self.proc.stdout:
                if line.startswith(_REPLY):
                    return StaticResult.from_dict(json.loads(line[len(_REPLY):]))
        except OSError:
            pass
        self.proc.wait()
        self.log.seek(0)
        tail = self.log.read()[-1500:]
        return StaticResult(name=name, target=target_name(cc),
                            error=f"worker exited with status {self.proc.returncode}: {tail}")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        self.proc.wait()
        self.log.close()


def _run_pool(tasks: list, jobs: int, done: Callable) -> None:
    """Run (task, name, cc, token) tasks on ``jobs`` workers; ``done(token, result)``."""
    queue: list = list(reversed(tasks))
    lock = threading.Lock()

    def drive():
        worker = _Worker()
        try:
            while True:
                with lock:
                    if not queue:
                        return
                    task, name, cc, token = queue.pop()
                result = worker.run(task, name, cc)
                if worker.proc.poll() is not None:  # died: later tasks get a new worker
                    worker.close()
                    worker = _Worker()
                with lock:
                    done(token, result)
        finally:
            worker.close()

    threads = [threading.Thread(target=drive, daemon=True) for _ in range(min(jobs, len(tasks)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# ----------------------------------------------------------------------------------- cache
def cache_dir() -> str:
    root = os.environ.get("CONVBENCH_CACHE_DIR")
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                            "convbench")
    return os.path.join(root, "static")


@functools.lru_cache(maxsize=None)
def _file_digest(path: str, mtime_ns: int) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _tree_digest(paths: Iterable[str]) -> str:
    h = hashlib.sha256()
    for path in sorted(set(paths)):
        h.update(path.encode())
        h.update(_file_digest(path, os.stat(path).st_mtime_ns).encode())
    return h.hexdigest()


def source_digest(fn) -> str:
    """Digest of the source a kernel may depend on: every ``.py`` file of its top-level package
    (so helpers in sibling modules count), or its own file when it is a plain module."""
    module = sys.modules.get(getattr(_raw_fn(fn), "__module__", "") or "")
    files = [__file__, sass.__file__]
    top = sys.modules.get(module.__name__.split(".")[0]) if module else None
    if top is not None and getattr(top, "__path__", None) and getattr(top, "__file__", None):
        for root in top.__path__:
            for dirpath, _dirs, names in os.walk(root):
                files += [os.path.join(dirpath, n) for n in names if n.endswith(".py")]
    elif module is not None and getattr(module, "__file__", None):
        files.append(module.__file__)
    return _tree_digest(files)


def cache_key(spec, cc: int) -> str:
    import triton

    payload = {
        "schema": SCHEMA, "name": spec.name, "signature": dict(spec.signature),
        "constexprs": {k: repr(v) for k, v in sorted(spec.constexprs.items())},
        "num_warps": spec.num_warps, "num_stages": spec.num_stages, "cc": cc,
        "default": spec.default, "expect_tensor_cores": spec.expect_tensor_cores,
        "divisible_by_16": sorted(getattr(spec, "divisible_by_16", ()) or ()),
        "triton": triton.__version__, "ptxas": sass.ptxas_version(), "source": source_digest(spec.fn),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def _cache_load(key: str) -> StaticResult | None:
    try:
        with open(os.path.join(cache_dir(), key + ".json")) as f:
            result = StaticResult.from_dict(json.load(f))
    except (OSError, ValueError, TypeError):
        return None
    result.cached = True
    return result


def _cache_store(key: str, result: StaticResult) -> None:
    if result.error:
        return  # errors may be environmental: always retry them
    path = os.path.join(cache_dir(), key + ".json")
    with contextlib.suppress(OSError):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(result.to_dict(), f)
        os.replace(tmp, path)


# ------------------------------------------------------------------------------------- API
def select(specs: Sequence, filter: str | None = None) -> list:
    """Specs whose name contains ``filter`` (all when None); duplicate names are an error."""
    seen: set = set()
    for spec in specs:
        if spec.name in seen:
            raise ValueError(f"static spec name {spec.name!r} is declared twice")
        seen.add(spec.name)
    return [s for s in specs if not filter or filter in s.name]


def analyse_all(targets: Iterable = ("sm_80", "sm_90"), specs: Sequence | None = None, *,
                filter: str | None = None, jobs: int | None = None, cache: bool = True,
                progress: Callable[[StaticResult], Any] | None = None) -> list[StaticResult]:
    """Compile every spec (default: ``kernels.static_specs()``) for every target.

    Returns one :class:`StaticResult` per (spec, target), specs in the given order.  Compile
    errors are recorded in ``result.error``, not raised.  ``jobs`` worker processes (default:
    the CPU count) compile what the cache does not hold.
    """
    ccs = [parse_target(t) for t in targets]
    if not ccs:
        raise ValueError("targets must name at least one of sm_80, sm_90")
    if specs is None:
        import kernels

        specs = kernels.static_specs()
    specs = select(list(specs), filter)
    if jobs is not None and jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    jobs = jobs or os.cpu_count() or 1

    results: dict = {}
    todo = []  # (index, spec, cc, key)
    for i, spec in enumerate(specs):
        for cc in ccs:
            key = cache_key(spec, cc) if cache else None
            hit = _cache_load(key) if key else None
            if hit is not None:
                results[(i, cc)] = hit
                if progress:
                    progress(hit)
            else:
                todo.append((i, spec, cc, key))

    from triton.runtime.jit import JITFunction

    if todo and (jobs == 1 or len(todo) == 1) and all(isinstance(s.fn, JITFunction) for _, s, _, _ in todo):
        for i, spec, cc, key in todo:
            results[(i, cc)] = _finish(_compile(spec, cc), key, progress)
    elif todo:
        tasks = [(_encode_task(spec, cc), spec.name, cc, (i, cc, key)) for i, spec, cc, key in todo]

        def done(token, result):
            i, cc, key = token
            results[(i, cc)] = _finish(result, key, progress)

        _run_pool(tasks, jobs, done)
    return [results[(i, cc)] for i in range(len(specs)) for cc in ccs]


def _finish(result: StaticResult, key: str | None, progress) -> StaticResult:
    if key:
        _cache_store(key, result)
    if progress:
        progress(result)
    return result


def analyse(spec, target="sm_90", *, cache: bool = True) -> StaticResult:
    """Compile one spec for one target (``"sm_80"``/``"sm_90"`` or 80/90)."""
    return analyse_all([target], [spec], jobs=1, cache=cache)[0]


# ------------------------------------------------------------------------------ documents
def versions() -> dict:
    import triton

    return {"triton_version": triton.__version__, "ptxas_version": sass.ptxas_version()}


def to_document(results: Sequence[StaticResult], targets: Iterable) -> dict:
    """The JSON document ``convbench static --format json`` writes (and baselines are)."""
    names = [target_name(parse_target(t)) for t in targets]
    return {
        "schema": SCHEMA, "tool": "convbench static", **versions(), "targets": names,
        "shared_limit_bytes": {t: SHARED_LIMIT[parse_target(t)] for t in names},
        "results": [r.to_dict() for r in sorted(results, key=lambda r: (r.name, r.target))],
    }


def load_document(path: str) -> dict:
    with open(path) as f:
        doc = json.load(f)
    if not isinstance(doc, dict) or "results" not in doc:
        raise ValueError(f"{path} is not a convbench static document (no 'results')")
    return doc


def results_of(doc: dict) -> list[StaticResult]:
    return [StaticResult.from_dict(d) for d in doc["results"]]
