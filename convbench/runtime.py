"""Where Triton kernels run: the one place that turns the interpreter on when there is no GPU.

``TRITON_INTERPRET`` is read when a ``@triton.jit`` kernel is *defined*, that is when
:mod:`convbench.kernels` is first imported, so it has to be decided before that import.  The
command line, the scripts and the test session all call :func:`use_interpreter_without_gpu`
first.  This module imports nothing of convbench (it sits below every layer).
"""

from __future__ import annotations

import os

ENV = "TRITON_INTERPRET"
#: ``=1`` keeps the interpreter's int32 overflow sanitizer on (``kernels._common`` turns it off otherwise)
OVERFLOW_CHECKS_ENV = "CONVBENCH_INTERPRET_OVERFLOW_CHECKS"


def interpreter_requested() -> bool:
    """True when ``TRITON_INTERPRET`` is set to something other than ``""``/``"0"``."""
    return os.environ.get(ENV, "0") not in ("", "0")


def interpreter_overflow_checks_requested() -> bool:
    return os.environ.get(OVERFLOW_CHECKS_ENV) == "1"


def cuda_available() -> bool:
    try:
        import torch  # a dependency; imported here only, so that this module stays light
    except ImportError:  # pragma: no cover
        return False
    return torch.cuda.is_available()


def use_interpreter_without_gpu() -> bool:
    """Set ``TRITON_INTERPRET=1`` unless a CUDA GPU is present (a value the caller set is kept).

    Returns whether Triton kernels will run in the interpreter."""
    if not cuda_available():
        os.environ.setdefault(ENV, "1")
    return interpreter_requested()


_FLUSH_BUFFERS: dict = {}


def l2_bytes(device_index: int = 0) -> int:
    """A CUDA device's L2 size in bytes (64 MiB when the driver does not say)."""
    import torch  # a dependency; imported here only, so that this module stays light

    size = getattr(torch.cuda.get_device_properties(device_index), "L2_cache_size", 0)
    return int(size) if size else 64 << 20


def flush_buffer(device_index: int = 0):
    """The L2-flush buffer of one CUDA device: 2x its L2, allocated on first use and kept.  The
    suite's timer and the autotuner zero it before every timed call (one buffer per device)."""
    buf = _FLUSH_BUFFERS.get(device_index)
    if buf is None:
        import torch  # a dependency; imported here only, so that this module stays light

        buf = torch.empty(2 * l2_bytes(device_index), dtype=torch.uint8, device=f"cuda:{device_index}")
        _FLUSH_BUFFERS[device_index] = buf
    return buf
