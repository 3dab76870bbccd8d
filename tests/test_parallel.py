"""`--gpus`: the scheduling of cells over one worker process per device, on fake devices.

The workers are real spawned processes (each started with its CUDA_VISIBLE_DEVICES value, here a
fake device name, so the torch baseline runs on the CPU); cells are handed out as workers free up,
a worker that dies costs its cell (an error naming the device) and is restarted.
"""

from __future__ import annotations


import pytest

from convbench.suites.measure import parallel, runner
from convbench.suites.measure.records import ResultStore
from convbench.suites.measure.stats import StopRule
from convbench.suites.plan.select import select_cells
from tests._dying import DiesOnce

pytestmark = pytest.mark.usefixtures("cpu_torch")
OPTIONS = runner.RunOptions(rule=StopRule(min_samples=3, max_samples=20, max_time_s=0.03), measure_peaks=False,
                            progress=False, threads=1, rounds=2, processes=1)


def test_device_list_follows_the_callers_visible_devices():
    assert parallel.device_list("all", None, 3) == ["0", "1", "2"]
    assert parallel.device_list("all", "4,6", 2) == ["4", "6"]
    assert parallel.device_list("1", "4,6", 2) == ["6"]
    assert parallel.device_list("0,2", None, 4) == ["0", "2"]
    for bad in ("5", "0,0", "x"):
        with pytest.raises(ValueError, match="--gpus"):
            parallel.device_list(bad, None, 2)
    with pytest.raises(ValueError, match="no CUDA device"):
        parallel.device_list("all", "", 0)


def test_cells_spread_over_devices_and_equal_a_plain_run(tmp_path):
    sel = select_cells(["quick"], ["numpy", "torch"], ops=["conv2d"])
    plain = runner.run(sel.cells, sel.backends, ResultStore(tmp_path / "plain"), options=OPTIONS)
    multi = runner.run(sel.cells, sel.backends, ResultStore(tmp_path / "multi"), options=OPTIONS,
                       devices=["fake0", "fake1"])
    assert sorted(r.key for r in multi.records) == sorted(r.key for r in plain.records)
    assert {r.key: r.status for r in multi.records} == {r.key: r.status for r in plain.records}
    assert {r.status for r in multi.records} == {"ok", "skipped"}
    per = multi.env["run"]["cells_per_device"]
    assert set(per) == {"fake0", "fake1"} and all(per.values()) and sum(per.values()) == len(sel.cells)
    timed = [r for r in multi.records if r.timed]
    assert timed and all(r.rounds == 2 == r.rounds_requested for r in timed)
    assert len({pid for r in timed for pid in r.round_pids}) == 2  # two worker processes, none the runner
    assert len(ResultStore(tmp_path / "multi").load()) == len(sel.cells)  # streamed and finalized


def test_a_dead_worker_costs_its_cell_only(tmp_path):
    sel = select_cells(["quick"], ["torch"], ops=["conv2d"])
    backends = {"torch": DiesOnce(str(tmp_path / "died"))}
    result = runner.run(sel.cells, backends, ResultStore(tmp_path / "run"), options=OPTIONS,
                        devices=["fake0", "fake1"])
    dead = [r for r in result.records if r.status == "error"]
    assert len(dead) == 1 and "1x1" in dead[0].shape and "died" in dead[0].message
    assert "device fake" in dead[0].message
    assert sorted(r.key for r in result.records) == sorted(c.key for c in sel.cells)
    assert all(r.status in ("ok", "skipped") for r in result.records if r is not dead[0])
    assert result.env["run"]["worker_problems"]
