"""Merging shard folders into one run (``convbench merge OUT RUN...``).

Each shard folder of ``convbench run --shard I/N`` holds its records, its ``env.json`` (with the
shard and the fingerprint of the *whole* selection) and ``selection.json`` (every key of the whole
selection).  :func:`merge` refuses shards of different selections, code versions or devices unless
``allow_mixed``, joins the records, lists the cells no shard has and those two shards both have
(the first one kept), and writes one run folder that ``convbench compare``, ``report`` and
``convbench.load`` read like any other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .records import ResultStore

SELECTION_FILE = "selection.json"


def write_selection(out_dir, keys, fingerprint: str) -> None:
    path = Path(out_dir) / SELECTION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"fingerprint": fingerprint, "keys": sorted(keys)}, indent=0))


@dataclass
class Merged:
    records: list
    env: dict
    missing: list = field(default_factory=list)
    duplicates: list = field(default_factory=list)
    mixed: list = field(default_factory=list)


def _identity(env: dict) -> dict:
    run = env.get("run", {})
    return {"selection": (run.get("selection") or {}).get("fingerprint"),
            "code": env.get("git_commit") or env.get("convbench"),
            "device": env.get("gpu") or f"cpu: {env.get('cpu')}"}


def merge(run_dirs, *, allow_mixed: bool = False) -> Merged:
    if not run_dirs:
        raise ValueError("merge needs at least one shard folder")
    shards = []
    for d in run_dirs:
        store = ResultStore(d)
        if not store.jsonl.exists():
            raise ValueError(f"{d}: no results.jsonl (not a run folder)")
        env = store.read_env()
        sel_path = Path(d) / SELECTION_FILE
        keys = json.loads(sel_path.read_text())["keys"] if sel_path.exists() else None
        shards.append((Path(d), env, store.load(), keys))
    mixed = []
    first = _identity(shards[0][1])
    for d, env, _, _ in shards[1:]:
        ident = _identity(env)
        for what in ("selection", "code", "device"):
            if ident[what] != first[what]:
                mixed.append(f"{d}: {what} {ident[what]!r} differs from {shards[0][0]}'s {first[what]!r}")
    if mixed and not allow_mixed:
        raise ValueError("shards differ (pass --allow-mixed to merge them anyway):\n  " + "\n  ".join(mixed))
    merged, where, duplicates = [], {}, []
    for d, _, records, _ in shards:
        for r in records:
            if r.key in where:
                duplicates.append(f"{r.key} (in {where[r.key]} and {d}; kept the first)")
                continue
            where[r.key] = d
            merged.append(r)
    wanted = set()
    for _, _, _, keys in shards:
        wanted.update(keys or [])
    missing = sorted(wanted - set(where))
    env = json.loads(json.dumps(shards[0][1]))  # a deep copy of the first shard's env
    env["shards"] = [{"dir": str(d), "shard": e.get("run", {}).get("shard"), "device": _identity(e)["device"],
                      "cells": len(recs), "env": e} for d, e, recs, _ in shards]
    env["run"] = dict(env.get("run", {}), merged_from=[str(d) for d, *_ in shards], cells=len(merged),
                      missing=missing, duplicates=duplicates, mixed=mixed)
    env["run"].pop("shard", None)
    return Merged(merged, env, missing, duplicates, mixed)


def write_merged(out_dir, merged: Merged) -> ResultStore:
    store = ResultStore(out_dir)
    store.dir.mkdir(parents=True, exist_ok=True)
    store.rewrite(merged.records)
    store.write_env(merged.env)
    fp = (merged.env.get("run", {}).get("selection") or {}).get("fingerprint", "")
    write_selection(out_dir, [r.key for r in merged.records] + merged.missing, fp)
    return store
