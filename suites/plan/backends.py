"""Backends: who runs a cell, on what device, and whether its time means anything.

* ``triton``            the Triton kernels compiled for the GPU (timed with CUDA events);
* ``triton-interpret``  the same kernels under ``TRITON_INTERPRET=1`` on the CPU: checked for
  correctness, *timing recorded as not measured* (interpreter seconds say nothing about a GPU);
* ``torch``             ``torch.nn.functional``: cuDNN on the GPU with ``cudnn.benchmark=True`` and the
  TF32 flags set per cell (off for fp32, on for tf32), oneDNN/ATen on the CPU;
* ``numpy``             the float64 reference algorithms (direct, im2col, Winograd, FFT), timed on
  the CPU: an algorithm comparison that needs no GPU.

:mod:`convbench.kernels` is imported lazily: ``TRITON_INTERPRET`` must be decided (see :func:`configure_interpreter`)
before the first import, because Triton reads it when a kernel is defined.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from convbench import reference
from convbench.runtime import ENV as INTERPRETER_ENV, cuda_available, interpreter_requested

from . import ops
from .shapes import NETWORK_SOURCE, Case

DTYPES = ("fp32", "tf32", "fp16", "bf16", "fp64")
LAYOUTS = ("nchw", "nhwc")
ITEMSIZE = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "fp64": 8}
#: the algorithm name the vendor-library baseline cells carry
VENDOR = "vendor"
#: single-kernel ops carry this algorithm name on the Triton backends
DEFAULT_ALGORITHM = "default"
#: the algorithm names the API contract promises (used when ``kernels`` cannot be imported)
CONTRACT_CONV2D_ALGORITHMS = ("direct", "im2col", "implicit_gemm", "winograd_f2", "winograd_f4", "fft")
#: pins the torch baseline's device ("cpu" or "cuda"; default: the GPU when there is one)
TORCH_DEVICE_ENV = "CONVBENCH_TORCH_DEVICE"
ATTACK_FP32_ONLY = ("attack cells run in fp32: a sign step compares across implementations only at one "
                    "precision")
TRAIN_STEP_FP32_ONLY = ("network training steps run fp32 only: a freshly initialised network's gradients are "
                        "ill-conditioned (torch's own fp32 step is off float64 by up to percents), so a lower "
                        "precision has no reference to be checked against")
TRAIN_STEP_UNFUSED = ("fused applies to forward cells: fuse folds eval-mode batch norm, a training step "
                      "normalises by the batch")
#: a training step's last-stage batch norm needs this many values per channel: over 2 values its
#: backward is pure cancellation (the normalised pair is +-1 whatever the inputs), and torch's own
#: fp32 step is then off float64 by 100% and more; from 4 values on it is 0.1% (MobileNetV2) to 4%
#: (ResNet-50)
TRAIN_STEP_MIN_VALUES = 4


def train_step_unsupported(case: Case, algorithm: str, dtype: str) -> str | None:
    """Why a network training-step cell cannot run (every backend), or None."""
    if case.family != "network" or case.mode != "fwd+bwd":
        return None
    if dtype not in ("fp32", "fp64"):
        return TRAIN_STEP_FP32_ONLY
    if algorithm == "fused":
        return TRAIN_STEP_UNFUSED
    g = case.geom
    values = g.n * math.ceil(g.h / 32) * math.ceil(g.w / 32)  # the last stage's batch norm, per channel
    if values < TRAIN_STEP_MIN_VALUES:
        need = math.ceil(TRAIN_STEP_MIN_VALUES / (values // g.n))
        return (f"a training step normalises over the batch: at {g.n} image(s) of {g.h}x{g.w} the last stage's "
                f"batch norm sees {values} values per channel, too few to be checked (its backward cancels); "
                f"use --batch {need} or more")
    return None


#: cases larger than this many nominal operations are skipped under the interpreter
INTERPRET_MAX_FLOPS = 2e7


def torch_dtype(dtype: str):
    import torch  # lazily: plan is imported by records and the reports, which need no torch

    return {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16,
            "bf16": torch.bfloat16, "fp64": torch.float64}[dtype]


def input_precision(dtype: str) -> str:
    return "tf32" if dtype == "tf32" else "ieee"


def configure_interpreter(backends) -> None:
    """Set ``TRITON_INTERPRET=1`` when ``triton-interpret`` is among ``backends``; refuse to mix."""
    names = set(backends)
    if "triton-interpret" in names and "triton" in names:
        raise ValueError("backends 'triton' and 'triton-interpret' cannot run in one process "
                         "(TRITON_INTERPRET is read when kernels are defined)")
    if "triton-interpret" in names:
        defined = sys.modules.get("convbench.kernels._common")
        if defined is not None and not defined.INTERPRETER_MODE:
            raise ValueError("backend 'triton-interpret' needs TRITON_INTERPRET=1 before convbench.kernels is "
                             "imported, and this process imported the compiled kernels: run it in a new process")
        if defined is None:
            os.environ[INTERPRETER_ENV] = "1"  # asked for by name: not only where there is no GPU


def _kernels():
    from convbench import kernels  # lazily: TRITON_INTERPRET must be decided first

    return kernels


@dataclass(frozen=True)
class Prepared:
    """A cell ready to run: ``run()`` is the timed call, ``to_numpy`` turns its result to float64."""

    run: Callable[[], Any]
    to_numpy: Callable[[Any], np.ndarray]
    setup: Callable[[], None] = lambda: None
    #: record fields the backend knows (the launch config of a Triton conv2d cell)
    info: dict = field(default_factory=dict)
    #: the tensors/arrays ``run`` reads, by name (the cheat guards checksum them around a call)
    inputs: dict = field(default_factory=dict)
    #: the whole public call, when ``run`` times the kernels alone (Triton conv2d: the plan's launches)
    end_to_end: Callable[[], Any] | None = None


class _Planner:
    """``ops.call`` target that makes a :class:`convbench.kernels.ConvPlan` instead of calling."""

    def __init__(self, kernels):
        self.conv2d = kernels.plan_conv2d


def _sync(device: str):
    if device == "cuda":
        import torch  # lazily: plan is imported by records and the reports, which need no torch

        return torch.cuda.synchronize
    return lambda: None


def _to_numpy(out) -> np.ndarray:
    if isinstance(out, tuple):  # a training step's (y, dX, dW, db)
        return tuple(_to_numpy(o) for o in out)
    if hasattr(out, "detach"):
        return out.detach().cpu().double().numpy()
    return np.asarray(out, dtype=np.float64)


def to_device(tensors: dict, device: str, layout: str) -> dict:
    """The cell's tensors on ``device`` in its layout (running statistics copied: updated in place)."""
    import torch  # lazily: plan is imported by records and the reports, which need no torch

    out = {}
    for name, t in tensors.items():
        if t is None:
            out[name] = None
            continue
        t = t.to(device)
        if layout == "nhwc" and name in ops.SPATIAL_INPUTS and t.dim() == 4:
            t = t.contiguous(memory_format=torch.channels_last)
        out[name] = t.clone() if name in ("running_mean", "running_var") else t
    return out


