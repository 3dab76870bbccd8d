"""The one cell selection: suite, backend and filter names -> validated backends and cells.

``convbench run``, ``convbench calibrate`` and the pytest-benchmark plugin all select through
:func:`select_cells`, so a filter means the same everywhere and a bad name is the same error: a
``ValueError`` naming what was asked for and what there is (the CLI turns it into exit status 2).
Nothing is launched here; the backends are built, and ``TRITON_INTERPRET`` is set when the
interpreter backend is asked for (it must be decided before the kernels are imported).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from . import backends as B
from .catalog import SUITE_NAMES, default_suite, get_suite
from .cells import Cell, build_cells
from .shapes import OPS, Suite, scale_suite


@dataclass
class Selection:
    cells: list[Cell]
    #: backend name -> backend, in the order asked for
    backends: dict[str, B.Backend]
    suites: list[Suite]


def _check_names(values: Sequence[str] | None, allowed: Sequence[str], what: str) -> None:
    for v in values or ():
        if v not in allowed:
            raise ValueError(f"unknown {what} {v!r}; choose from {', '.join(allowed)}")


def check_names(suites: Sequence[str] | None = None, backends: Sequence[str] | None = None, *,
                ops: Sequence[str] | None = None, dtypes: Sequence[str] | None = None,
                layouts: Sequence[str] | None = None) -> None:
    """``ValueError`` naming the first unknown suite, backend, op, dtype or layout (the first
    thing :func:`select_cells` checks; the CLI checks names before its own option limits)."""
    _check_names(suites, SUITE_NAMES, "suite")
    _check_names(backends, B.BACKEND_NAMES, "backend")
    _check_names(ops, OPS, "op")
    _check_names(dtypes, B.DTYPES, "dtype")
    _check_names(layouts, B.LAYOUTS, "layout")


def select_cells(suites: Sequence[str] | None = None, backends: Sequence[str] | None = None, *,
                 ops: Sequence[str] | None = None, algorithms: Sequence[str] | None = None,
                 dtypes: Sequence[str] | None = None, layouts: Sequence[str] | None = None,
                 shapes: Sequence[str] | None = None, scale: float = 1.0, batch: int | None = None,
                 interpret_max_flops: float | None = None, require_available: bool = True,
                 require_cells: bool = True) -> Selection:
    """The cells of ``suites`` (default: the quick suite) on ``backends`` (default: this
    machine's, :func:`~.backends.default_backends`) that the filters keep.

    ``dtypes``/``layouts`` default to the machine's (:func:`~.backends.default_dtypes`, nchw);
    ``algorithms`` keeps the vendor baseline always; ``shapes`` keeps cases whose shape or layer
    name contains any of the substrings; ``scale``/``batch`` shrink the suites
    (:func:`~.shapes.scale_suite`).  ``require_available``: a backend that cannot run on this
    machine is an error (``False``: its cells are kept, and skip with the reason when run).
    ``require_cells``: an empty selection is an error (``False``: an empty list).
    """
    suite_names = list(suites or [default_suite()])
    backend_names = list(backends or B.default_backends())
    check_names(suite_names, backend_names, ops=ops, dtypes=dtypes, layouts=layouts)
    if batch is not None and batch <= 0:
        raise ValueError(f"batch must be positive, got {batch}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    B.configure_interpreter(backend_names)
    made = {name: B.make_backend(name) for name in backend_names}
    if interpret_max_flops is not None and "triton-interpret" in made:
        made["triton-interpret"].max_flops = interpret_max_flops
    for name, backend in made.items() if require_available else ():
        why = backend.available()
        if why:
            raise ValueError(f"backend {name!r} cannot run here: {why}")
    scaled = [scale_suite(get_suite(name), scale, batch) for name in suite_names]
    if algorithms:
        known = {a for b in made.values() for s in scaled for c in s.cases for a in b.algorithms_for(c)}
        unknown = [a for a in algorithms if a not in known]
        if unknown:
            raise ValueError(f"unknown algorithm(s) {unknown}; these backends know {sorted(known)}")
    cells = build_cells(scaled, list(made.values()), ops=ops, algorithms=algorithms,
                        dtypes=dtypes or list(B.default_dtypes()), layouts=layouts or list(B.default_layouts()),
                        shapes=shapes)
    if not cells and require_cells:
        raise ValueError("the selection contains no cells (check the ops, algorithms, dtypes, layouts and "
                         "shapes filters)")
    return Selection(cells, made, scaled)
