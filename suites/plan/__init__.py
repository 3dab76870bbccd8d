"""What to run: named shape suites, cells, operators and backends, and the one cell selection.

``shapes`` (the :class:`~.shapes.Case` and :class:`~.shapes.Suite` dataclasses, scaling) ->
``catalog`` (the named suites, transcribed from ``conv_shapes.csv``) -> ``cells`` (op x
algorithm x shape x dtype x layout x backend, and a cell's key) -> ``backends`` + ``ops`` (a
callable per cell) -> ``select`` (:func:`~.select.select_cells`, shared by ``convbench run``,
``calibrate`` and the pytest-benchmark plugin).
"""
