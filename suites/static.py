"""Static analysis of every Triton kernel and config, without a GPU.

Each :class:`kernels._static_spec.StaticSpec` is compiled with
``triton.compile(ASTSource(fn, signature, constexprs), target=GPUTarget("cuda", cc, 32))`` for
sm_80 and sm_90 on the CPU, and the cubin is read with the tools bundled in the Triton wheel
(:mod:`suites.sass`): registers, stack frame and static shared memory (``cuobjdump -res-usage``),
spill bytes, SASS instruction count and tensor-core instructions (``nvdisasm``), plus Triton's
shared memory allocation and the Triton and ptxas versions.  These numbers are deterministic for
a Triton/ptxas version, so they make a GPU-free regression gate (:mod:`suites.static_compare`).

API, used by the ``convbench static`` CLI and by the kernel tests::

    from suites import static
    r = static.analyse(spec, "sm_90")          # one spec, one target -> StaticResult
    rs = static.analyse_all(["sm_80", "sm_90"])  # every kernels.static_specs() entry

Compiles run in worker subprocesses with ``TRITON_INTERPRET`` unset (:mod:`suites.static_worker`),
so this works from a test session that runs the interpreter.  Results are cached on disk
(``$CONVBENCH_CACHE_DIR`` or ``~/.cache/convbench``) under a key of what the compile sees (kernel,
signature, constexprs, warps, stages, target), the Triton and ptxas versions and a digest of the
kernel's module and the first-party modules it imports, so the CLI and the tests share one
compile and an edit recompiles only what it can affect; specs that compile identically under
different names are compiled once.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from . import sass, static_worker

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
    #: the kernel's machine code until it is disassembled (not part of the record)
    sass_text: bytes = field(default=b"", compare=False, repr=False)

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
        for transient in ("compile_seconds", "cached", "sass_text"):
            d.pop(transient)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "StaticResult":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


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


@functools.lru_cache(maxsize=None)
def _imports_of(path: str, mtime_ns: int, package: str) -> tuple:
    """Absolute names of the modules ``path`` imports (``package``: its package, for relative
    imports), from its syntax tree."""
    with open(path, "rb") as f:
        tree = ast.parse(f.read(), path)
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            names.append(mod)
            names += [f"{mod}.{alias.name}" for alias in node.names]  # ``from pkg import module``
    return tuple(names)


def _local_file(name: str, root: str) -> str | None:
    mod = sys.modules.get(name)
    path = getattr(mod, "__file__", None) if mod is not None else None
    return path if path and os.path.abspath(path).startswith(root) else None


def source_digest(fn) -> str:
    """Digest of the source a kernel may depend on: its module's file and, transitively, every
    first-party module it imports (files under the folder that holds its top-level package),
    plus the analysis code itself.  An edit elsewhere does not invalidate its cached result."""
    name = getattr(static_worker.raw_fn(fn), "__module__", "") or ""
    files = {__file__, sass.__file__, static_worker.__file__}
    top = sys.modules.get(name.split(".")[0])
    top_file = getattr(top, "__file__", None)
    if not top_file:
        return _tree_digest(files)
    root = os.path.dirname(os.path.dirname(os.path.abspath(top_file))) if getattr(top, "__path__", None) \
        else os.path.dirname(os.path.abspath(top_file))
    seen, todo = set(), [name]
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        path = _local_file(mod, root)
        if path is None:
            continue
        files.add(path)
        parent = mod
        while "." in parent:  # its packages' __init__ files run first
            parent = parent.rpartition(".")[0]
            files.add(_local_file(parent, root) or path)
        if path.endswith("__init__.py"):
            continue  # a package's __init__ imports every sibling: counted, not followed
        package = mod.rpartition(".")[0]
        todo += [m for m in _imports_of(path, os.stat(path).st_mtime_ns, package) if m not in seen]
    return _tree_digest(files)


def compile_identity(spec) -> dict:
    """Everything a compile of ``spec`` depends on, apart from the target."""
    raw = static_worker.raw_fn(spec.fn)
    return {
        "kernel": f"{getattr(raw, '__module__', '')}.{getattr(raw, '__qualname__', '')}",
        "signature": dict(spec.signature),
        "constexprs": {k: repr(v) for k, v in sorted(spec.constexprs.items())},
        "num_warps": spec.num_warps, "num_stages": spec.num_stages,
        "divisible_by_16": sorted(getattr(spec, "divisible_by_16", ()) or ()),
    }


def cache_key(spec, cc: int) -> str:
    import triton

    payload = dict(compile_identity(spec), schema=SCHEMA, cc=cc, triton=triton.__version__,
                   ptxas=sass.ptxas_version(), source=source_digest(spec.fn))
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


def _as_spec_result(result: StaticResult, spec) -> StaticResult:
    """A copy of ``result`` labelled with ``spec``'s name and flags (identical compiles share)."""
    return dataclasses.replace(result, name=spec.name, default=spec.default,
                               expect_tensor_cores=spec.expect_tensor_cores)