class Backend:
    name = ""
    device = "cpu"
    timed = True
    description = ""
    dtypes: tuple[str, ...] = ()
    layouts: tuple[str, ...] = LAYOUTS

    def available(self) -> str | None:
        """Why this backend cannot run here, or None."""
        return None

    def algorithms(self, op: str) -> tuple[str, ...]:
        raise NotImplementedError

    def algorithms_for(self, case: Case) -> tuple[str, ...]:
        """The algorithms a case runs with here (by default: every algorithm of its op)."""
        return self.algorithms(case.op)

    def unsupported(self, case: Case, algorithm: str, dtype: str, layout: str) -> str | None:
        """Why this cell does not apply (recorded as skipped), or None."""
        return None

    def prepare(self, case: Case, algorithm: str, dtype: str, layout: str, tensors: dict) -> Prepared:
        raise NotImplementedError

    def workspace_bytes(self, case: Case, algorithm: str, dtype: str) -> int | None:
        return None

    def multiplies(self, case: Case, algorithm: str) -> int | None:
        return None


class TritonBackend(Backend):
    name = "triton"
    device = "cuda"
    description = "Triton kernels compiled for the GPU"
    dtypes = ("fp32", "tf32", "fp16", "bf16")

    def available(self) -> str | None:
        if not cuda_available():
            return "needs a CUDA GPU (use triton-interpret on the CPU)"
        if interpreter_requested():
            return "TRITON_INTERPRET is set: kernels would run in the interpreter"
        return None

    def algorithms(self, op: str) -> tuple[str, ...]:
        try:
            k = _kernels()
            conv, transpose = tuple(k.CONV2D_ALGORITHMS), tuple(k.CONV_TRANSPOSE2D_ALGORITHMS)
        except Exception:  # kernels broken: keep the contract's names, the cells record the error
            conv, transpose = CONTRACT_CONV2D_ALGORITHMS, ("phase",)
        if op == "conv2d":
            return conv
        if op == "conv_transpose2d":
            return transpose
        return (DEFAULT_ALGORITHM,)

    #: conv2d's backward modes run one kernel each: dgrad the phase kernel (a transposed
    #: convolution of the gradient), wgrad the implicit GEMM over N*P*Q
    BACKWARD_ALGORITHMS = {"dgrad": ("phase",), "wgrad": ("implicit_gemm",)}

    def algorithms_for(self, case: Case) -> tuple[str, ...]:
        if case.op == "conv2d" and case.mode in self.BACKWARD_ALGORITHMS:
            return self.BACKWARD_ALGORITHMS[case.mode]
        if case.family == "network":  # the policies: auto, fused, each conv algorithm forced
            return ops.NETWORK_POLICIES + self.algorithms("conv2d")
        return self.algorithms(case.op)

    def _conv_entry(self, algorithm: str):
        return {a.name: a for a in _kernels().ALGORITHMS}[algorithm]

    def unsupported(self, case, algorithm, dtype, layout):
        if case.family == "attack" and dtype != "fp32":
            return ATTACK_FP32_ONLY
        if case.family == "network":
            return train_step_unsupported(case, algorithm, dtype)
        if case.op == "conv2d" and case.mode in self.BACKWARD_ALGORITHMS:
            return None  # dgrad and wgrad take every geometry the forward takes
        if case.op == "conv2d":
            return self._conv_entry(algorithm).unsupported(case.geom, torch_dtype(dtype))
        if dtype == "tf32" and case.family in ("pool", "norm"):
            return "tf32 applies to matrix products only (pooling/normalization have none)"
        return None

    def prepare(self, case, algorithm, dtype, layout, tensors, *, config=None):
        """``config`` (conv2d only): None (the heuristic), a config name, or ``"tune"`` (the tuning
        cache, which ``convbench tune`` / ``run --tune`` filled before; the heuristic on a CPU)."""
        k = _kernels()
        t = to_device(tensors, self.device, layout)
        extra, info = {}, {}
        if case.op in ("conv2d", "conv_transpose2d"):
            extra = {"algorithm": algorithm, "input_precision": input_precision(dtype)}
        if case.family == "attack":  # the network is built once; run() is the attack
            return Prepared(ops.attack_runner(k, case, t), _to_numpy, inputs=t)
        if case.family == "network":  # the network is built (and fused) once; run() is the forward or step
            info = {"note": ops.fallback_note(case, algorithm, torch_dtype(dtype))}
            run = ops.network_runner(k, case, t, algorithm, input_precision(dtype))
            if algorithm == "tuned":  # tune the misses now, not in the first timed call
                info.update(ops.tune_network(k, run, t["input"]))
            return Prepared(run, _to_numpy, info=info, inputs=t)
        fn = getattr(k, case.op, None)
        if fn is None:
            raise NotImplementedError(f"kernels.{case.op} does not exist yet")
        if case.op == "conv2d" and case.mode in self.BACKWARD_ALGORITHMS:
            extra = {"input_precision": input_precision(dtype)}
            return Prepared(lambda: ops.call(k, case, t, **extra), _to_numpy, inputs=t)
        if case.op == "conv2d" and case.mode == "fwd+bwd":  # the forward's algorithm and config, then autograd
            choice = k.resolve_conv2d(t["input"], t["weight"], t.get("bias"), case.geom, algorithm=algorithm,
                                      config=config, input_precision=input_precision(dtype))
            extra.update(algorithm=choice.algorithm, config=choice.config if choice.config is not None else "heuristic")
            info = {"config": choice.config_name, "config_from": choice.config_from}
            return Prepared(lambda: ops.call(k, case, t, **extra), _to_numpy, info=info, inputs=t)
        if case.op == "conv2d":
            choice = k.resolve_conv2d(t["input"], t["weight"], t.get("bias"), case.geom, algorithm=algorithm,
                                      config=config, input_precision=input_precision(dtype))
            extra["algorithm"] = choice.algorithm  # "auto" resolved once (measured or heuristic)
            extra["config"] = choice.config if choice.config is not None else "heuristic"
            info = {"config": choice.config_name, "config_from": choice.config_from}
            if choice.tuning_s:
                info["tuning_s"] = choice.tuning_s
            # kernel-only timing: the one-time work (checks, allocation, weight layout, filter
            # transforms) happens here, once, and is timed apart; run() only launches kernels
            sync = _sync(self.device)
            sync()
            t0 = time.perf_counter()
            plan = ops.call(_Planner(k), case, t, **extra)
            sync()
            info.update(setup_ms=(time.perf_counter() - t0) * 1e3, launches=len(plan.launches))
            return Prepared(plan.run, _to_numpy, info=info, inputs=t,
                            end_to_end=lambda: ops.call(k, case, t, **extra))
        return Prepared(lambda: ops.call(k, case, t, **extra), _to_numpy, info=info, inputs=t)

    def workspace_bytes(self, case, algorithm, dtype):
        if case.op == "conv2d" and case.mode == "fwd":
            return int(self._conv_entry(algorithm).workspace_bytes(case.geom, ITEMSIZE[dtype]))
        return None

    def multiplies(self, case, algorithm):
        if case.op == "conv2d" and case.mode == "fwd":
            return int(self._conv_entry(algorithm).multiplies(case.geom))
        return None


