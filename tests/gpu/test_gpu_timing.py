"""GPU only: the timers mean what they say.  Each test can fail: it compares two timers of the
same work, or two modes of the same cell, and asserts the relation a correct timer must show."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from convbench import kernels
from convbench.suites.measure import timing
from convbench.suites.measure.stats import StopRule

pytestmark = pytest.mark.gpu
RULE = StopRule(min_samples=20, max_samples=200, max_time_s=0.5)


def test_event_timer_agrees_with_a_synchronised_clock():
    a = torch.randn(4096, 4096, device="cuda")

    def work():
        return a @ a

    m = timing.measure(work, "cuda", RULE, flush_l2=False)
    events = float(np.median(m.samples_ms))
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(20):
        work()
    torch.cuda.synchronize()
    wall = (time.perf_counter() - t0) * 1e3 / 20
    assert events > 0.2 and 0.7 * wall <= events <= 1.1 * wall, (events, wall)


def test_cuda_graph_cell_equals_the_eager_one():
    x = torch.randn(8, 64, 28, 28, device="cuda", dtype=torch.float16)
    w = torch.randn(64, 64, 3, 3, device="cuda", dtype=torch.float16) / 24
    plan = kernels.plan_conv2d(x, w, padding=1, algorithm="implicit_gemm")
    eager = plan.run().clone()
    graph = torch.cuda.CUDAGraph()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        plan.run()
    torch.cuda.current_stream().wait_stream(side)
    plan.output.fill_(float("nan"))
    with torch.cuda.graph(graph):
        plan.run()
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(plan.output, eager)
    ev = timing.measure(plan.run, "cuda", RULE, flush_l2=False)
    gr = timing.measure(plan.run, "cuda", RULE, graph=True)
    assert gr.timer == "cuda-graph" and ev.timer == "cuda-events"
    # the replays amortise the launch: never slower than single event-timed calls, within noise
    assert np.median(gr.samples_ms) <= 1.15 * np.median(ev.samples_ms)


def test_flushed_sample_is_not_faster_than_an_unflushed_one():
    """A bandwidth-bound op on a tensor that fits in L2: flushing before each sample makes it
    read from DRAM, so the flushed median cannot be the faster one."""
    size = timing.l2_bytes() // 4 // 4  # a quarter of L2 in fp32
    x = torch.randn(size, device="cuda")

    def op():
        return x * 2.0

    hot = timing.measure(op, "cuda", RULE, flush_l2=False)
    cold = timing.measure(op, "cuda", RULE, flush_l2=True)
    assert np.median(cold.samples_ms) >= 0.95 * np.median(hot.samples_ms)
