"""Run history: one JSON line per run (the store; :mod:`convbench.reports.history` plots it).

``append(history_file, run_dir)`` adds a line summarising a finished run folder (when, which
commit and device, and per cell its p50, pass/fail and error); ``convbench run`` does it after
every run (default file ``<run folder>/../history.jsonl``) and ``convbench report --history FILE``
plots it.  Lines are appended with one write each, so concurrent or interrupted runs cannot
corrupt earlier lines; unreadable lines are skipped on reading.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..measure.records import ResultStore, cell_key


@dataclass
class HistoryRun:
    run: str
    time: str
    commit: str
    device: str
    #: cell key -> {"p50_ms", "passed", "status", "max_rel_err"}
    cells: dict


def summarise_run(run_dir) -> dict:
    """The history line of a run folder (its results.jsonl and env.json)."""
    store = ResultStore(run_dir)
    records = store.load()
    if not records:
        raise ValueError(f"{run_dir} has no results.jsonl records to add to a history")
    env = store.read_env()
    gpu = env.get("gpu") if isinstance(env.get("gpu"), dict) else {}
    return {
        "run": str(Path(run_dir)),
        "time": env.get("time_utc") or "",
        "commit": (env.get("git_commit") or "")[:12] + ("+dirty" if env.get("git_dirty") else ""),
        "device": (gpu or {}).get("name") or env.get("device") or env.get("cpu") or "",
        "cells": {cell_key(r): {"p50_ms": r.p50_ms, "passed": r.passed, "status": r.status,
                                "max_rel_err": r.max_rel_err} for r in records},
    }


def append(history_file, run_dir) -> dict:
    """Append ``run_dir``'s summary to ``history_file`` (created with its folder if needed)."""
    entry = summarise_run(run_dir)
    path = Path(history_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(entry, separators=(",", ":")) + "\n"
    with path.open("a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())
    return entry


def load(history_file) -> list[HistoryRun]:
    path = Path(history_file)
    if not path.exists():
        raise ValueError(f"history file {history_file} does not exist")
    runs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            d = json.loads(line)
            runs.append(HistoryRun(d["run"], d.get("time", ""), d.get("commit", ""), d.get("device", ""),
                                   d["cells"]))
        except (ValueError, KeyError, TypeError):
            continue  # a torn or foreign line: skip it, keep the rest
    return runs


def series(runs: list[HistoryRun], filter: str | None = None) -> dict[str, list]:
    """cell key -> p50 per run (None where the run lacks the cell or did not time it)."""
    keys = sorted({k for r in runs for k in r.cells if not filter or filter in k})
    return {k: [(r.cells.get(k) or {}).get("p50_ms") for r in runs] for k in keys}