class TritonInterpretBackend(TritonBackend):
    name = "triton-interpret"
    device = "cpu"
    timed = False
    description = "Triton kernels in the CPU interpreter: correctness only, timing not measured"

    def available(self) -> str | None:
        if not interpreter_requested():
            return "TRITON_INTERPRET=1 was not set before kernels were imported"
        return None

    def __init__(self, max_flops: float = INTERPRET_MAX_FLOPS):
        self.max_flops = max_flops

    def unsupported(self, case, algorithm, dtype, layout):
        if case.flops > self.max_flops:
            return (f"too large for the interpreter ({case.flops / 1e6:.0f} M operations > "
                    f"{self.max_flops / 1e6:.0f} M); shrink it with --scale")
        return super().unsupported(case, algorithm, dtype, layout)


class TorchBackend(Backend):
    name = "torch"
    description = "torch.nn.functional: cuDNN (benchmark=True) on the GPU, oneDNN/ATen on the CPU"
    dtypes = ("fp32", "tf32", "fp16", "bf16", "fp64")

    def __init__(self, device: str | None = None):
        """``device``: "cuda" or "cpu"; default ``$CONVBENCH_TORCH_DEVICE``, else the GPU when present."""
        device = device or os.environ.get(TORCH_DEVICE_ENV) or ("cuda" if cuda_available() else "cpu")
        if device not in ("cuda", "cpu"):
            raise ValueError(f"{TORCH_DEVICE_ENV} / device must be 'cuda' or 'cpu', got {device!r}")
        self.device = device

    def algorithms(self, op: str) -> tuple[str, ...]:
        return (VENDOR,)

    def algorithms_for(self, case: Case) -> tuple[str, ...]:
        return (VENDOR, "compile") if case.family == "network" else (VENDOR,)

    def unsupported(self, case, algorithm, dtype, layout):
        if case.family == "attack" and dtype != "fp32":
            return ATTACK_FP32_ONLY
        if reason := train_step_unsupported(case, algorithm, dtype):
            return reason
        if algorithm == "compile" and self.device != "cuda":
            return ("torch.compile (Inductor) is timed on GPU runs only: compiling a whole network for the CPU "
                    "takes minutes and says nothing about the GPU")
        if dtype == "tf32" and self.device != "cuda":
            return "tf32 needs a CUDA GPU"
        if dtype == "tf32" and case.family in ("pool", "norm"):
            return "tf32 applies to matrix products only (pooling/normalization have none)"
        return None

    def prepare(self, case, algorithm, dtype, layout, tensors):
        import torch  # lazily: plan is imported by records and the reports, which need no torch
        import torch.nn.functional as F

        t = to_device(tensors, self.device, layout)

        def setup():
            if self.device == "cuda":
                torch.backends.cudnn.benchmark = True
                torch.backends.cudnn.allow_tf32 = dtype == "tf32"
                torch.backends.cuda.matmul.allow_tf32 = dtype == "tf32"

        if case.op == "conv2d" and case.mode != "fwd":  # cuDNN's dgrad / wgrad / autograd step
            return Prepared(lambda: ops.call(ops.TORCH_GRAD, case, t), _to_numpy, setup, inputs=t)
        if case.family == "attack":
            return Prepared(ops.attack_runner(F, case, t), _to_numpy, setup, inputs=t)
        if case.family == "network":  # eager (cuDNN) or torch.compile of the same network and weights
            return Prepared(ops.network_runner(F, case, t, "compile" if algorithm == "compile" else "vendor"),
                            _to_numpy, setup, inputs=t)

        def run():
            with torch.no_grad():
                return ops.call(F, case, t)

        return Prepared(run, _to_numpy, setup, inputs=t)


