"""``convbench calibrate`` and ``compare`` on real runs through the runner (numpy/torch backends
on the CPU), plus the calibration arithmetic on synthetic runs.

Real back-to-back runs on a shared machine drift (another process takes the CPU for a second and
every cell of that run is slower), so the exit status of a real A/A pair is not asserted here; it
is what ``calibrate`` measures and reports.  The plumbing on real records (rounds, probes, exit
status, the cell named) uses one real run against itself and against copies with one cell's real
samples scaled: by 2x, far outside any round-to-round noise of a loaded CI machine, and by 2%,
which the threshold never calls a regression.  The statistical power for a 30% change at the
round-to-round noise measured on the CPU VM is tested on synthetic rounds in test_compare.py.
"""

import json
import math

import numpy as np
import pytest

from convbench import cli
from convbench.reports.calibration import render_calibration
from convbench.suites.regress import calibration as calibrate
from convbench.suites.regress import verdicts as C
from convbench.suites.measure.records import Record, ResultStore

pytestmark = pytest.mark.usefixtures("cpu_torch")  # CPU round counts, probes and plot names

SELECTION = ["--ops", "conv2d", "--shapes", "1x1", "--backends", "numpy,torch", "--max-time", "0.05",
             "--min-samples", "10"]


@pytest.fixture(scope="module")
def aa_runs(tmp_path_factory):
    """Two real sequential runs of a small quick-suite subset, through ``convbench calibrate``."""
    root = tmp_path_factory.mktemp("calibrate")
    status = cli.main(["calibrate", *SELECTION, "--out", str(root)])
    assert status == 0
    return root


def _timed(records):
    return [r for r in records if r.samples_ms]


def test_calibrate_writes_runs_and_report(aa_runs):
    a, b = ResultStore(aa_runs / "run0").load(), ResultStore(aa_runs / "run1").load()
    assert len(a) == len(b) and len(_timed(a)) >= 3
    assert all(r.rounds == 15 and len(r.round_probe_ms) == 15 for r in _timed(a))  # the CPU default
    assert {r.backend for r in _timed(a)} == {"numpy", "torch"}
    report = (aa_runs / "calibration.md").read_text()
    assert "false alarms at threshold 5.00%" in report and "suggested --threshold" in report
    # the reported alarms are exactly compare's FASTER/SLOWER calls on the same pair
    cmp = C.compare(a, b)
    alarms = sum(c.verdict in ("SLOWER", "FASTER") for c in cmp.cells)
    assert f"FDR 0.05: {alarms} (" in report
    assert all(c.verdict != "UNTIMED" for c in cmp.cells if c.base.samples_ms and c.new.samples_ms)


def _scaled_copy(src, dst, key, factor):
    records = ResultStore(src).load()
    for r in records:
        if r.key == key:
            r.samples_ms = [x * factor for x in r.samples_ms]
            r.p50_ms = float(np.median(r.samples_ms))
    store = ResultStore(dst)
    store.start([])
    store.rewrite(records)
    return dst


def test_real_run_against_itself_and_scaled_copies(aa_runs, tmp_path, capsys):
    run = aa_runs / "run0"
    key = _timed(ResultStore(run).load())[0].key
    assert cli.main(["compare", str(run), str(run)]) == 0
    slow = _scaled_copy(run, tmp_path / "slow", key, 2.0)
    capsys.readouterr()
    assert cli.main(["compare", str(run), str(slow), "--show", "changed"]) == 1
    out = capsys.readouterr().out
    assert key in out.split("FAIL:")[1] and "SLOWER" in out
    slight = _scaled_copy(run, tmp_path / "slight", key, 1.02)
    assert cli.main(["compare", str(run), str(slight)]) == 0


def _run(ratios, seed=0, n=30):
    rng = np.random.default_rng(seed)
    return [Record.from_dict(dict(suite="s", op="conv2d", algorithm="a", backend="torch", shape=f"x{i}",
                                  dtype="fp32", layout="nchw", passed=True,
                                  samples_ms=list(r * rng.lognormal(0, 0.01, n))))
            for i, r in enumerate(ratios)]


