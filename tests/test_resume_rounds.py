"""Ctrl-C during the timing rounds, then --resume: every timed cell ends at the requested rounds.

A real `convbench run` subprocess (numpy and torch backends, pooling ops of the quick suite, 6
rounds in one process) gets SIGINT once every cell has its first round on disk, i.e. during the
later rounds.  The interrupted folder says that cells are short of rounds (report and compare);
the resumed run takes exactly the missing rounds: no duplicate cells, every timed cell at 6
rounds, the env names the resumed cells and the rounds each had.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from convbench.suites.plan.select import select_cells

ROUNDS = 6
ARGS = ["run", "--suite", "quick", "--backends", "numpy,torch", "--ops", "max_pool2d,avg_pool2d,batch_norm",
        "--rounds", str(ROUNDS), "--processes", "2", "--max-time", "1.2", "--min-samples", "30", "--no-peaks",
        "--no-plots", "--no-history", "-q"]


def _records(out: Path) -> list[dict]:
    path = out / "results.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_sigint_during_rounds_then_resume_finishes_every_round(tmp_path):
    out = tmp_path / "run"
    n_cells = len(select_cells(["quick"], ["numpy", "torch"], ops=["max_pool2d", "avg_pool2d", "batch_norm"],
                               algorithms=None, dtypes=None, layouts=None, shapes=None).cells)
    cmd = [sys.executable, "-m", "convbench", *ARGS, "--out", str(out)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while len(_records(out)) < n_cells and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before its rounds: {proc.stderr.read()[-2000:]}"
    time.sleep(1.0)  # into the later rounds
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]

    interrupted = _records(out)
    timed = [r for r in interrupted if r["timed"]]
    assert timed and all(r["rounds_requested"] == ROUNDS for r in timed)
    assert any(r["rounds"] < ROUNDS for r in timed), "SIGINT came after the last round"
    assert "fewer timing rounds" in (out / "report.md").read_text()

    from convbench.cli import main
    assert main([*ARGS, "--out", str(out), "--resume"]) == 0
    resumed = _records(out)
    keys = [r["suite"] + r["shape"] + r["backend"] + r["algorithm"] + r["dtype"] for r in resumed]
    assert len(keys) == len(set(keys)) == n_cells
    timed = [r for r in resumed if r["timed"]]
    assert timed and all(r["rounds"] == ROUNDS == len(r["round_samples"]) == len(r["round_pids"]) for r in timed)
    short = {k: v for k, v in json.loads((out / "env.json").read_text())["run"]["resumed_rounds"].items()}
    assert short and all(1 <= v < ROUNDS for v in short.values())
    for r in timed:  # a resumed cell's later rounds come from other processes than its first ones
        key = "|".join([r["suite"], r["op"], r["algorithm"], r["backend"], r["shape"], r["dtype"], r["layout"]])
        if key in short:
            had = short[key]
            assert not set(r["round_pids"][:had]) & set(r["round_pids"][had:]), r["round_pids"]
    assert "fewer timing rounds" not in (out / "report.md").read_text()
