"""Cells: the unit of work and of the results table (op x algorithm x shape x dtype x layout x backend).

:func:`build_cells` expands suites into cells, applying the user's filters, and orders them so that
cells sharing inputs and a reference (same case and dtype) run one after another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from .backends import DTYPES, LAYOUTS, VENDOR, Backend
from .shapes import OPS, Case, Suite

#: the fields that identify a cell, in key order (``--resume`` and ``convbench compare`` match on them)
KEY_FIELDS = ("suite", "op", "algorithm", "backend", "shape", "dtype", "layout")


def make_key(suite, op, algorithm, backend, shape, dtype, layout) -> str:
    """``suite|op|algorithm|backend|shape|dtype|layout``: a cell's identity."""
    return "|".join(str(v) for v in (suite, op, algorithm, backend, shape, dtype, layout))


@dataclass(frozen=True)
class Cell:
    suite: str
    case: Case
    algorithm: str
    backend: str
    dtype: str
    layout: str

    @property
    def op(self) -> str:
        return self.case.op

    @property
    def shape(self) -> str:
        return self.case.shape

    @property
    def key(self) -> str:
        return make_key(self.suite, self.op, self.algorithm, self.backend, self.shape, self.dtype, self.layout)

    def __str__(self) -> str:
        return f"{self.op} {self.shape} {self.backend}:{self.algorithm} {self.dtype} {self.layout}"


def _check_choice(values: Sequence[str] | None, allowed: Sequence[str], name: str) -> None:
    for v in values or ():
        if v not in allowed:
            raise ValueError(f"{name} must be among {tuple(allowed)}, got {v!r}")


def build_cells(suites: Iterable[Suite], backends: Sequence[Backend], *, ops: Sequence[str] | None = None,
                algorithms: Sequence[str] | None = None, dtypes: Sequence[str] | None = None,
                layouts: Sequence[str] | None = None, shapes: Sequence[str] | None = None) -> list[Cell]:
    """Every cell of ``suites`` that the filters keep (``None``: no filter).

    ``algorithms`` filters the backends' algorithm names (the ``vendor`` baseline is always kept;
    leave the ``torch`` backend out to drop it).  ``shapes`` keeps cases whose shape string or
    label contains any of the given substrings.
    """
    _check_choice(ops, OPS, "ops")
    _check_choice(dtypes, DTYPES, "dtypes")
    _check_choice(layouts, LAYOUTS, "layouts")
    cells: list[Cell] = []
    for suite in suites:
        for case in suite.cases:
            if ops and case.op not in ops:
                continue
            if shapes and not any(s in case.shape or s in case.label for s in shapes):
                continue
            for dtype in DTYPES:
                if dtypes and dtype not in dtypes:
                    continue
                if dtype == "tf32" and case.family in ("pool", "norm"):
                    continue  # TF32 changes matrix products only: these cells would repeat fp32
                for layout in LAYOUTS:
                    if layouts and layout not in layouts:
                        continue
                    for backend in backends:
                        if dtype not in backend.dtypes or layout not in backend.layouts:
                            continue
                        for algorithm in backend.algorithms_for(case):
                            # the vendor baseline stays in a filtered run, so speedups exist
                            if algorithms and algorithm not in algorithms and algorithm != VENDOR:
                                continue
                            cells.append(Cell(suite.name, case, algorithm, backend.name, dtype, layout))
    return cells
