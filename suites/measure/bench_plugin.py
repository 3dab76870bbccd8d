"""Benchmark cells as pytest-benchmark tests (``benchmarks/``), with a GPU-correct timer.

pytest-benchmark times a call between two reads of its timer.  A CUDA launch returns before the
kernel ends, so :func:`synced_perf_counter` synchronizes the device before reading the clock:
every timed interval then spans the kernels it launched, whether pytest-benchmark runs one call
per round or calibrates many (the queued launches are all waited for at the end).  On a machine
without CUDA in use it is ``time.perf_counter``, so numpy/torch-CPU cells are timed normally.

Each cell is built and checked against the float64 reference before it is timed (a wrong kernel
is a failed test, not a benchmark); cells that cannot run here are skipped with the reason: Triton
cells without a GPU (the interpreter's seconds mean nothing), and cells whose algorithm does not
apply to the shape.  Everything pytest-benchmark offers then works as usual::

    pytest benchmarks/ --bench-backends torch,triton --benchmark-autosave
    pytest benchmarks/ --benchmark-compare --benchmark-compare-fail=median:5%
"""

from __future__ import annotations

import functools
import time

import torch

from ..plan.backends import LAYOUTS, default_dtypes, make_backend
from ..plan.select import select_cells
from . import accuracy
from .env import configure_threads
from .inputs import InputCache
from .runner import cell_tolerance, poisoned
from .timing import warm_up


@functools.lru_cache(maxsize=1)
def _cuda():
    return torch if torch.cuda.is_available() else None


def synced_perf_counter() -> float:
    """``time.perf_counter()`` read after ``torch.cuda.synchronize()`` when CUDA is in use."""
    torch = _cuda()
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter()


def add_options(parser) -> None:
    """The ``--bench-*`` selection options (called from ``benchmarks/conftest.py``)."""
    g = parser.getgroup("convbench", "convbench cells as benchmarks")
    g.addoption("--bench-suite", default="quick", help="suite whose cells become benchmarks (default quick)")
    g.addoption("--bench-backends", default=None,
                help="comma list; default torch,triton,numpy (triton cells skip without a GPU)")
    g.addoption("--bench-ops", default=None, help="comma list of operators (default all)")
    g.addoption("--bench-dtypes", default=None, help="comma list of dtypes (default: this machine's defaults)")
    g.addoption("--bench-layouts", default=None, help="comma list: nchw, nhwc (default both)")
    g.addoption("--bench-shapes", default=None, help="comma list of shape/label substrings")
    g.addoption("--bench-threads", type=int, default=None,
                help="torch CPU threads (default 1, as `convbench run`: comparable across runs)")


def _split(value):
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@functools.lru_cache(maxsize=None)
def _backend(name: str):
    return make_backend(name)


def cells_from_options(config) -> list:
    """The cells the ``--bench-*`` options select (Triton on the GPU only, never interpreted)."""
    names = _split(config.getoption("--bench-backends")) or ["torch", "triton", "numpy"]
    if "triton-interpret" in names:
        raise ValueError("--bench-backends: triton-interpret has no meaningful timings; use triton on a GPU")
    dtypes = _split(config.getoption("--bench-dtypes")) or list(default_dtypes())
    if "fp64" not in dtypes and "numpy" in names and not _split(config.getoption("--bench-dtypes")):
        dtypes.append("fp64")
    # backends that cannot run here (triton without a GPU) stay: their cells skip with the reason;
    # both layouts unless asked; a selection of no cells collects no tests
    return select_cells([config.getoption("--bench-suite")], names, ops=_split(config.getoption("--bench-ops")),
                        dtypes=dtypes, layouts=_split(config.getoption("--bench-layouts")) or list(LAYOUTS),
                        shapes=_split(config.getoption("--bench-shapes")), require_available=False,
                        require_cells=False).cells


def cell_id(cell) -> str:
    return f"{cell.op}-{cell.shape}-{cell.backend}:{cell.algorithm}-{cell.dtype}-{cell.layout}"


_INPUTS: dict = {}


def configure(config) -> None:
    """Session set-up: torch's CPU threads as the runner sets them (or ``--bench-threads``)."""
    configure_threads(config.getoption("--bench-threads"))


def prepare_checked(cell, seed: int = 0):
    """``(callable, device)`` for one cell, checked against float64; ``pytest.skip`` with the
    reason when it cannot run here, an ``AssertionError`` when its result is wrong."""
    import pytest  # the plugin runs inside pytest; nothing else here needs it

    backend = _backend(cell.backend)
    if cell.backend == "triton" and _cuda() is None:
        pytest.skip("triton: needs a CUDA GPU (interpreter timings are not measured)")
    reason = backend.available() or backend.unsupported(cell.case, cell.algorithm, cell.dtype, cell.layout)
    if reason:
        pytest.skip(f"{cell.backend}: {reason}")
    cache = _INPUTS.setdefault(seed, InputCache(seed, 2e9))
    tensors, ref, images = cache.get(cell.case, cell.dtype)
    if isinstance(ref, Exception):
        raise RuntimeError(f"reference failed: {type(ref).__name__}: {ref}")
    prepared = backend.prepare(cell.case, cell.algorithm, cell.dtype, cell.layout, tensors)
    prepared.setup()
    with poisoned(cell.backend.startswith("triton")):
        out = prepared.run()
    synced_perf_counter()
    check = accuracy.check(prepared.to_numpy(out[:images]), ref, cell_tolerance(cell), what=str(cell))
    assert check.passed, check.message
    warm_up(prepared.run, backend.device)  # thread pools, allocator, autotuning out of the numbers
    return prepared.run, backend.device