def analyse_all(targets: Iterable = ("sm_80", "sm_90"), specs: Sequence | None = None, *,
                filter: str | None = None, jobs: int | None = None, cache: bool = True,
                progress: Callable[[StaticResult], Any] | None = None) -> list[StaticResult]:
    """Compile every spec (default: ``kernels.static_specs()``) for every target.

    Returns one :class:`StaticResult` per (spec, target), specs in the given order.  Compile
    errors are recorded in ``result.error``, not raised.  ``jobs`` worker processes (default:
    the CPU count) compile what the cache does not hold.  ``progress(result)`` is called as
    each result is loaded from the cache or compiled (SASS counts are filled in afterwards).
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
    results = _analyse(specs, ccs, jobs, cache, None, compile_missing=False)
    if any(r is None for r in results):
        with _cache_lock(cache):  # concurrent callers (pytest-xdist workers) compile once, not twice
            return _analyse(specs, ccs, jobs, cache, progress, compile_missing=True)
    for r in results if progress else ():
        progress(r)
    return results


@contextlib.contextmanager
def _cache_lock(enabled: bool):
    """An exclusive lock on the cache folder, so that a second process waits and then finds
    the first one's results instead of compiling the same kernels alongside it."""
    if not enabled:
        yield
        return
    try:
        import fcntl

        os.makedirs(cache_dir(), exist_ok=True)
        handle = open(os.path.join(cache_dir(), ".lock"), "w")
    except (ImportError, OSError):  # no locking here: correct, only possibly duplicated work
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _analyse(specs, ccs, jobs, cache, progress, compile_missing: bool) -> list:
    """Results from the cache and, with ``compile_missing``, compiles of the rest (else None)."""
    results: dict = {}          # (spec index, cc) -> result
    pending: dict = {}          # compile identity -> (spec, {cc: cache key}, [spec indices])
    for i, spec in enumerate(specs):
        ident = json.dumps(compile_identity(spec), sort_keys=True)
        for cc in ccs:
            key = cache_key(spec, cc) if cache else None
            hit = _cache_load(key) if key else None
            if hit is not None:
                results[(i, cc)] = _as_spec_result(hit, spec)
                if progress:
                    progress(results[(i, cc)])
                continue
            entry = pending.setdefault(ident, (spec, {}, []))
            entry[1][cc] = key
            if i not in entry[2]:
                entry[2].append(i)

    if not compile_missing and pending:
        return [results.get((i, cc)) for i in range(len(specs)) for cc in ccs]
    fresh = []

    def compiled(ident, batch):
        spec, keys, indices = pending[ident]
        for result in batch:
            fresh.append((result, keys.get(result.cc), [(i, result.cc) for i in indices]))
            if progress:
                progress(_as_spec_result(result, specs[indices[0]]))

    tasks = [(spec, [cc for cc in ccs if cc in keys], ident) for ident, (spec, keys, _) in pending.items()]
    from triton.runtime.jit import JITFunction

    if tasks and (jobs == 1 or len(tasks) == 1) and all(isinstance(t[0].fn, JITFunction) for t in tasks):
        for spec, task_ccs, ident in tasks:
            compiled(ident, static_worker.compile_spec(spec, task_ccs))
    elif tasks:
        static_worker.run_pool(tasks, jobs, compiled)
    static_worker.fill_sass([r for r, _, _ in fresh], jobs)
    for result, key, slots in fresh:
        if key:
            _cache_store(key, result)
        for i, cc in slots:
            results[(i, cc)] = _as_spec_result(result, specs[i])
    return [results[(i, cc)] for i in range(len(specs)) for cc in ccs]


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
