"""``convbench gpu-check``: the one command for a short GPU session (``scripts/gpu_check.sh``).

Steps run in order of value, each in its own process with a timeout, and the check stops
cleanly when ``--budget-s`` is spent, keeping what finished; everything lands in one folder
(default ``reports/gpu/<gpu>-<date>/``) to be committed:

1. ``preflight``: versions, the optional packages that are missing (the check carries on),
   the device and its measured peaks (``env.json``);
2. ``gpu-tests``: ``pytest tests/gpu`` (every kernel and config compiled against float64, the
   timers checked against each other), log and JUnit XML;
3. the suites that matter most against cuDNN, sized to fit: ResNet-50 fp16 channels_last (its
   layers, then the whole network's forward: auto, fused, implicit_gemm), VGG-16 3x3 fp32 and tf32, MobileNetV2 depthwise, pooling, normalization (``runs/<name>/``);
4. ``calibrate``: an A/A calibration of a small selection (the false-alarm rate of ``compare``
   on this GPU);
5. ``static-vs-measured``: registers, shared memory and MMA instructions of each Triton conv
   cell's launch next to its achieved TFLOP/s and % of peak;
6. ``summary.md``: tests passed/failed, the geometric-mean speedup of the best Triton algorithm
   over cuDNN per suite, the worst % of peak, and what was skipped for lack of time.

``--plan`` prints the steps with their estimated seconds and runs nothing; ``--cpu`` runs the
same steps at a tiny scale under the interpreter (the test run proves the plumbing with it).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .common import EXIT_FAILURES, EXIT_OK, UsageError

#: packages the check uses when present (it says which are missing and carries on)
OPTIONAL = ("pynvml", "pandas", "matplotlib", "pytest", "xdist", "hypothesis", "pytest_benchmark")


@dataclass
class Step:
    name: str
    estimate_s: float
    #: argv after ``python -m`` (a module and its arguments), or None for an in-process step
    argv: list | None = None
    what: str = ""
    run_dir: str | None = None
    #: filled when it ran
    status: str = "not run"
    seconds: float = 0.0
    detail: dict = field(default_factory=dict)


def _suite_runs(cpu: bool) -> list[tuple[str, list[str], float, str]]:
    """(name, `convbench run` arguments, estimated seconds, what) of the suite steps."""
    suites = [  # name, selection, GPU dtypes, estimate on a GPU, what
        ("resnet50-fp16-nhwc", ["--suite", "resnet50", "--layouts", "nhwc",
                                "--shapes", "conv1,l2.3x3,l3.1x1a,l4.3x3,l2.1x1b"], "fp16", 75,
         "ResNet-50 stem, 3x3 and 1x1 layers, fp16 channels_last, every algorithm vs cuDNN"),
        ("resnet50-net-fp16-nhwc", ["--suite", "resnet50-net", "--layouts", "nhwc", "--shapes", "whole network",
                                    "--algorithms", "auto,fused,implicit_gemm"], "fp16", 40,
         "ResNet-50's whole forward, batch 32, fp16 channels_last: auto, fused, implicit_gemm vs cuDNN eager "
         "(tuned and torch.compile: the README's network command)"),
        ("vgg16-fp32-tf32", ["--suite", "vgg16", "--shapes", "conv4,conv7"], "fp32,tf32", 55,
         "VGG-16 3x3 layers in fp32 and tf32 (Winograd and FFT apply)"),
        ("mobilenet_v2-dw", ["--suite", "mobilenet_v2", "--layouts", "nhwc,nchw", "--shapes", "dw"], "fp16", 45,
         "MobileNetV2 depthwise layers, both layouts"),
        ("pool-norm", ["--suite", "pool,norm", "--shapes", "resnet50"], "fp16,fp32", 45,
         "ResNet-50's pools and norms"),
        ("train-fp16-nhwc", ["--suite", "train", "--layouts", "nhwc", "--algorithms", "implicit_gemm,phase",
                             "--shapes", "resnet50.l2.3x3,resnet50.l4.3x3"], "fp16", 30,
         "ResNet-50 3x3 layers' fprop, dgrad, wgrad and whole step, fp16 channels_last, vs cuDNN"),
    ]
    if not cpu:
        return [(n, a + ["--dtypes", d, "--backends", "torch,triton", "--max-time", "0.4", "--rounds", "3"], e, w)
                for n, a, d, e, w in suites]
    # the plumbing check: one shape per suite (the last --shapes entry wins), two algorithms, tiny
    tiny = ["--dtypes", "fp32", "--backends", "torch,triton-interpret", "--scale", "0.05", "--batch", "1",
            "--max-time", "0.02", "--rounds", "1", "--processes", "1", "--no-peaks"]
    first = {"resnet50-fp16-nhwc": "l3.1x1a", "resnet50-net-fp16-nhwc": "whole network", "vgg16-fp32-tf32": "conv4",
             "mobilenet_v2-dw": "b3.dw", "pool-norm": "resnet50.maxpool", "train-fp16-nhwc": "resnet50.l4.3x3"}
    algorithms = {n: ["--algorithms", "direct,implicit_gemm"] for n in first
                  if n not in ("pool-norm", "train-fp16-nhwc", "resnet50-net-fp16-nhwc")}
    # a whole network under the interpreter takes 20 s: the plumbing check runs torch eager against the
    # float64 reference network (tests/test_networks.py runs our kernels through whole networks)
    algorithms["resnet50-net-fp16-nhwc"] = ["--backends", "torch", "--algorithms", "vendor"]
    return [(n, a + tiny + algorithms.get(n, []) + ["--shapes", first[n]], 10,
             w + " (CPU plumbing check: tiny, interpreter)") for n, a, d, e, w in suites]


def build_plan(out: Path, cpu: bool) -> list[Step]:
    py = ["-m", "convbench"]
    steps = [Step("preflight", 25 if not cpu else 5, None, "versions, missing optional packages, device, peaks")]
    tests = ["-m", "pytest", "-q", "tests/gpu", "-p", "no:cacheprovider", f"--junitxml={out / 'gpu-tests.xml'}"]
    steps.append(Step("gpu-tests", 120 if not cpu else 10, tests,
                      "every kernel and config compiled vs float64; timers vs each other"))
    for name, args, est, what in _suite_runs(cpu):
        run_dir = str(out / "runs" / name)
        steps.append(Step(name, est, py + ["run", *args, "--out", run_dir, "--no-history", "-q"], what, run_dir))
    cal = ["--suite", "resnet50", "--shapes", "l3.1x1a,l4.3x3", "--dtypes", "fp16", "--backends", "torch,triton",
           "--runs", "2", "--plant", "0.30", "--max-time", "0.3"]
    if cpu:
        cal = ["--suite", "quick", "--ops", "max_pool2d", "--backends", "numpy,torch", "--dtypes", "fp64",
               "--runs", "2", "--plant", "none", "--max-time", "0.02"]
    steps.append(Step("calibrate", 40 if not cpu else 10, py + ["calibrate", *cal, "--out", str(out / "calibrate")],
                      "A/A calibration of a small selection (false alarms, noise band, planted 30%)"))
    steps.append(Step("static-vs-measured", 30 if not cpu else 10, None,
                      "registers / shared memory / MMA next to TFLOP/s and % of peak per Triton conv cell"))
    steps.append(Step("summary", 5, None, "summary.md: tests, geomean speedups, worst % of peak"))
    return steps


def register(sub) -> None:
    p = sub.add_parser(
        "gpu-check", help="the one command for a GPU session: env, GPU tests, key suites, calibration, "
                          "static vs measured, into reports/gpu/<gpu>-<date>/",
        description=__doc__.split("\n\n")[1], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--budget-s", type=float, default=510.0,
                   help="stop cleanly when this many seconds are spent (finished steps are kept)")
    p.add_argument("--plan", action="store_true", help="print the steps with their estimated seconds and stop")
    p.add_argument("--cpu", action="store_true", help="the same steps at a tiny scale under the interpreter")
    p.add_argument("--out", type=Path, help="the folder (default reports/gpu/<gpu>-<date>/)")
    p.add_argument("--only", help="comma-separated step names to run (default: all)")
    p.set_defaults(func=gpu_check_command)


def _device_slug(cpu: bool) -> str:
    if cpu:
        return "cpu-plumbing"
    from convbench.suites.measure.env import device_slug, gpu_info  # lazily: torch

    return device_slug(gpu_info())


def gpu_check_command(args) -> int:
    from convbench.runtime import cuda_available  # lazily: torch only when the command runs

    if not args.budget_s > 0:
        raise UsageError(f"--budget-s must be positive, got {args.budget_s}")
    if not args.cpu and not args.plan and not cuda_available():
        raise UsageError("no CUDA GPU here: use --cpu for the plumbing check, or --plan to see the steps")
    out = args.out or Path("reports/gpu") / f"{_device_slug(args.cpu)}-{datetime.date.today().isoformat()}"
    steps = build_plan(out, args.cpu)
    if args.only:
        wanted = {s.strip() for s in args.only.split(",") if s.strip()}
        unknown = wanted - {s.name for s in steps}
        if unknown:
            raise UsageError(f"--only names unknown steps {sorted(unknown)}; steps: {[s.name for s in steps]}")
        steps = [s for s in steps if s.name in wanted]
    if args.plan:
        width = max(len(s.name) for s in steps)
        for s in steps:
            print(f"{s.name:{width}s}  {s.estimate_s:5.0f} s  {s.what}")
        print(f"{'total':{width}s}  {sum(s.estimate_s for s in steps):5.0f} s  (budget {args.budget_s:.0f} s) "
              f"-> {out}")
        return EXIT_OK
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    for step in steps:
        left = args.budget_s - (time.perf_counter() - t_start)
        if left < min(step.estimate_s, 10):
            step.status = "skipped: budget spent"
            continue
        t0 = time.perf_counter()
        try:
            if step.argv is None:
                step.status = IN_PROCESS[step.name](step, steps, out, args.cpu)
            else:
                step.status = _subprocess(step, out, left, args.cpu)
        except Exception as exc:  # one broken step must not lose the others
            step.status = f"error: {type(exc).__name__}: {exc}"
        step.seconds = time.perf_counter() - t0
        print(f"gpu-check: {step.name}: {step.status} ({step.seconds:.0f} s)", file=sys.stderr)
        (out / "steps.json").write_text(json.dumps([_step_json(s) for s in steps], indent=1))
    (out / "steps.json").write_text(json.dumps([_step_json(s) for s in steps], indent=1))
    print(f"gpu-check: wrote {out} in {time.perf_counter() - t_start:.0f} s", file=sys.stderr)
    bad = [s for s in steps if s.status.startswith(("error", "failed"))]
    return EXIT_FAILURES if bad else EXIT_OK


def _step_json(s: Step) -> dict:
    return {"name": s.name, "status": s.status, "seconds": round(s.seconds, 1), "estimate_s": s.estimate_s,
            "what": s.what, "run_dir": s.run_dir, **({"detail": s.detail} if s.detail else {})}


def _subprocess(step: Step, out: Path, left: float, cpu: bool) -> str:
    env = dict(os.environ)
    if cpu:  # the plumbing check: the interpreter and the torch baseline on the CPU, even on a GPU machine
        env["TRITON_INTERPRET"] = "1"
        env["CONVBENCH_TORCH_DEVICE"] = "cpu"
    log = out / f"{step.name}.log"
    with open(log, "w") as f:
        try:
            proc = subprocess.run([sys.executable, *step.argv], stdout=f, stderr=subprocess.STDOUT, env=env,
                                  timeout=max(left, 1.0))
        except subprocess.TimeoutExpired:
            return f"stopped: the budget ran out after {left:.0f} s (partial results kept)"
    if step.name == "gpu-tests":
        step.detail = _junit_counts(out / "gpu-tests.xml")
        return f"ok ({step.detail})" if proc.returncode in (0, 5) else f"failed ({step.detail}; see {log.name})"
    if proc.returncode == 0:
        return "ok"
    if proc.returncode == 1 and step.run_dir:
        return "ok (some cells failed: see the run's report)"
    return f"failed (exit {proc.returncode}; see {log.name})"


def _junit_counts(path: Path) -> dict:
    import xml.etree.ElementTree as ET  # only to read pytest's JUnit report

    if not path.exists():
        return {}
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    get = lambda k: int(suite.get(k, 0))  # noqa: E731
    failed = get("failures") + get("errors")
    return {"passed": get("tests") - failed - get("skipped"), "failed": failed, "skipped": get("skipped")}


# ----------------------------------------------------------------------------------------------
# in-process steps
# ----------------------------------------------------------------------------------------------
def _preflight(step: Step, steps, out: Path, cpu: bool) -> str:
    missing = [m for m in OPTIONAL if importlib.util.find_spec(m) is None]
    # lazily: torch (seconds to import) only when the check runs
    from convbench.suites.measure.env import collect
    from convbench.suites.measure.peaks import measure_peaks  # lazily, as above

    device = "cpu" if cpu else "cuda"
    env = collect(device)
    env["missing_optional_packages"] = missing
    env["peaks"] = {device: measure_peaks(device, ["fp32"] if cpu else ["fp32", "tf32", "fp16", "bf16"]).to_dict()}
    (out / "env.json").write_text(json.dumps(env, indent=1, default=str))
    step.detail = {"missing": missing}
    return "ok" + (f" (missing, carrying on: {', '.join(missing)})" if missing else "")


def _records_of(out: Path) -> dict[str, list]:
    """The records of every suite run under ``out/runs`` (also those of an earlier, partial check)."""
    from convbench.suites.measure.records import ResultStore  # lazily: the layers

    return {d.name: ResultStore(d).load() for d in sorted((out / "runs").glob("*"))
            if (d / "results.jsonl").exists()}


def _static_vs_measured(step: Step, steps, out: Path, cpu: bool) -> str:
    from convbench.reports.static_measured import static_vs_measured_table  # lazily: the layers
    from convbench.reports.markdown import table_markdown

    target = "sm_90"
    if not cpu:
        import torch  # lazily: GPU only

        major, minor = torch.cuda.get_device_capability()
        target = f"sm_{major}{minor}"
    records = [r for recs in _records_of(out).values() for r in recs]
    table = static_vs_measured_table(records, target, limit=6 if cpu else None)
    (out / "static_vs_measured.md").write_text(table_markdown(table) + "\n")
    step.detail = {"rows": len(table.rows), "target": target}
    return f"ok ({len(table.rows)} cells, {target})"


def _summary(step: Step, steps, out: Path, cpu: bool) -> str:
    step.status = "ok"
    lines = [f"# gpu-check {out.name}", ""]
    env_path = out / "env.json"
    if env_path.exists():
        env = json.loads(env_path.read_text())
        lines.append(f"device {env.get('gpu') or env.get('cpu')}; torch {env.get('torch')}, triton "
                     f"{env.get('triton')}, CUDA {env.get('cuda')}, cuDNN {env.get('cudnn')}")
        if env.get("missing_optional_packages"):
            lines.append(f"missing optional packages: {', '.join(env['missing_optional_packages'])}")
    lines += ["", "| step | status | seconds |", "|---|---|---|"]
    lines += [f"| {s.name} | {s.status} | {s.seconds:.0f} |" for s in steps]
    lines += ["", "| suite | best Triton algorithm per shape vs vendor: geomean speedup | shapes | worst % of peak |",
              "|---|---|---|---|"]
    for name, recs in _records_of(out).items():
        speedups, worst = [], None
        best: dict = {}
        for r in recs:
            if r.backend.startswith("triton") and r.status == "ok" and r.speedup:
                k = (r.shape, r.dtype, r.layout)
                best[k] = max(best.get(k, 0.0), r.speedup)
            if r.backend.startswith("triton") and r.roofline_pct is not None:
                worst = r.roofline_pct if worst is None else min(worst, r.roofline_pct)
        speedups = list(best.values())
        gm = math.exp(sum(math.log(v) for v in speedups) / len(speedups)) if speedups else None
        lines.append(f"| {name} | {f'{gm:.2f}x' if gm else 'not timed'} | {len(speedups)} | "
                     f"{f'{worst:.0f}%' if worst is not None else '-'} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    return "ok"


IN_PROCESS = {"preflight": _preflight, "static-vs-measured": _static_vs_measured, "summary": _summary}