def test_calibration_arithmetic():
    a = _run([1.0, 1.0, 1.0, 1.0], seed=1)
    b = _run([1.0, 1.0, 1.0, 1.25], seed=2)  # one cell drifted by 25%: one false alarm of four
    cal = calibrate.calibration([a, b])
    assert cal["timed_cells"] == 4 and cal["false_alarms"] == 1 and cal["false_alarm_rate"] == 0.25
    assert cal["noise_band"]["max"] == pytest.approx(max(cal["per_cell_max"].values()))
    assert 0.23 < cal["noise_band"]["max"] < 0.27
    assert cal["suggested_threshold"] == math.ceil(100 * cal["noise_band"]["max"]) / 100
    # three runs: three pairs
    assert len(calibrate.calibration([a, a, b])["pairs"]) == 3
    text = render_calibration(cal)
    assert "25.00%" in text and "suggested --threshold" in text


def test_calibrate_rejects_a_single_run(capsys):
    assert cli.main(["calibrate", "--runs", "1"]) == 2
    assert "--runs must be >= 2" in capsys.readouterr().err


def test_history_append_and_plot(aa_runs, tmp_path, capsys):
    from convbench.suites.regress import history

    hist = tmp_path / "history.jsonl"
    for d in ("run0", "run1"):
        history.append(hist, aa_runs / d)
    runs = history.load(hist)
    assert len(runs) == 2 and all(r.cells for r in runs)
    key = _timed(ResultStore(aa_runs / "run0").load())[0].key
    assert history.series(runs)[key][0] is not None
    png = tmp_path / "p50.png"
    assert cli.main(["report", "--history", str(hist), "--plot", str(png), "--filter", "torch"]) == 0
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    assert "torch" in capsys.readouterr().out
    assert json.loads(hist.read_text().splitlines()[0])["run"].endswith("run0")


def test_run_appends_to_history(tmp_path, capsys):
    args = ["run", "--backends", "numpy", "--ops", "conv2d", "--shapes", "1x1", "--dtypes", "fp64",
            "--max-time", "0.02", "--no-report", "--no-peaks", "-q"]
    assert cli.main([*args, "--out", str(tmp_path / "r1")]) == 0
    assert cli.main([*args, "--out", str(tmp_path / "r2")]) == 0
    assert cli.main([*args, "--out", str(tmp_path / "r3"), "--no-history"]) == 0
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["run"] for line in lines] == [str(tmp_path / "r1"), str(tmp_path / "r2")]
    assert "appended the run to" in capsys.readouterr().err


def test_planted_slowdowns_measure_the_power():
    from tests.test_compare import _round_run

    a, b = _round_run(11, n_cells=16), _round_run(12, n_cells=16)
    key = a[3].key
    moved = calibrate.planted(b, key, 0.3)
    assert [r.samples_ms for r in moved if r.key != key] == [r.samples_ms for r in b if r.key != key]
    assert np.allclose(next(r for r in moved if r.key == key).samples_ms,
                       1.3 * np.asarray(next(r for r in b if r.key == key).samples_ms))
    cal = calibrate.calibration([a, b], plant=(0.3, 0.02))
    found, ignored = cal["detection"][0.3], cal["detection"][0.02]
    assert found["tries"] == ignored["tries"] == 16
    assert found["named"] >= 14 and found["failed_exit"] >= found["named"]
    assert ignored["named"] == 0
    text = render_calibration(cal)
    assert "planted slowdown of 30.00% in one cell at a time (16 tries)" in text


def test_calibrate_rejects_bad_plants(capsys):
    assert cli.main(["calibrate", "--plant", "lots"]) == 2
    assert "--plant takes fractions" in capsys.readouterr().err


def test_calibrate_judges_existing_runs_again(aa_runs, tmp_path, capsys):
    runs = [str(aa_runs / "run0"), str(aa_runs / "run1")]
    out = tmp_path / "again"
    assert cli.main(["calibrate", "--existing", *runs, "--threshold", "0.5", "--plant", "none",
                     "--out", str(out)]) == 0
    text = (out / "calibration.md").read_text()
    assert "false alarms at threshold 50.00%" in text and "planted" not in text
    assert not (out / "run0").exists()  # nothing was run
    assert cli.main(["calibrate", "--existing", runs[0]]) == 2
    assert "--existing needs at least two runs" in capsys.readouterr().err


def test_selection_keeps_a_backend_that_cannot_run_here():
    cells, backends, _ = calibrate.selection(backends=["triton", "numpy"], ops=["conv2d"], shapes=["1x1"])
    assert set(backends) == {"triton", "numpy"} and any(c.backend == "triton" for c in cells)
