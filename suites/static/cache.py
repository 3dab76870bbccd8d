"""The on-disk cache of static results, keyed on everything a compile depends on.

Results live in ``$CONVBENCH_CACHE_DIR/static`` (default ``~/.cache/convbench/static``) under a
key of what the compile sees (kernel, signature, constexprs, warps, stages, target), the Triton
and ptxas versions and a digest of the kernel's module and the first-party modules it imports
(plus this package's own code), so the CLI and the tests share one compile and an edit
recompiles only what it can affect.  Errors are never cached (they may be environmental).
"""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import json
import os
import sys
from typing import Iterable

from . import sass
from .compile import raw_fn
from .result import SCHEMA, StaticResult

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


def from_module(node: ast.ImportFrom, package: str) -> str:
    """The absolute name of the module a ``from ... import`` names, a relative one resolved
    against ``package`` (the importing module's package)."""
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = ".".join(parts[:len(parts) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


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
            mod = from_module(node, package)
            names.append(mod)
            names += [f"{mod}.{alias.name}" for alias in node.names]  # ``from pkg import module``
    return tuple(names)


#: the files of this package whose code decides a compile's numbers
ANALYSIS_FILES = tuple(os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
                       for name in ("compile.py", "sass.py", "result.py", "worker.py"))


def _local_file(name: str, tops: frozenset) -> str | None:
    """The file of module ``name`` if it is loaded and first-party (its top-level package is one
    of ``tops``), else None."""
    if name.split(".")[0] not in tops:
        return None
    mod = sys.modules.get(name)
    return getattr(mod, "__file__", None) if mod is not None else None


def source_digest(fn) -> str:
    """Digest of the source a kernel may depend on: its module's file and, transitively, every
    first-party module it imports (``convbench`` and the kernel's own top-level package), plus
    the analysis code itself.  An edit elsewhere does not invalidate its cached result."""
    name = getattr(raw_fn(fn), "__module__", "") or ""
    files = set(ANALYSIS_FILES)
    tops = frozenset({name.split(".")[0], "convbench"}) if name else frozenset()
    seen, todo = set(), [name] if name else []
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        path = _local_file(mod, tops)
        if path is None:
            continue
        files.add(path)
        parent = mod
        while "." in parent:  # its packages' __init__ files run first
            parent = parent.rpartition(".")[0]
            files.add(_local_file(parent, tops) or path)
        if path.endswith("__init__.py"):
            continue  # a package's __init__ imports every sibling: counted, not followed
        package = mod.rpartition(".")[0]
        todo += [m for m in _imports_of(path, os.stat(path).st_mtime_ns, package) if m not in seen]
    return _tree_digest(files)


def compile_identity(spec) -> dict:
    """Everything a compile of ``spec`` depends on, apart from the target."""
    raw = raw_fn(spec.fn)
    return {
        "kernel": f"{getattr(raw, '__module__', '')}.{getattr(raw, '__qualname__', '')}",
        "signature": dict(spec.signature),
        "constexprs": {k: repr(v) for k, v in sorted(spec.constexprs.items())},
        "num_warps": spec.num_warps, "num_stages": spec.num_stages,
        "divisible_by_16": sorted(getattr(spec, "divisible_by_16", ()) or ()),
    }


def cache_key(spec, cc: int) -> str:
    import triton  # triton only when compiling or reading its version (a slow import)

    payload = dict(compile_identity(spec), schema=SCHEMA, cc=cc, triton=triton.__version__,
                   ptxas=sass.ptxas_version(), source=source_digest(spec.fn))
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def load(key: str) -> StaticResult | None:
    try:
        with open(os.path.join(cache_dir(), key + ".json")) as f:
            result = StaticResult.from_dict(json.load(f))
    except (OSError, ValueError, TypeError):
        return None
    result.cached = True
    return result


def store(key: str, result: StaticResult) -> None:
    if result.error:
        return  # errors may be environmental: always retry them
    path = os.path.join(cache_dir(), key + ".json")
    with contextlib.suppress(OSError):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(result.to_dict(), f)
        os.replace(tmp, path)


@contextlib.contextmanager
def lock(enabled: bool):
    """An exclusive lock on the cache folder, so that a second process waits and then finds
    the first one's results instead of compiling the same kernels alongside it."""
    if not enabled:
        yield
        return
    try:
        import fcntl  # POSIX only: where it is missing the lock is skipped

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
