"""Timing rounds (convbench.suites.measure.rounds): every timed cell sampled in several passes, some
of them in spawned worker processes; records keep each round's sample count and speed-probe time."""

import pytest

from convbench.suites.measure import records as R
from convbench.suites.measure import rounds, runner
from convbench.suites.measure.stats import StopRule
from tests.test_runner import _cells

pytestmark = pytest.mark.usefixtures("cpu_torch")  # CPU round counts, probes and plot names

RULE = StopRule(min_samples=6, max_samples=60, max_time_s=0.03)


def _options(**kw):
    return runner.RunOptions(rule=RULE, measure_peaks=False, progress=False, threads=1, **kw)


def test_round_rule_splits_counts_and_budgets():
    rule = StopRule(min_samples=10, max_samples=2000, max_time_s=0.3, min_time_s=0.03)
    r = rounds.round_rule(rule, 5)
    assert (r.min_samples, r.max_samples) == (3, 400)  # ceil(10/5)=2 is raised to 3
    assert r.max_time_s == pytest.approx(0.06) and r.min_time_s == pytest.approx(0.006)
    assert r.timeout_s == pytest.approx(3.0)  # the slow-call timeout is not split
    assert rounds.round_rule(rule, 1) is rule
    assert rounds.default_rounds("cpu") > rounds.default_rounds("cuda") >= 3
    assert rounds.default_processes("cpu") > 1 and rounds.default_processes("cuda") == 1


def _check_rounds(records, n_rounds):
    timed = [r for r in records if r.timed]
    assert timed
    for r in timed:
        assert r.rounds == n_rounds == len(r.round_samples) == len(r.round_probe_ms)
        # later rounds take round 0's count (fewer only if a call became 10x slower: the timeout)
        assert all(0 < n <= r.round_samples[0] for n in r.round_samples)
        assert sum(r.round_samples) == len(r.samples_ms) == r.n_samples
        assert all(p > 0 for p in r.round_probe_ms) and all(s > 0 for s in r.samples_ms)
    return timed


def test_rounds_run_in_worker_processes(tmp_path):
    cells, backends = _cells(ops=("max_pool2d",))
    store = R.ResultStore(tmp_path)
    result = runner.run(cells, backends, store, options=_options(rounds=3, processes=2))
    assert not result.interrupted and not result.failures
    assert result.env["run"]["rounds"] == 3 and result.env["run"]["processes"] == 2
    assert "round_problems" not in result.env["run"]  # the worker answered every round
    _check_rounds(result.records, 3)
    on_disk = {r.key: r for r in store.load()}
    assert all(on_disk[r.key].round_samples == r.round_samples for r in result.records)
    assert "round_samples" not in R.csv_columns() and "rounds" in R.csv_columns()


def test_a_dead_worker_is_replaced_by_the_main_process(monkeypatch):
    cells, backends = _cells(ops=("max_pool2d",))

    def dead(self, jobs):
        raise EOFError("worker died")

    monkeypatch.setattr(rounds.Worker, "call", dead)
    result = runner.run(cells, backends, None, options=_options(rounds=3, processes=3))
    problems = result.env["run"]["round_problems"]
    assert len(problems) == 2 and all("worker died" in p for p in problems)
    _check_rounds(result.records, 3)


def test_interrupt_during_rounds_keeps_the_rounds_done(tmp_path, monkeypatch):
    cells, backends = _cells(ops=("max_pool2d",))
    real, calls = rounds.time_round, []

    def interrupt(*args, **kw):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(rounds, "time_round", interrupt)
    store = R.ResultStore(tmp_path)
    result = runner.run(cells, backends, store, options=_options(rounds=4, processes=1))
    assert result.interrupted
    timed = [r for r in result.records if r.timed]
    assert len(timed) == len(cells) and sorted(r.rounds for r in timed) == [1] * (len(timed) - 3) + [2] * 3
    assert all(sum(r.round_samples) == len(r.samples_ms) for r in timed)
    assert {r.key: r.rounds for r in store.load()} == {r.key: r.rounds for r in result.records}


def test_a_failing_later_round_is_an_error_record(monkeypatch):
    cells, backends = _cells(ops=("max_pool2d",))
    victim = cells[0].key
    real = rounds.time_round

    def fail_one(cell, *args, **kw):
        if cell.key == victim:
            raise MemoryError("out of memory in round 2")
        return real(cell, *args, **kw)

    monkeypatch.setattr(rounds, "time_round", fail_one)
    result = runner.run(cells, backends, None, options=_options(rounds=3, processes=1))
    by_key = {r.key: r for r in result.records}
    bad = by_key[victim]
    assert bad.status == "error" and bad.message.startswith("timing round 2: MemoryError")
    assert bad.rounds == 1  # its first round is kept, the failed one not, no further rounds
    assert all(r.rounds == 3 for k, r in by_key.items() if k != victim and r.timed)


def test_a_worker_whose_parent_closed_the_pipe_leaves_quietly(capfd):
    """A worker that finds the pipe closed (no ``None`` sent: the parent died or gave up) exits
    with status 0 and prints no traceback into the caller's terminal."""
    worker = rounds.Worker(_options())
    worker.conn.close()  # the parent goes away without saying goodbye
    worker.proc.join(timeout=60)
    assert worker.proc.exitcode == 0
    err = capfd.readouterr().err
    assert "Traceback" not in err and "EOFError" not in err
