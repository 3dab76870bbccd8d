"""Results as pandas: a run's records as a ``DataFrame``, one row per cell.

Every :class:`~.records.Record` field is a column, in the record's order (``samples_ms``,
``round_samples`` and ``round_probe_ms`` hold lists, ``geometry`` a dict), plus ``key`` (the
cell's identity, :func:`~.records.cell_key`) and ``column`` (``backend:algorithm``, e.g.
``triton:winograd_f2`` or ``torch:vendor``; ``backend`` alone for single-kernel ops).  The run's
``env.json`` travels as ``df.attrs["env"]``.

    import convbench
    df = convbench.load("runs/r50")
    ok = df[(df.status == "ok") & df.p50_ms.notna()]
    best = ok.loc[ok.groupby(["shape", "dtype"]).p50_ms.idxmin()]   # best algorithm per shape

:func:`load_many` stacks several runs with a ``run`` column (``df.attrs["envs"]``: run -> env).
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Iterable, Sequence

from .records import Record, ResultStore, load_records

#: the columns every frame has, in order (also those of an empty run)
COLUMNS = ("key", "column", *(f.name for f in fields(Record)))


def column_label(backend: str, algorithm: str) -> str:
    """``backend:algorithm`` (``backend`` alone for single-kernel ops' ``default`` algorithm)."""
    return backend if algorithm == "default" else f"{backend}:{algorithm}"


def records_frame(records: Iterable[Record], env: dict | None = None):
    """``records`` as a DataFrame (one row per record, the columns of :data:`COLUMNS`)."""
    import pandas as pd  # pandas on demand: the measuring loop never needs it

    rows = []
    for r in records:
        row = {"key": r.key, "column": column_label(r.backend, r.algorithm)}
        row.update((f.name, getattr(r, f.name)) for f in fields(Record))
        rows.append(row)
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df.attrs["env"] = dict(env or {})
    return df


def load(path):
    """A run folder (its ``results.jsonl`` and ``env.json``) or a ``results.jsonl`` file as a
    DataFrame; ``ValueError`` when there are no results at ``path``."""
    records = load_records(path)
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    return records_frame(records, ResultStore(folder).read_env())


def load_many(paths: Sequence, labels: Sequence[str] | None = None):
    """Several runs in one DataFrame with a leading ``run`` column (``labels``, default each
    path as given); ``df.attrs["envs"]`` maps each run to its env."""
    import pandas as pd  # pandas on demand, as in records_frame

    paths = list(paths)
    if not paths:
        raise ValueError("load_many needs at least one run")
    labels = [str(p) for p in paths] if labels is None else [str(x) for x in labels]
    if len(labels) != len(paths):
        raise ValueError(f"labels must name every run: {len(labels)} labels for {len(paths)} runs")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be distinct, got {labels}")
    frames = []
    for label, path in zip(labels, paths):
        df = load(path)
        df.insert(0, "run", label)
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    out.attrs = {"envs": {label: df.attrs["env"] for label, df in zip(labels, frames)}}
    return out
