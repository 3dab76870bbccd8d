"""Test-wide set-up: the Triton interpreter on CPU-only machines, poisoned outputs, GPU marks.

``TRITON_INTERPRET`` is read when a kernel is *defined*, so it is set here
(:func:`convbench.runtime.use_interpreter_without_gpu`), before any test module imports
``convbench.kernels``.
"""

import os

import pytest
from hypothesis import HealthCheck, settings

from convbench.runtime import cuda_available, use_interpreter_without_gpu

HAS_CUDA = cuda_available()
use_interpreter_without_gpu()

settings.register_profile(
    "convbench", max_examples=40, deadline=None, derandomize=False,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "convbench"))


def pytest_collection_modifyitems(config, items):
    if HAS_CUDA:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU; this machine has none")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _poison_outputs():
    """Every kernel output starts as NaN during tests, so unwritten elements fail."""
    try:
        from convbench.kernels import _common
    except ImportError:
        yield
        return
    _common.POISON_OUTPUTS = True
    yield
    _common.POISON_OUTPUTS = False


@pytest.fixture
def device():
    """Where kernel tests put their tensors: the GPU if present, else the CPU interpreter."""
    return "cuda" if HAS_CUDA else "cpu"


@pytest.fixture
def cpu_torch(monkeypatch):
    """Tests that assume a CPU machine (round counts, probes, plot names) pin the torch baseline to
    the CPU, so they mean the same on a GPU machine."""
    monkeypatch.setenv("CONVBENCH_TORCH_DEVICE", "cpu")


#: for tests that run the triton-interpret backend in-process: on a GPU machine the kernels of the
#: test session are compiled, and the interpreter needs a process of its own
needs_interpreter_process = pytest.mark.skipif(
    HAS_CUDA, reason="triton-interpret runs in-process only where the session's kernels are interpreted "
                     "(CPU machines); on a GPU it needs its own process")
