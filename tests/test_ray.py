"""`--executor ray` against a local Ray the test starts (2 CPUs): the same cells as a plain run,
records streamed to the driver's folder, a worker killed mid-cell costs at most that cell."""

from __future__ import annotations

import os

import pytest

ray = pytest.importorskip("ray", reason="the optional Ray extra is not installed (pip install 'convbench[ray]')")

from convbench.suites.measure import runner  # noqa: E402
from convbench.suites.measure.records import ResultStore  # noqa: E402
from convbench.suites.measure.stats import StopRule  # noqa: E402
from convbench.suites.plan.select import select_cells  # noqa: E402
from tests._dying import DiesOnce  # noqa: E402

pytestmark = pytest.mark.usefixtures("cpu_torch")
OPTIONS = runner.RunOptions(rule=StopRule(min_samples=3, max_samples=20, max_time_s=0.03), measure_peaks=False,
                            progress=False, threads=1, rounds=2, processes=1)


@pytest.fixture(scope="module")
def local_ray():
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    here = os.path.dirname(os.path.abspath(__file__))  # workers import tests/_dying.py by name
    path = os.pathsep.join([here, os.path.dirname(here), os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"CONVBENCH_TORCH_DEVICE": "cpu", "PYTHONPATH": path}})
    yield
    ray.shutdown()


def test_ray_run_has_the_cells_of_a_plain_run(local_ray, tmp_path):
    sel = select_cells(["quick"], ["numpy", "torch"], ops=["conv2d", "max_pool2d"])
    plain = runner.run(sel.cells, sel.backends, None, options=OPTIONS)
    res = runner.run(sel.cells, sel.backends, ResultStore(tmp_path / "r"), options=OPTIONS, executor="ray")
    assert {r.key: r.status for r in res.records} == {r.key: r.status for r in plain.records}
    assert res.env["run"]["executor"] == "ray" and res.env["run"]["slot_unit"] == "CPU"
    assert len(ResultStore(tmp_path / "r").load()) == len(sel.cells)
    timed = [r for r in res.records if r.timed]
    assert timed and all(r.rounds == 2 == r.rounds_requested for r in timed)


def test_a_killed_worker_costs_at_most_its_cell(local_ray, tmp_path):
    sel = select_cells(["quick"], ["torch"], ops=["conv2d"])
    backends = {"torch": DiesOnce(str(tmp_path / "killed"), exit_code=9)}
    res = runner.run(sel.cells, backends, ResultStore(tmp_path / "r"), options=OPTIONS, executor="ray")
    assert (tmp_path / "killed").exists(), [(r.shape, r.status, r.message[:300]) for r in res.records]  # a worker died
    assert sorted(r.key for r in res.records) == sorted(c.key for c in sel.cells)
    victim = next(r for r in res.records if "1x1" in r.shape)
    assert victim.status in ("ok", "error")  # redone by Ray's retry, or recorded as an error
    assert all(r.status == "ok" for r in res.records if r is not victim)


def test_missing_ray_is_a_clear_error(monkeypatch):
    import builtins

    from convbench.suites.measure import ray_executor

    real = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(RuntimeError, match=r"convbench\[ray\]"):
        ray_executor.import_ray()
