"""Every selected cell (default: the quick suite) as one pytest-benchmark test.

The cell is checked against its float64 reference first, then timed with
:func:`convbench.suites.measure.bench_plugin.synced_perf_counter` (``torch.cuda.synchronize`` before each clock
read when CUDA is in use), so ``--benchmark-autosave``, ``--benchmark-compare`` and
``--benchmark-compare-fail=median:5%`` compare device time, not launch time.
"""

import pytest
import torch

from convbench.suites.measure.bench_plugin import prepare_checked, synced_perf_counter


@pytest.mark.benchmark(timer=synced_perf_counter, group="convbench")
def test_cell(benchmark, cell):
    fn, _device = prepare_checked(cell)
    benchmark.extra_info.update(op=cell.op, shape=cell.shape, backend=cell.backend,
                                algorithm=cell.algorithm, dtype=cell.dtype, layout=cell.layout,
                                torch_threads=torch.get_num_threads())
    benchmark(fn)
