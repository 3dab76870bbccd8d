"""pytest-benchmark over convbench cells: ``pytest benchmarks/ [--bench-* selection] [--benchmark-*]``.

Not part of the default test run (``testpaths = ["tests"]``).  Triton cells run on a CUDA GPU
only; without one they are skipped with the reason (kernels are never interpreted here).
"""

from convbench.suites.measure import bench_plugin


def pytest_addoption(parser):
    bench_plugin.add_options(parser)


def pytest_configure(config):
    bench_plugin.configure(config)


def pytest_generate_tests(metafunc):
    if "cell" in metafunc.fixturenames:
        cells = bench_plugin.cells_from_options(metafunc.config)
        metafunc.parametrize("cell", cells, ids=[bench_plugin.cell_id(c) for c in cells])
