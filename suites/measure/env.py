"""The environment a run was measured in: device, versions, TF32 flags, commit, host.

Written to ``env.json`` next to the results so a number is never separated from the machine
that produced it.  Every probe is best-effort: a missing tool gives ``None``, never an error.
:func:`configure_threads` sets the CPU thread pools a run is measured with (and
:func:`blas_threads` reads them back for ``env.json``).
"""

from __future__ import annotations

import datetime
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

import torch

from convbench.runtime import interpreter_overflow_checks_requested, interpreter_requested

#: the checkout this file lives in (git commands run there; elsewhere they give None)
REPO_ROOT = Path(__file__).resolve().parents[2]


def _run(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, cwd=REPO_ROOT)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _version(module: str) -> str | None:
    try:
        mod = __import__(module)
    except Exception:
        return None
    return getattr(mod, "__version__", None)


def cpu_name() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def git_info() -> dict:
    commit = _run(["git", "rev-parse", "HEAD"])
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"])
    return {"git_commit": commit, "git_dirty": bool(status) if status is not None else None}


def gpu_info() -> dict:
    if not torch.cuda.is_available():
        return {"gpu": None}
    idx = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(idx)
    info = {
        "gpu": props.name,
        "gpu_sms": props.multi_processor_count,
        "gpu_l2_bytes": getattr(props, "L2_cache_size", None),
        "gpu_memory_bytes": props.total_memory,
        "gpu_capability": f"{props.major}.{props.minor}",
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "driver": None, "sm_clock_mhz": None, "mem_clock_mhz": None,
    }
    try:  # nvidia-ml-py, present on the GPU machine
        import pynvml

        pynvml.nvmlInit()
        handle = nvml_handle(pynvml, idx, props)
        driver = pynvml.nvmlSystemGetDriverVersion()
        info["driver"] = driver.decode() if isinstance(driver, bytes) else driver
        info["sm_clock_mhz"] = pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM)
        info["mem_clock_mhz"] = pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM)
    except Exception:
        smi = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
        info["driver"] = smi.splitlines()[0] if smi else None
    return info


def nvml_target(idx: int, props, visible: str | None) -> tuple[str, object]:
    """How NVML should find torch's device ``idx``: NVML numbers the physical GPUs, torch the
    visible ones (``CUDA_VISIBLE_DEVICES``).  ("pci", bus id) when torch knows the PCI address,
    else ("uuid", ...) or ("index", physical index) from ``CUDA_VISIBLE_DEVICES``, else ("index", idx)."""
    bus = getattr(props, "pci_bus_id", None)
    if bus is not None:
        domain, device = getattr(props, "pci_domain_id", 0), getattr(props, "pci_device_id", 0)
        return "pci", f"{domain:08x}:{bus:02x}:{device:02x}.0"
    if visible:
        entries = [e.strip() for e in visible.split(",") if e.strip()]
        if idx < len(entries):
            entry = entries[idx]
            if entry.isdigit():
                return "index", int(entry)
            return "uuid", entry
    return "index", idx


def nvml_handle(pynvml, idx: int, props):
    kind, value = nvml_target(idx, props, os.environ.get("CUDA_VISIBLE_DEVICES"))
    if kind == "pci":
        return pynvml.nvmlDeviceGetHandleByPciBusId(value)
    if kind == "uuid":
        return pynvml.nvmlDeviceGetHandleByUUID(value)
    return pynvml.nvmlDeviceGetHandleByIndex(value)


def tf32_flags() -> dict:
    """The global torch flags now: env.json has them as the run started; every record has them as
    its cell ran (``Record.flags``, taken after the cell's own setup)."""
    return {
        "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
        "cuda_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
    }


def collect(device: str) -> dict:
    """Everything above plus versions, host and time, as one JSON-able dict."""
    env = {
        "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "hostname": socket.gethostname(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "convbench": _version("convbench"),
        "torch": torch.__version__,
        "triton": _version("triton"),
        "numpy": _version("numpy"),
        "triton_interpret": interpreter_requested(),
        # the interpreter's int32 overflow sanitizer (off unless CONVBENCH_INTERPRET_OVERFLOW_CHECKS=1)
        "interpret_overflow_checks": interpreter_requested() and interpreter_overflow_checks_requested(),
    }
    env.update(git_info())
    env.update(gpu_info())
    env.update(tf32_flags())
    return env


def device_slug(env: dict) -> str:
    """Short device name for directory names: ``h100-80gb-hbm3`` or ``cpu``."""
    name = env.get("gpu") or "cpu"
    name = name.lower().replace("nvidia", "").strip()
    return "-".join("".join(ch if ch.isalnum() else " " for ch in name).split()) or "cpu"


def configure_threads(requested: int | None) -> int:
    """Set torch's CPU threads and numpy's BLAS/OpenMP pools: ``requested``, else 1.

    One thread by default so that two runs are configured alike (a regression comparison needs
    that; a default that followed the machine's load would not be) and so that OpenMP or BLAS
    threads cannot oversubscribe a busy machine, where they spin and inflate small CPU timings
    a thousandfold.  numpy's OpenBLAS is a separate pool that ``torch.set_num_threads`` does not
    reach: left at one thread per core it made small float64 GEMMs bimodal *between processes*
    (the same cell 1.0x in one run and 1.7x in the next, each run internally tight), so it is
    limited too (through threadpoolctl; without it the pool is left alone and env.json says so).
    ``--threads N`` measures multi-threaded CPU baselines; env.json records both.
    """
    if requested is not None and requested <= 0:
        raise ValueError(f"threads must be positive, got {requested}")
    n = requested or 1
    torch.set_num_threads(n)
    try:
        # optional: without it numpy's pools are left alone (env.json says so)
        from threadpoolctl import threadpool_limits
    except ImportError:
        pass
    else:  # the limit holds for the process (it is undone only by restore_original_limits)
        threadpool_limits(limits=n)
    return torch.get_num_threads()


def blas_threads() -> dict[str, int] | None:
    """Threads of every native thread pool numpy/scipy loaded (None: threadpoolctl missing)."""
    try:
        # optional: without it numpy's pools are left alone (env.json says so)
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return {f"{i['internal_api']}:{i.get('filepath', '').rsplit('/', 1)[-1]}": i["num_threads"]
            for i in threadpool_info()}
