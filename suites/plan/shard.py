"""Shards: a deterministic part of a selection, for CI matrices, Slurm arrays and many machines.

A cell's shard depends on its key and the shard count only (rendezvous hashing: the shard whose
BLAKE2 score of ``"<shard>|<key>"`` is highest), so adding or removing cases never moves the
other cells, and every process computes the same split without talking to the others.  The
expected cost of each shard is the same (each cell lands on any shard with probability 1/N);
:func:`shard_costs` reports the estimated cost per shard (FLOPs at 100 TFLOP/s plus bytes at
2 TB/s, a relative model that only has to rank cells) so an unlucky split is visible.

``I/N`` counts shards from 1: ``--shard 1/3``, ``2/3``, ``3/3``.  It may also come from the
environment: ``CONVBENCH_SHARD=I/N`` (a CI matrix) or a Slurm array job
(``SLURM_ARRAY_TASK_ID`` relative to ``SLURM_ARRAY_TASK_MIN``, out of ``SLURM_ARRAY_TASK_COUNT``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Mapping, Sequence

from .backends import ITEMSIZE


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    count: int
    source: str = "--shard"

    def __post_init__(self) -> None:
        if self.count < 1 or not 1 <= self.index <= self.count:
            raise ValueError(f"shard must be I/N with 1 <= I <= N, got {self.index}/{self.count} ({self.source})")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str, source: str = "--shard") -> Shard:
    try:
        i, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise ValueError(f"{source} must look like I/N (e.g. 2/3), got {text!r}") from None
    return Shard(i, n, source)


def shard_from_env(environ: Mapping[str, str] | None = None) -> Shard | None:
    """The shard a CI matrix (``CONVBENCH_SHARD``) or a Slurm array job asks for, or None."""
    env = os.environ if environ is None else environ
    if env.get("CONVBENCH_SHARD"):
        return parse_shard(env["CONVBENCH_SHARD"], "CONVBENCH_SHARD")
    if env.get("SLURM_ARRAY_TASK_ID") and env.get("SLURM_ARRAY_TASK_COUNT"):
        try:
            task, first = int(env["SLURM_ARRAY_TASK_ID"]), int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
            count = int(env["SLURM_ARRAY_TASK_COUNT"])
        except ValueError:
            raise ValueError("SLURM_ARRAY_TASK_ID/_MIN/_COUNT must be integers, got "
                             f"{env.get('SLURM_ARRAY_TASK_ID')!r}/{env.get('SLURM_ARRAY_TASK_MIN')!r}/"
                             f"{env.get('SLURM_ARRAY_TASK_COUNT')!r}") from None
        return Shard(task - first + 1, count, "SLURM_ARRAY_TASK_ID")
    return None


def shard_of(key: str, count: int) -> int:
    """The 1-based shard of the cell ``key`` among ``count`` (rendezvous hashing)."""
    def score(i: int) -> bytes:
        return hashlib.blake2b(f"{i}|{key}".encode(), digest_size=8).digest()
    return max(range(1, count + 1), key=score)


def cell_cost(cell) -> float:
    """Relative cost estimate of one cell: seconds at 100 TFLOP/s plus 2 TB/s."""
    return cell.case.flops / 100e12 + cell.case.min_bytes(ITEMSIZE[cell.dtype]) / 2e12


def select_shard(cells: Sequence, shard: Shard) -> list:
    return [c for c in cells if shard_of(c.key, shard.count) == shard.index]


def shard_costs(cells: Sequence, count: int) -> list[float]:
    costs = [0.0] * count
    for c in cells:
        costs[shard_of(c.key, count) - 1] += cell_cost(c)
    return costs


def fingerprint(cells: Sequence) -> str:
    """SHA-256 (16 hex digits) of the sorted cell keys of a whole selection."""
    h = hashlib.sha256()
    for key in sorted(c.key for c in cells):
        h.update(key.encode() + b"\n")
    return h.hexdigest()[:16]