class NumpyBackend(Backend):
    name = "numpy"
    device = "cpu"
    description = "float64 NumPy reference algorithms, timed on the CPU"
    dtypes = ("fp64",)
    layouts = ("nchw",)

    def algorithms(self, op: str) -> tuple[str, ...]:
        return tuple(ops.REFERENCE_ALGORITHMS) if op == "conv2d" else ("direct",)

    def algorithms_for(self, case: Case) -> tuple[str, ...]:
        if case.family == "network":  # the float64 network layer by layer, its convs the im2col reference
            return ("im2col",)
        if case.mode != "fwd":  # one float64 reference of each gradient
            return ("direct",)
        return self.algorithms(case.op)

    def unsupported(self, case, algorithm, dtype, layout):
        g = case.geom
        if reason := train_step_unsupported(case, algorithm, dtype):
            return reason
        if algorithm == "direct" and case.op == "conv2d" and case.source == NETWORK_SOURCE:
            return ("a network suite times the float64 im2col reference, not the direct loop nest (minutes at "
                    "network sizes; the two are the same float64 convolution)")
        if case.family == "attack":
            return ("no NumPy autograd: an attack's float64 reference is torch autograd in float64 on the CPU, "
                    "which checks every attack cell")
        if algorithm.startswith("winograd") and (
                (g.r, g.s) != (3, 3) or g.stride != (1, 1) or g.dilation != (1, 1) or g.groups != 1):
            return "Winograd F(m,3) needs a 3x3 kernel, stride 1, dilation 1, groups 1"
        if algorithm == "fft" and g.stride != (1, 1):
            return "FFT convolution computes every output pixel: stride 1 only"
        return None

    def prepare(self, case, algorithm, dtype, layout, tensors):
        arrays = {k: (None if v is None else v.detach().double().numpy().copy()) for k, v in tensors.items()}
        if case.family == "network":  # the reference network is built once; run() is its forward
            return Prepared(ops.network_runner(reference, case, arrays), _to_numpy, inputs=arrays)
        if case.op == "conv2d" and case.mode != "fwd":
            return Prepared(lambda: ops.call(reference, case, arrays), _to_numpy, inputs=arrays)
        if case.op == "conv2d":
            return Prepared(lambda: ops.call_reference_algorithm(reference, algorithm, case, arrays), _to_numpy,
                            inputs=arrays)
        if getattr(reference, case.op, None) is None:
            raise NotImplementedError(f"reference.{case.op} does not exist yet")
        return Prepared(lambda: ops.call(reference, case, arrays), _to_numpy, inputs=arrays)

    def multiplies(self, case, algorithm):
        if case.op != "conv2d" or case.mode != "fwd":
            return None
        try:
            entries = {a.name: a for a in _kernels().ALGORITHMS}
        except Exception:  # kernels not importable: the count is not known
            return None
        entry = entries.get(algorithm)
        return int(entry.multiplies(case.geom)) if entry is not None else None


