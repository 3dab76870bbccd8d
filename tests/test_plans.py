"""Kernel-only timing: a Triton conv2d cell's timed call launches kernels and nothing else.

The plan (:func:`convbench.kernels.plan_conv2d`) does the one-time work when the cell is
prepared: checks, output and workspace allocation, the weight's copy to K x R x S x C
(implicit_gemm on an NCHW weight), the Winograd and FFT filter transforms.  Counted here per
timed call: kernel launches (exactly the plan's), weight copies and filter transforms (none).
"""

from __future__ import annotations

import pytest
import torch

from convbench import kernels
from convbench.kernels.conv import direct, fft, winograd
from convbench.reference.geometry import ConvGeometry
from convbench.suites.plan import backends as B
from convbench.suites.plan.shapes import Case
from tests.conftest import needs_interpreter_process

CASE = Case("conv2d", ConvGeometry(1, 16, 6, 6, 16, 3, 3, padding=(1, 1, 1, 1)), label="3x3")
LAUNCHES = {"direct": 1, "im2col": 2, "implicit_gemm": 1, "winograd_f2": 3, "winograd_f4": 3, "fft": 3}


@pytest.fixture
def counters(monkeypatch):
    counts = {"launches": 0, "contiguous": 0, "transforms": 0}
    kernel_class = type(direct._direct_kernel)
    real_run, real_contiguous = kernel_class.run, torch.Tensor.contiguous

    def run(self, *args, **kwargs):
        counts["launches"] += 1
        return real_run(self, *args, **kwargs)

    def contiguous(self, *args, **kwargs):
        counts["contiguous"] += 1
        return real_contiguous(self, *args, **kwargs)

    def transform(real):
        def wrapped(*args, **kwargs):
            counts["transforms"] += 1
            return real(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(kernel_class, "run", run)
    monkeypatch.setattr(torch.Tensor, "contiguous", contiguous)
    monkeypatch.setattr(winograd, "transform_filter", transform(winograd.transform_filter))
    monkeypatch.setattr(fft, "transform_filter", transform(fft.transform_filter))
    return counts


@needs_interpreter_process
@pytest.mark.parametrize("algorithm", kernels.CONV2D_ALGORITHMS)
def test_timed_call_only_launches_the_plans_kernels(algorithm, counters):
    backend = B.TritonInterpretBackend()
    tensors = {"input": torch.randn(CASE.geom.input_shape), "bias": torch.randn(16),
               "weight": torch.randn(CASE.geom.weight_shape).contiguous()}  # NCHW weight: implicit_gemm copies it
    prepared = backend.prepare(CASE, algorithm, "fp32", "nchw", tensors)
    transformed = algorithm in ("winograd_f2", "winograd_f4", "fft")
    assert counters["transforms"] == int(transformed)  # the filter transform runs once, in the plan
    assert prepared.info["launches"] == LAUNCHES[algorithm]
    for key in counters:
        counters[key] = 0
    out = prepared.run()
    assert counters == {"launches": LAUNCHES[algorithm], "contiguous": 0, "transforms": 0}, counters
    expected = kernels.conv2d(tensors["input"], tensors["weight"], tensors["bias"], padding=1, algorithm=algorithm)
    torch.testing.assert_close(out, expected)
    # the end-to-end column's call does the one-time work again
    for key in counters:
        counters[key] = 0
    prepared.end_to_end()
    if algorithm in ("winograd_f2", "winograd_f4", "fft"):
        assert counters["transforms"] == 1
    if algorithm == "implicit_gemm":
        assert counters["contiguous"] >= 1


def test_plan_conv2d_reuses_its_output_and_refuses_forms_it_cannot_plan():
    x, w = torch.randn(1, 4, 5, 5), torch.randn(4, 4, 3, 3)
    plan = kernels.plan_conv2d(x, w, padding=1, algorithm="direct")
    first = plan.run()
    assert plan.run() is first and plan.algorithm == "direct" and plan.config_name
    with pytest.raises(ValueError, match="non-empty"):
        kernels.plan_conv2d(torch.randn(0, 4, 5, 5), w)
    with pytest.raises(ValueError, match="input"):
        kernels.plan_conv2d(torch.randn(4, 5, 5), w)


def test_precompile_builds_each_distinct_launch_once_and_compiles_it():
    """The GPU run's head start, on the CPU: the specs of the GEMM-family cells (one per distinct
    launch, both kernels of im2col) compile for sm_90 in worker processes without errors."""
    from convbench.suites.measure.precompile import cell_specs, precompile
    from convbench.suites.plan.cells import Cell

    case = Case("conv2d", ConvGeometry(2, 3, 16, 16, 16, 7, 7, stride=(2, 2), padding=(3, 3, 3, 3)), label="stem")
    cells = [Cell("s", case, algorithm, "triton", dtype, "nhwc")
             for algorithm in ("implicit_gemm", "im2col", "direct") for dtype in ("fp16", "fp16", "bf16")]
    specs = cell_specs(cells)
    assert len(specs) == 2 * 3  # 2 dtypes x (1 implicit_gemm + 2 im2col) launches; direct is not rebuilt
    summary = precompile(cells, "sm_90", jobs=2)
    assert summary["specs"] == 6 and summary["errors"] == 0
