"""Cheat guards: planted cheats fail their cell with a message naming the cheat; honest cells and
the timed region are untouched.

Each cheat is a torch (CPU) backend whose call computes the right answer but cheats in one
known way: it writes into its input, it returns its input as the output, or it returns the
output of its first call again (a result cached per shape).  They run through the real runner.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convbench.reference.geometry import ConvGeometry, PoolGeometry
from convbench.suites.measure import guards, runner
from convbench.suites.measure.env import configure_threads
from convbench.suites.measure.inputs import InputCache
from convbench.suites.measure.stats import StopRule
from convbench.suites.plan import backends as B
from convbench.suites.plan.cells import Cell
from convbench.suites.plan.shapes import Case

OPTIONS = runner.RunOptions(rule=StopRule(min_samples=5, max_samples=20, max_time_s=0.05), measure_peaks=False,
                            progress=False, threads=1, rounds=1, processes=1)
CONV = Case("conv2d", ConvGeometry(1, 4, 6, 6, 4, 3, 3, padding=(1, 1, 1, 1)), label="conv")
IDENTITY_POOL = Case("avg_pool2d", PoolGeometry.from_args((1, 3, 5, 5), 1, 1), label="1x1 pool")


class Cheat(B.TorchBackend):
    """torch on the CPU, with one planted cheat (``kind``) around the honest call."""

    def __init__(self, kind: str):
        super().__init__("cpu")
        self.kind = kind
        self.cached = None

    def prepare(self, case, algorithm, dtype, layout, tensors):
        honest = super().prepare(case, algorithm, dtype, layout, tensors)
        x = honest.inputs["input"]

        def run():
            if self.kind == "mutate":
                out = honest.run()
                x.mul_(1.0)  # same values, but written: still a write into the input
                x.view(-1)[0] += 1.0
                return out
            if self.kind == "alias":
                return x  # the identity pool's right answer, as the input itself
            if self.kind == "cache":
                if self.cached is None:
                    self.cached = honest.run()
                return self.cached
            return honest.run()
        return B.Prepared(run, honest.to_numpy, honest.setup, inputs=honest.inputs)


def _run(kind, case):
    configure_threads(1)  # as runner.run does (two xdist workers with 2 OpenMP threads each spin)
    backend = Cheat(kind)
    cell = Cell("t", case, "vendor", "torch", "fp32", "nchw")
    return runner.run_cell(cell, backend, InputCache(0, 1e12), OPTIONS)


def test_input_mutation_fails_the_cell_naming_the_input():
    rec = _run("mutate", CONV)
    assert rec.status == "fail" and rec.passed is False
    assert "wrote into its input 'input'" in rec.message and not rec.timed


def test_output_aliasing_an_input_fails_the_cell():
    assert _run("honest", IDENTITY_POOL).status == "ok"  # the identity pool is right when honest
    rec = _run("alias", IDENTITY_POOL)
    assert rec.status == "fail" and "shares memory with the input 'input'" in rec.message and not rec.timed


def test_cached_output_fails_on_the_second_input_set():
    rec = _run("cache", CONV)
    assert rec.status == "fail" and rec.passed is False
    assert "previous call's output" in rec.message or "second input set" in rec.message
    assert not rec.timed


def test_honest_cells_pass_and_the_timed_region_is_unchanged():
    """Same stopping rule, same sample count and a median within noise with and without the guards."""
    rec = _run("honest", CONV)
    assert rec.status == "ok" and rec.timed and rec.n_samples >= 5
    # the guards run outside measure(): time the same call with measure() directly
    cache = InputCache(0, 1e12)
    tensors, _, _ = cache.get(CONV, "fp32")
    prepared = B.TorchBackend("cpu").prepare(CONV, "vendor", "fp32", "nchw", tensors)
    m = runner.measure(prepared.run, "cpu", OPTIONS.rule)
    assert rec.n_samples in range(OPTIONS.rule.min_samples, OPTIONS.rule.max_samples + 1)
    direct = float(np.median(m.samples_ms))
    assert 0.2 < rec.p50_ms / direct < 5, (rec.p50_ms, direct)


def test_guard_functions_directly():
    x = torch.randn(4, 4)
    before = guards.input_digests({"input": x, "running_mean": torch.zeros(4)})
    assert "running_mean" not in before  # updated in place by contract
    assert guards.mutated_inputs(before, {"input": x}) is None
    x[0, 0] += 1
    assert "'input'" in guards.mutated_inputs(before, {"input": x})
    assert guards.aliasing(x[1:], {"input": x}) is not None
    assert guards.aliasing(x.clone(), {"input": x}) is None
    out = torch.empty(3)
    assert "previous call" in guards.aliasing((out[:2],), {}, previous=out)
    assert "flush" in guards.aliasing(out, {}, flush=[out])
    a = np.zeros(5)
    assert guards.aliasing(a[2:], {"input": a}) is not None and guards.aliasing(a.copy(), {"input": a}) is None
    bf = torch.randn(3).to(torch.bfloat16)
    assert guards.digest(bf) == guards.digest(bf.clone()) != guards.digest(bf + 1)


def test_second_input_set_is_independent():
    cache = InputCache(0, 1e12)
    first, ref0, _ = cache.get(CONV, "fp32")
    second, ref1, _ = cache.get(CONV, "fp32", variant=1)
    again, _, _ = cache.get(CONV, "fp32")
    assert not torch.equal(first["input"], second["input"]) and not np.allclose(ref0, ref1)
    assert again["input"] is first["input"]  # both sets stay cached side by side


@pytest.mark.gpu
def test_work_on_another_stream_escapes_the_events_and_is_caught():
    """A call whose work runs on a side stream: the events on the current stream see nothing,
    the synchronised time does.  The honest call on the current stream passes."""
    a = torch.randn(4096, 4096, device="cuda")
    side = torch.cuda.Stream()

    def honest():
        return a @ a

    def sneaky():
        with torch.cuda.stream(side):
            for _ in range(8):
                a @ a
        return torch.empty(1, device="cuda")

    honest_m = runner.measure(honest, "cuda", StopRule(min_samples=5, max_samples=10, max_time_s=0.5))
    assert guards.escaped_work(honest, float(np.median(honest_m.samples_ms))) is None
    sneaky_m = runner.measure(sneaky, "cuda", StopRule(min_samples=5, max_samples=10, max_time_s=0.5))
    message = guards.escaped_work(sneaky, float(np.median(sneaky_m.samples_ms)))
    assert message is not None and "escapes the timed region" in message
