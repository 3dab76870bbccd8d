"""What to run and how: named shape suites, the runner, timing, statistics, storage, the CLI.

The flow, one module per step:
``catalog``/``shapes`` (named suites of cases) -> ``cells`` (op x algorithm x shape x dtype x
layout x backend) -> ``backends`` + ``ops`` (a callable per cell) -> ``accuracy`` (check against
the float64 reference) -> ``timing`` + ``stats`` (samples until the median is stable) ->
``records`` (one row per cell, jsonl/csv) -> ``metrics`` (throughput, roofline %, speedup) ->
:mod:`reports` (tables and plots).  ``runner`` drives it; ``cli`` is ``convbench``.
"""
