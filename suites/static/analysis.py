"""Compile every spec for every target: from the result cache where it can, otherwise in this
process or in :mod:`.worker` processes (when this one runs the interpreter); specs that compile
identically under different names are compiled once."""


from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Iterable, Sequence

from . import cache as _cache
from . import compile as _compile
from . import worker as _worker
from .result import StaticResult, parse_target

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
        from convbench import kernels  # the kernels' spec list, only when none is given

        specs = kernels.static_specs()
    specs = select(list(specs), filter)
    if jobs is not None and jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    jobs = jobs or os.cpu_count() or 1
    results = _analyse(specs, ccs, jobs, cache, None, compile_missing=False)
    if any(r is None for r in results):
        with _cache.lock(cache):  # concurrent callers (pytest-xdist workers) compile once, not twice
            return _analyse(specs, ccs, jobs, cache, progress, compile_missing=True)
    for r in results if progress else ():
        progress(r)
    return results


def _analyse(specs, ccs, jobs, cache, progress, compile_missing: bool) -> list:
    """Results from the cache and, with ``compile_missing``, compiles of the rest (else None)."""
    results: dict = {}          # (spec index, cc) -> result
    pending: dict = {}          # compile identity -> (spec, {cc: cache key}, [spec indices])
    for i, spec in enumerate(specs):
        ident = json.dumps(_cache.compile_identity(spec), sort_keys=True)
        for cc in ccs:
            key = _cache.cache_key(spec, cc) if cache else None
            hit = _cache.load(key) if key else None
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
    from triton.runtime.jit import JITFunction  # triton only when compiling or reading its version (a slow import)

    if tasks and (jobs == 1 or len(tasks) == 1) and all(isinstance(t[0].fn, JITFunction) for t in tasks):
        for spec, task_ccs, ident in tasks:
            compiled(ident, _compile.compile_spec(spec, task_ccs))
    elif tasks:
        _worker.run_pool(tasks, jobs, compiled)
    _compile.fill_sass([r for r, _, _ in fresh], jobs)
    for result, key, slots in fresh:
        if key:
            _cache.store(key, result)
        for i, cc in slots:
            results[(i, cc)] = _as_spec_result(result, specs[i])
    return [results[(i, cc)] for i in range(len(specs)) for cc in ccs]


def analyse(spec, target="sm_90", *, cache: bool = True) -> StaticResult:
    """Compile one spec for one target (``"sm_80"``/``"sm_90"`` or 80/90)."""
    return analyse_all([target], [spec], jobs=1, cache=cache)[0]
