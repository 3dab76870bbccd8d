"""Measuring one callable: compile time, warm-up, then samples until the median is stable.

GPU (``device="cuda"``): CUDA events around each call; before each timed call the L2 cache is
flushed by zeroing a buffer twice the device's L2 size (allocated once per device); samples are
taken until :class:`convbench.suites.measure.stats.StopChecker` says so.  ``graph=True`` captures ``k`` calls in a
CUDA graph and times replays (for launch-bound microsecond kernels; the cache is *not* flushed
in that mode, so it measures hot-cache, launch-amortised time).

CPU (``device="cpu"``): ``time.perf_counter`` around each call, the same warm-up and stopping.
After each sample a CPU measurement also times a fixed pure-Python workload (:func:`speed_probe`,
outside the sample): shared CPUs change speed in phases (on the 2-core VM, every call 1.5-2x
slower for a fraction of a second to a few seconds, then back), and the median probe time says
how fast the core was while the samples were taken, so a comparison can divide the machine's
speed out (``convbench compare``).  Probing after every sample rather than once before and after
the samples cut the round-to-round spread of probe-scaled numpy medians from 10% to 6%.

The first call is timed on its own (it includes Triton compilation, autotuning, or cuDNN's
algorithm search under ``cudnn.benchmark``) and reported as ``compile_ms``, never as a sample.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from convbench.runtime import flush_buffer, l2_bytes  # noqa: F401  (l2_bytes: part of this API)

from .stats import StopChecker, StopRule

@dataclass
class Measurement:
    samples_ms: list[float] = field(default_factory=list)
    #: "cuda-events", "cuda-graph" or "perf_counter"
    timer: str = ""
    stop_reason: str = ""
    warmup_calls: int = 0
    #: calls per sample (graph mode replays several calls per sample)
    calls_per_sample: int = 1
    note: str = ""
    #: CPU only: median time of :func:`speed_probe` around the samples (None on a GPU)
    probe_ms: float | None = None


def speed_probe() -> float:
    """A fixed CPU workload of about 10 us: interpreted float arithmetic, no allocation, no I/O,
    no library code, so its time follows only the speed of the core it runs on."""
    acc = 0.0
    for i in range(256):
        acc += i * 0.5
    return acc


def first_call(fn: Callable[[], Any], device: str) -> tuple[Any, float]:
    """(result, milliseconds) of one synchronised call: compilation and autotuning included."""
    sync = _sync_for(device)
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return out, (time.perf_counter() - t0) * 1e3


def _sync_for(device: str) -> Callable[[], None]:
    if device == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def warm_up(fn: Callable[[], Any], device: str, *, min_calls: int = 2, min_time_s: float = 0.02,
            max_calls: int = 50) -> int:
    """Call ``fn`` until ``min_calls`` calls and ``min_time_s`` are spent (caches, clocks, pools)."""
    sync = _sync_for(device)
    t0, calls = time.perf_counter(), 0
    while calls < max_calls and (calls < min_calls or time.perf_counter() - t0 < min_time_s):
        fn()
        sync()
        calls += 1
    return calls


def measure(fn: Callable[[], Any], device: str, rule: StopRule, *, flush_l2: bool = True,
            graph: bool = False, warmup_s: float = 0.02) -> Measurement:
    """Warm ``fn`` up (after its first call was taken by :func:`first_call`) and sample it."""
    warm = warm_up(fn, device, min_time_s=warmup_s)
    if device == "cuda":
        if graph:
            try:
                m = _measure_graph(fn, rule)
                m.warmup_calls = warm
                return m
            except Exception as exc:  # capture can fail (host sync inside fn): fall back, say so
                m = _measure_events(fn, rule, flush_l2)
                m.note = f"CUDA graph capture failed ({type(exc).__name__}: {exc}); timed with events"
                m.warmup_calls = warm
                return m
        m = _measure_events(fn, rule, flush_l2)
    else:
        m = _measure_cpu(fn, rule)
    m.warmup_calls = warm
    return m


def _measure_cpu(fn, rule: StopRule) -> Measurement:
    samples: list[float] = []
    probes: list[float] = []
    stop_check = StopChecker(rule)
    clock = time.perf_counter
    t_start = clock()
    while True:
        t0 = clock()
        fn()
        t1 = clock()
        speed_probe()
        probes.append((clock() - t1) * 1e3)
        samples.append((t1 - t0) * 1e3)
        stop, reason = stop_check(samples, clock() - t_start)
        if stop:
            return Measurement(samples, "perf_counter", reason, probe_ms=float(np.median(probes)))


def _measure_events(fn, rule: StopRule, flush_l2: bool) -> Measurement:
    device_index = torch.cuda.current_device()
    buf = flush_buffer(device_index) if flush_l2 else None
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    samples: list[float] = []
    stop_check = StopChecker(rule)
    t_start = time.perf_counter()
    while True:
        if buf is not None:
            buf.zero_()
        start.record()
        fn()
        end.record()
        end.synchronize()
        samples.append(float(start.elapsed_time(end)))
        stop, reason = stop_check(samples, time.perf_counter() - t_start)
        if stop:
            return Measurement(samples, "cuda-events", reason)


def _measure_graph(fn, rule: StopRule, target_ms: float = 1.0, max_calls: int = 200) -> Measurement:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    single = max(float(start.elapsed_time(end)), 1e-3)
    k = int(min(max_calls, max(1, math.ceil(target_ms / single))))
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up on a side stream, as capture requires
        fn()
    torch.cuda.current_stream().wait_stream(stream)
    with torch.cuda.graph(graph):
        for _ in range(k):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    samples: list[float] = []
    stop_check = StopChecker(rule)
    t_start = time.perf_counter()
    while True:
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        samples.append(float(start.elapsed_time(end)) / k)
        stop, reason = stop_check(samples, time.perf_counter() - t_start)
        if stop:
            return Measurement(samples, "cuda-graph", reason, calls_per_sample=k)
