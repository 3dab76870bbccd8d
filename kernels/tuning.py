"""Autotuning: pick a launch config by measurement, and remember it in a persistent cache.

A tuned choice is keyed by everything that can change which config is fastest and nothing else
(:class:`TuneKey`): the GPU's name, the Triton version, a hash of the kernel's source files, the
algorithm, the geometry, the dtype, ``input_precision`` and the layout.  A changed kernel or a
new Triton re-tunes; a new process, a new tensor of the same shape or an unrelated edit does not.

The cache is one JSON file (:func:`cache_path`: ``$CONVBENCH_TUNE_CACHE``, else
``$XDG_CACHE_HOME/convbench/tune.json``, else ``~/.cache/convbench/tune.json``).  Writers take an
exclusive lock next to it, re-read, merge and replace the file atomically, so concurrent tuners
(several GPUs, several processes) lose nothing; a corrupt file is set aside as ``*.corrupt`` with
a warning and the cache starts empty.

:func:`tune` is the selection loop.  Its timer and pruner are arguments: ``convbench tune`` passes
the benchmark suite's own timer and the static analysis's pruning for the device's target;
:func:`default_timer` and :func:`default_pruner` serve a bare ``conv2d(..., config="tune")``.
Unit tests inject a fake timer, so the selection, the pruning and the cache are tested on a CPU.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import torch

from convbench.runtime import flush_buffer

from . import _common

SCHEMA = 1
CACHE_ENV = "CONVBENCH_TUNE_CACHE"

#: milliseconds of one call of a candidate, or raises; injected by callers and tests
Timer = Callable[[Callable[[], object]], float]
#: why a candidate config cannot run well on the target (spills, shared memory), or None
Pruner = Callable[[object], Optional[str]]


def cache_path() -> Path:
    """Where tuned choices live (``$CONVBENCH_TUNE_CACHE`` overrides the user cache dir)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "convbench" / "tune.json"


def source_hash(files: Iterable[str]) -> str:
    """SHA-256 (16 hex digits) of the kernel source files an algorithm runs, in the given order."""
    h = hashlib.sha256()
    for f in files:
        h.update(Path(f).name.encode())
        h.update(Path(f).read_bytes())
    return h.hexdigest()[:16]


def device_name(t: torch.Tensor) -> str:
    """The GPU a tensor lives on, by name ("interpreter" for CPU tensors under TRITON_INTERPRET)."""
    if t.device.type == "cuda":
        return torch.cuda.get_device_name(t.device)
    return "interpreter"


def layout_of(t: torch.Tensor) -> str:
    return "nhwc" if _common.is_channels_last(t) else "nchw"


def geometry_id(geom) -> str:
    """A canonical text of a convolution geometry (every field that changes the launch)."""
    return (f"n{geom.n}-c{geom.c}-h{geom.h}-w{geom.w}-k{geom.k}-r{geom.r}-s{geom.s}"
            f"-st{geom.stride[0]}x{geom.stride[1]}-pad{'x'.join(map(str, geom.padding))}"
            f"-dil{geom.dilation[0]}x{geom.dilation[1]}-g{geom.groups}")


@dataclass(frozen=True)
class TuneKey:
    device: str
    triton: str
    source: str
    algorithm: str
    geometry: str
    dtype: str
    precision: str
    layout: str

    def text(self) -> str:
        return "|".join(asdict(self).values())

    def problem(self) -> tuple:
        """Everything but the algorithm and its source: the key of "which algorithm wins here"."""
        return (self.device, self.triton, self.geometry, self.dtype, self.precision, self.layout)


@dataclass
class TuneResult:
    """What :func:`tune` measured: the best config's name and time, every candidate's time,
    the pruned candidates with their reason, and the seconds tuning took."""

    algorithm: str
    config: str
    ms: float
    times_ms: dict = field(default_factory=dict)
    pruned: dict = field(default_factory=dict)
    failed: dict = field(default_factory=dict)
    tuning_s: float = 0.0
    source: str = ""

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "TuneResult":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def tune(algorithm: str, candidates: Sequence, run_for: Callable[[object], Callable[[], object]], *,
         timer: Timer, prune: Pruner | None = None) -> TuneResult:
    """Time every candidate config that the pruner keeps and return the fastest.

    ``run_for(config)`` builds a zero-argument callable that runs one launch with that config
    (planned once, outside the timing); a candidate whose run raises is recorded under
    ``failed`` with the error and skipped.  Raises ``RuntimeError`` when no candidate ran.
    """
    t0 = time.perf_counter()
    times, pruned, failed = {}, {}, {}
    for cfg in candidates:
        reason = prune(cfg) if prune is not None else None
        if reason:
            pruned[cfg.name] = reason
            continue
        try:
            ms = float(timer(run_for(cfg)))
        except Exception as exc:  # a config the device refuses (e.g. OutOfResources) is skipped
            failed[cfg.name] = f"{type(exc).__name__}: {exc}"
            continue
        if not math.isfinite(ms) or ms < 0:
            failed[cfg.name] = f"timer returned {ms!r}"
            continue
        times[cfg.name] = ms
    if not times:
        raise RuntimeError(f"tuning {algorithm}: no candidate config ran (pruned: {pruned}, failed: {failed})")
    best = min(times, key=times.get)
    return TuneResult(algorithm, best, times[best], times, pruned, failed, time.perf_counter() - t0)


