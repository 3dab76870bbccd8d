"""`convbench gpu-check` (scripts/gpu_check.sh) on the CPU: the plan fits the GPU session's 8
minutes, the --cpu plumbing check runs every step and writes the folder, the budget stops it
cleanly keeping what finished."""

from __future__ import annotations

import json
import re

import pytest

from convbench.cli import main
from convbench.runtime import cuda_available


def test_plan_lists_every_step_within_510_seconds(capsys):
    assert main(["gpu-check", "--plan"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if re.match(r"^\S+\s+\d+ s\s", line)]
    steps = {line.split()[0]: int(line.split()[1]) for line in rows if not line.startswith("total")}
    assert list(steps)[:2] == ["preflight", "gpu-tests"] and "calibrate" in steps and "static-vs-measured" in steps
    assert sum(steps.values()) <= 510
    assert f"total {sum(steps.values())}" in " ".join(out.split())


def test_cpu_plumbing_check_runs_every_step(tmp_path, capsys):
    out = tmp_path / "gc"
    assert main(["gpu-check", "--cpu", "--out", str(out)]) == 0
    steps = json.loads((out / "steps.json").read_text())
    assert [s["status"].split()[0] for s in steps] == ["ok"] * len(steps), steps
    for name in ("env.json", "summary.md", "static_vs_measured.md", "gpu-tests.xml", "calibrate/calibration.md"):
        assert (out / name).exists(), name
    runs = sorted(p.parent.name for p in out.glob("runs/*/results.jsonl"))
    assert runs == ["mobilenet_v2-dw", "pool-norm", "resnet50-fp16-nhwc", "resnet50-net-fp16-nhwc", "train-fp16-nhwc",
                    "vgg16-fp32-tf32"]
    table = (out / "static_vs_measured.md").read_text()
    assert "implicit_gemm" in table and "BM" in table
    assert "gpu-tests | ok" in (out / "summary.md").read_text()


def test_budget_stops_cleanly_and_keeps_what_finished(tmp_path):
    out = tmp_path / "gc"
    assert main(["gpu-check", "--cpu", "--out", str(out), "--budget-s", "12"]) == 0
    steps = {s["name"]: s["status"] for s in json.loads((out / "steps.json").read_text())}
    assert steps["preflight"].startswith("ok")
    assert any(v.startswith(("skipped: budget", "stopped: the budget")) for v in steps.values()), steps
    assert (out / "env.json").exists()


@pytest.mark.skipif(cuda_available(), reason="this machine has a GPU: the real check would run")
def test_without_a_gpu_the_real_check_is_a_usage_error(tmp_path, capsys):
    assert main(["gpu-check", "--out", str(tmp_path / "x")]) == 2
    assert "--cpu" in capsys.readouterr().err
