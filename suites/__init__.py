"""What to run and how to measure it, regression verdicts and static compile analysis.

Subpackages by concern, importing one way (``plan`` and ``static`` at the bottom, then
``measure``, then ``regress``); none of them imports :mod:`convbench.reports`:

* :mod:`.plan`: named shape suites, cells, operators, backends, the one cell selection;
* :mod:`.measure`: the runner, inputs, accuracy, timing, rounds, statistics, records, metrics,
  peaks, environment, progress, results as pandas, the pytest-benchmark plugin;
* :mod:`.regress`: per-cell verdicts on two runs, their A/A calibration, the run history;
* :mod:`.static`: compile every kernel for sm_80/sm_90 on the CPU, cache, SASS, the baseline gate.

The flow a reader can follow: suite -> cells -> backend callable -> check against the float64
reference -> time -> record -> DataFrame -> :mod:`convbench.reports` (tables, plots, compare).
"""
