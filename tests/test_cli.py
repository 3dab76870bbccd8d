"""The convbench command line: help, list, a tiny run end to end, exit codes, bad arguments."""

import json

import pytest

from convbench.suites.measure import runner
from convbench.cli import COMMAND_MODULES, main
from tests.conftest import needs_interpreter_process
from convbench.suites.measure.records import read_csv, read_jsonl

pytestmark = pytest.mark.usefixtures("cpu_torch")  # CPU round counts, probes and plot names

FAST = ["--min-samples", "3", "--max-time", "0.02", "--threads", "1", "--no-peaks"]


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["list", "--help"], ["report", "--help"]])
def test_help(argv, capsys):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "usage: convbench" in out
    if argv[0] == "run":
        for option in ("--suite", "--backends", "--dtypes", "--layouts", "--scale", "--resume", "--out"):
            assert option in out


def test_commands_are_an_explicit_list():
    assert COMMAND_MODULES[:3] == ("convbench.cli.run", "convbench.cli.listing", "convbench.cli.report")


@pytest.mark.parametrize("what, expect", [
    ("suites", ["quick", "resnet50", "vgg16", "mobilenet_v2", "efficientnet_b0", "deepbench", "dilated",
                "transposed", "pool", "norm", "seed"]),
    ("algorithms", ["direct", "implicit_gemm", "winograd_f2", "winograd_f4", "fft", "im2col", "vendor"]),
    ("backends", ["torch", "triton", "triton-interpret", "numpy"]),
])
def test_list(what, expect, capsys):
    assert main(["list", what]) == 0
    out = capsys.readouterr().out
    for name in expect:
        assert name in out


def test_list_shapes_scaled(capsys):
    assert main(["list", "shapes", "--suite", "resnet50", "--scale", "0.25"]) == 0
    out = capsys.readouterr().out
    assert "n8-c16-14x14-k16-3x3-s1-p1" in out and "l1.3x3" in out


@pytest.mark.parametrize("argv, message", [
    (["run", "--suite", "alexnet"], "unknown suite 'alexnet'"),
    (["run", "--dtypes", "fp8"], "unknown dtype 'fp8'"),
    (["run", "--backends", "cudnn"], "unknown backend 'cudnn'"),
    (["run", "--backends", "triton,triton-interpret"], "cannot run in one process"),
    (["run", "--resume"], "--resume needs --out"),
    (["run", "--scale", "0"], "--scale must be positive"),
    (["run", "--algorithms", "winograd_f9", "--backends", "numpy"], "unknown algorithm"),
    (["run", "--ops", "conv2d", "--shapes", "no-such-shape", "--backends", "numpy"], "no cells"),
    (["report", "/nonexistent/convbench"], "is not a folder"),
    (["list", "everything"], "invalid choice"),
    (["frobnicate"], "invalid choice"),
    (["run", "--batch", "many"], "invalid int value"),
    (["run", "--rounds", "0"], "--rounds must be >= 1, got 0"),
    (["run", "--processes", "0"], "--processes must be >= 1, got 0"),
])
def test_bad_arguments_exit_2(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@needs_interpreter_process
def test_tiny_run_then_report(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["run", "--suite", "quick", "--backends", "numpy,torch,triton-interpret", "--ops", "conv2d",
            "--shapes", "1x1", "--algorithms", "direct,implicit_gemm", "--dtypes", "fp32,fp64",
            "--out", str(out), *FAST[:-1]]
    status = main(argv)
    records = read_jsonl(out / "results.jsonl")
    backends = sorted({r.backend for r in records})
    assert backends == ["numpy", "torch", "triton-interpret"]
    assert len(records) == 5  # torch fp32 + fp64, numpy direct, interpreter direct + implicit_gemm
    assert status == (1 if any(r.status in ("fail", "error") for r in records) else 0)
    assert len(read_csv(out / "results.csv")) == len(records)
    env = json.loads((out / "env.json").read_text())
    assert env["torch"] and env["run"]["cells"] == 5 and "cpu" in env["peaks"]
    numpy_direct = next(r for r in records if r.backend == "numpy")
    assert numpy_direct.status == "ok" and numpy_direct.samples_ms and numpy_direct.speedup is not None
    assert numpy_direct.roofline_pct is not None  # peaks measured in the same run
    for r in records:
        if r.backend == "triton-interpret":
            assert r.samples_ms == [] and r.p50_ms is None and r.timed is False
    report = (out / "report.md").read_text()
    assert "not timed" in report and "torch (baseline)" in report and "accuracy" in report
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert {p.name for p in out.glob("*.png")} == {"winners-quick.png", "speedup-quick-fp64-nchw.png",
                                                    "roofline-cpu.png"}
    printed = capsys.readouterr().out
    assert "p50 ms" in printed  # the tables were printed
    # ... and the run ends with the headline: numpy's geomean over torch, the interpreter not timed
    tail = printed[printed.index("== headline"):]
    assert "quick · fp64: best algorithm per shape" in tail and "numpy " in tail and "x [" in tail
    assert "triton-interpret not timed" in tail and "correctness:" in tail.splitlines()[-1]

    (out / "report.md").unlink()
    assert main(["report", str(out), "--no-plots", "-q"]) == 0
    assert (out / "report.md").exists()


def test_interrupted_run_exits_130_and_keeps_cells(tmp_path, monkeypatch, capsys):
    real, done = runner.run_cell, []

    def interrupt_after_two(cell, *args):
        if len(done) == 2:
            raise KeyboardInterrupt
        done.append(cell.key)
        return real(cell, *args)

    monkeypatch.setattr(runner, "run_cell", interrupt_after_two)
    out = tmp_path / "run"
    argv = ["run", "--backends", "numpy", "--ops", "max_pool2d,avg_pool2d", "--out", str(out),
            "--no-report", "-q", *FAST]
    assert main(argv) == 130
    assert [r.key for r in read_jsonl(out / "results.jsonl")] == done
    assert "--resume" in capsys.readouterr().err
    monkeypatch.setattr(runner, "run_cell", real)
    assert main(argv + ["--resume"]) == 0
    assert len(read_jsonl(out / "results.jsonl")) == 4


@needs_interpreter_process
def test_tune_and_run_tune_without_a_gpu_say_not_tuned(tmp_path, capsys, monkeypatch):
    """No GPU: `convbench tune` tunes nothing and exits 0; `run --tune` runs the heuristic configs
    and every Triton conv2d record says so (config name and "not tuned: no GPU")."""
    monkeypatch.setenv("CONVBENCH_TUNE_CACHE", str(tmp_path / "tune.json"))
    assert main(["tune", "--suite", "quick"]) == 0
    assert "not tuned: no GPU" in capsys.readouterr().err
    out = tmp_path / "run"
    assert main(["run", "--suite", "quick", "--tune", "--ops", "conv2d", "--shapes", "stem",
                 "--backends", "torch,triton-interpret", "-q", "--out", str(out), "--no-history",
                 "--no-report"]) == 0
    assert "not tuned: no GPU" in capsys.readouterr().err
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    triton = [r for r in records if r["backend"] == "triton-interpret" and r["status"] == "ok"]
    assert {r["algorithm"] for r in triton} == {"direct", "im2col", "implicit_gemm"}
    for r in triton:
        assert r["config"] and r["config_from"] == "not tuned: no GPU", r
    assert not (tmp_path / "tune.json").exists()
