"""pytest-benchmark integration: ``benchmarks/`` cells run as benchmarks, and
``--benchmark-autosave`` / ``--benchmark-compare`` / ``--benchmark-compare-fail`` work on them.

Runs pytest in a subprocess on two small CPU cells (numpy and torch), as a user would."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from convbench.suites.measure import bench_plugin

ROOT = Path(__file__).resolve().parents[1]
SELECT = ["benchmarks/test_bench_quick.py", "--bench-ops", "conv2d", "--bench-shapes", "1x1",
          "--bench-backends", "numpy,torch", "--bench-dtypes", "fp64", "--bench-layouts", "nchw",
          "-k", "im2col or vendor", "--bench-threads", "1", "--benchmark-max-time=0.02", "--benchmark-min-rounds=5",
          "-p", "no:cacheprovider", "-q"]


def _pytest(*args):
    # a clean session: no interpreter, and no PYTEST_XDIST_WORKER (under which pytest-benchmark
    # disables itself) when this test runs inside an xdist worker
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET" and not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "pytest", *SELECT, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_autosave_compare_and_compare_fail(tmp_path):
    storage = f"file://{tmp_path}"
    first = _pytest("--benchmark-autosave", f"--benchmark-storage={storage}")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
    assert "2 passed" in first.stdout
    saved = sorted(tmp_path.rglob("*.json"))
    assert len(saved) == 1
    data = json.loads(saved[0].read_text())
    names = sorted(b["name"] for b in data["benchmarks"])
    assert len(names) == 2 and any("numpy:im2col" in n for n in names) and any("torch:vendor" in n for n in names)
    assert all(b["options"]["timer"].endswith("synced_perf_counter") for b in data["benchmarks"])

    same = _pytest(f"--benchmark-storage={storage}", "--benchmark-compare",
                   "--benchmark-compare-fail=median:1000%")
    assert same.returncode == 0, same.stdout[-3000:]
    assert "NOW" in same.stdout and "0001" in same.stdout  # the comparison table against run 0001

    for b in data["benchmarks"]:  # make the saved baseline 10x faster: now every cell regressed
        for stat in ("min", "max", "mean", "median", "q1", "q3"):
            b["stats"][stat] /= 10
    saved[0].write_text(json.dumps(data))
    slow = _pytest(f"--benchmark-storage={storage}", "--benchmark-compare",
                   "--benchmark-compare-fail=median:5%")
    assert slow.returncode != 0
    assert "Performance has regressed" in slow.stdout + slow.stderr


def test_synced_timer_is_a_clock():
    a = bench_plugin.synced_perf_counter()
    b = bench_plugin.synced_perf_counter()
    assert b >= a


@pytest.mark.gpu
def test_synced_timer_waits_for_the_gpu():
    """The synced clock spans the device time of the queued work (CUDA events of the same work),
    which the plain clock around the asynchronous launches does not."""
    import time

    import torch

    x = torch.randn(4096, 4096, device="cuda")
    for _ in range(3):
        x = x @ x / 4096
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    t0 = bench_plugin.synced_perf_counter()
    start.record()
    for _ in range(20):
        x = x @ x / 4096
    end.record()
    launched_ms = (time.perf_counter() - t0) * 1e3
    waited_ms = (bench_plugin.synced_perf_counter() - t0) * 1e3
    device_ms = start.elapsed_time(end)
    assert device_ms > 2.0, "the work is too small to tell the clocks apart on this GPU"
    assert waited_ms >= 0.9 * device_ms, (waited_ms, device_ms)
    assert launched_ms < 0.5 * device_ms, (launched_ms, device_ms)  # launches return before the work ends


class _Options:
    """A pytest config as far as ``cells_from_options`` looks at it."""

    def __init__(self, **given):
        self.given = given

    def getoption(self, name):
        return self.given.get(name.removeprefix("--").replace("-", "_"), "quick" if name == "--bench-suite" else None)


def test_default_selection_covers_both_layouts_and_an_empty_one_collects_nothing():
    cells = bench_plugin.cells_from_options(_Options(bench_backends="numpy,torch"))
    assert {c.layout for c in cells} == {"nchw", "nhwc"}
    assert {c.backend for c in cells} == {"numpy", "torch"}
    only = bench_plugin.cells_from_options(_Options(bench_backends="torch", bench_layouts="nhwc"))
    assert only and {c.layout for c in only} == {"nhwc"}
    assert bench_plugin.cells_from_options(_Options(bench_backends="numpy", bench_shapes="no-such-shape")) == []
    # a backend this machine may lack keeps its cells (they skip with the reason when run)
    assert any(c.backend == "triton" for c in bench_plugin.cells_from_options(_Options(bench_backends="triton")))