#: every backend by name, in report order (the baseline first)
BACKEND_NAMES = ("torch", "triton", "triton-interpret", "numpy")


def make_backend(name: str) -> Backend:
    factories = {"triton": TritonBackend, "triton-interpret": TritonInterpretBackend,
                 "torch": TorchBackend, "numpy": NumpyBackend}
    if name not in factories:
        raise ValueError(f"backend must be one of {BACKEND_NAMES}, got {name!r}")
    return factories[name]()


def default_backends() -> tuple[str, ...]:
    """What runs when nothing is asked for: the GPU pair, or interpreter + CPU baselines."""
    return ("torch", "triton") if cuda_available() else ("torch", "triton-interpret", "numpy")


def default_dtypes() -> tuple[str, ...]:
    return ("fp32", "tf32", "fp16", "bf16") if cuda_available() else ("fp32", "fp64")


def default_layouts() -> tuple[str, ...]:
    return ("nchw",)


def auto_algorithm(geometry, dtype: str) -> str | None:
    """The algorithm ``conv2d(..., algorithm="auto")`` picks for ``geometry`` in ``dtype``
    (:func:`convbench.kernels.choose_algorithm`), or None where the kernels cannot be imported."""
    try:
        return _kernels().choose_algorithm(geometry, torch_dtype(dtype))
    except Exception:
        return None