# ----------------------------------------------------------------------------------------------
# the persistent cache
# ----------------------------------------------------------------------------------------------
class TuneCache:
    """The JSON file of tuned choices, read once and re-read when another process changed it."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else cache_path()
        self._entries: dict[str, dict] = {}
        self._stamp: tuple | None = None

    def _file_stamp(self):
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _read(self) -> dict[str, dict]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or not isinstance(doc.get("entries"), dict):
                raise ValueError(f"not a schema-{SCHEMA} tuning cache")
            return doc["entries"]
        except ValueError as exc:
            aside = self.path.with_name(self.path.name + ".corrupt")
            warnings.warn(f"tuning cache {self.path} is unreadable ({exc}); moved to {aside}, starting empty",
                          RuntimeWarning, stacklevel=3)
            with contextlib.suppress(OSError):
                os.replace(self.path, aside)
            return {}

    def entries(self) -> dict[str, dict]:
        stamp = self._file_stamp()
        if stamp != self._stamp:
            self._entries = self._read()
            self._stamp = self._file_stamp()
        return self._entries

    def get(self, key: TuneKey) -> TuneResult | None:
        entry = self.entries().get(key.text())
        return TuneResult.from_json(entry) if entry is not None else None

    def best_for_problem(self, key: TuneKey, current_sources: dict[str, str]) -> TuneResult | None:
        """The fastest tuned algorithm for ``key``'s problem among entries whose kernel source is
        still the current one (``current_sources``: algorithm -> source hash)."""
        best = None
        for text, entry in self.entries().items():
            other = TuneKey(*text.split("|"))
            if other.problem() != key.problem() or current_sources.get(other.algorithm) != other.source:
                continue
            result = TuneResult.from_json(entry)
            if best is None or result.ms < best.ms:
                best = result
        return best

    @contextlib.contextmanager
    def _locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a+") as lock:
            try:
                import fcntl  # POSIX only; elsewhere writers are not serialised
                fcntl.flock(lock, fcntl.LOCK_EX)
            except ImportError:
                pass
            yield

    def put(self, key: TuneKey, result: TuneResult) -> None:
        """Merge one entry into the file: lock, re-read, add, write a temporary file, replace."""
        result.source = key.source
        with self._locked():
            entries = self._read()
            entries[key.text()] = result.to_json()
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"schema": SCHEMA, "entries": entries}, indent=1, sort_keys=True))
            os.replace(tmp, self.path)
        self._entries, self._stamp = entries, self._file_stamp()


_CACHES: dict[Path, TuneCache] = {}


def default_cache() -> TuneCache:
    """One :class:`TuneCache` per path for the process (the path may change with the env)."""
    path = cache_path()
    if path not in _CACHES:
        _CACHES[path] = TuneCache(path)
    return _CACHES[path]


# ----------------------------------------------------------------------------------------------
# timer and pruner for a bare conv2d(..., config="tune") on a GPU
# ----------------------------------------------------------------------------------------------
def default_timer(fn: Callable[[], object], *, warmup: int = 3, reps: int = 15) -> float:
    """Median of ``reps`` CUDA-event-timed calls, each after an L2 flush, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    buf = flush_buffer(torch.cuda.current_device())
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    samples = []
    for _ in range(reps):
        buf.zero_()
        start.record()
        fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end))
    samples.sort()
    return float(samples[len(samples) // 2])


def default_pruner(smem_fits: Callable[[object], bool]) -> Pruner:
    """Prune by the shared-memory model of the config (the device compile refuses the rest at
    launch, which :func:`tune` records as failed)."""
    return lambda cfg: None if smem_fits(cfg) else "shared memory of the tiles exceeds the limit"
