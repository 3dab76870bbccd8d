"""How to measure: the runner and everything a cell's number goes through.

``inputs`` (seeded inputs and their float64 reference) -> ``accuracy`` (the check and its
tolerance model) -> ``timing`` + ``stats`` (samples until the median is stable) -> ``rounds``
(later passes, some in worker processes) -> ``records`` (one row per cell, jsonl/csv) ->
``metrics`` (throughput, roofline %, speedup) and ``frame`` (records as pandas); ``peaks``,
``env`` and ``progress`` around them; ``runner`` drives it, ``bench_plugin`` runs cells under
pytest-benchmark.
"""
