"""All local GPUs (``convbench run --gpus all|0,2,5``): one worker process per device.

Each worker is a spawned process started with ``CUDA_VISIBLE_DEVICES`` set to its one device
(before anything in it initialises CUDA; a ``CUDA_VISIBLE_DEVICES`` the caller set is respected:
``--gpus`` then picks among the devices it lists).  Cells are handed out one at a time as workers
become free; a worker checks and times its cell with every timing round itself (the timing rules
stay per worker: rounds, probes, L2 flush; no two cells ever share a device), and the runner
appends each finished record to the run folder as it arrives.  A worker that dies costs the cell
it was running, recorded as an error naming the device; it is restarted (at most
``MAX_RESTARTS`` times per device) and the other cells go on.  ``--resume`` skips the cells the
folder already holds, as for a plain run.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from dataclasses import replace
from multiprocessing.connection import wait
from typing import Sequence

from .cell import new_record, run_cell
from .env import configure_threads
from .inputs import InputCache
from .progress import Progress
from .records import Record
from .rounds import Worker, default_rounds, round_rule, run_rounds

MAX_RESTARTS = 2


def device_list(spec: str, visible: str | None, count: int) -> list[str]:
    """The ``CUDA_VISIBLE_DEVICES`` value of each worker for ``--gpus spec``.

    ``visible``: the caller's ``CUDA_VISIBLE_DEVICES`` (None: unset), ``count``: the devices torch
    sees.  ``all`` is every visible device; ``0,2,5`` are indices among the visible ones."""
    pool = [d.strip() for d in visible.split(",") if d.strip()] if visible is not None else \
        [str(i) for i in range(count)]
    if spec == "all":
        chosen = pool
    else:
        try:
            picks = [int(v) for v in spec.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"--gpus must be 'all' or comma-separated device indices, got {spec!r}") from None
        bad = [p for p in picks if not 0 <= p < len(pool)]
        if bad or len(set(picks)) != len(picks):
            raise ValueError(f"--gpus {spec!r}: indices must be distinct and below the {len(pool)} visible devices")
        chosen = [pool[p] for p in picks]
    if not chosen:
        raise ValueError("--gpus: no CUDA device is visible")
    return chosen


def _serve(conn, options, backends, rounds: int) -> None:
    """A device worker: run each cell it is sent (check, then every timing round) until ``None``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    configure_threads(options.threads)
    cache = InputCache(options.seed, options.check_max_flops)
    first = replace(options, rule=round_rule(options.rule, rounds))
    while True:
        try:
            cell = conn.recv()
        except (EOFError, OSError):
            return
        if cell is None:
            return
        rec = run_cell(cell, backends[cell.backend], cache, first)
        if rec.timed:
            rec.rounds_requested = rounds
            run_rounds([(cell, rec)], backends, cache, options, rounds, 1, first.rule.max_time_s)
        try:
            conn.send(rec)
        except (BrokenPipeError, OSError):
            return


class DeviceWorker(Worker):
    """One device's worker process and its pipe (``close`` as the rounds' workers)."""

    def __init__(self, device: str, options, backends: dict, rounds: int, target=_serve):
        self.device, self.cell = device, None
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        saved = os.environ.get("CUDA_VISIBLE_DEVICES")
        os.environ["CUDA_VISIBLE_DEVICES"] = device  # inherited by the spawned child at start
        try:
            self.proc = ctx.Process(target=target, args=(child, options, dict(backends), rounds), daemon=True,
                                    name=f"convbench-gpu{device}")
            self.proc.start()
        finally:
            if saved is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = saved
        child.close()

    def give(self, cell) -> None:
        self.cell = cell
        self.conn.send(cell)


def _died(cell, backend, device: str, exitcode) -> Record:
    rec = new_record(cell, backend)
    rec.status = "error"
    rec.message = f"the worker process on device {device} died while running this cell (exit code {exitcode})"
    rec.timing_note = "not measured: the worker died"
    return rec


def run_on_devices(todo: Sequence, backends: dict, store, options, devices: list[str], *, records: list,
                   progress: bool = True, target=_serve) -> tuple[list, dict]:
    """Run ``todo`` on one worker per device; returns (records, what to add to env["run"])."""
    rounds = options.rounds or default_rounds("cuda" if any(b.device == "cuda" for b in backends.values()) else "cpu")
    queue = list(todo)
    workers = [DeviceWorker(d, options, backends, rounds, target) for d in devices]
    restarts = {d: 0 for d in devices}
    by_device: dict[str, int] = {d: 0 for d in devices}
    problems: list[str] = []
    bar = Progress(len(queue), enabled=progress)
    try:
        for w in workers:
            if queue:
                w.give(queue.pop(0))
        while any(w.cell is not None for w in workers):
            busy = [w for w in workers if w.cell is not None]
            for conn in wait([w.conn for w in busy] + [w.proc.sentinel for w in busy]):
                w = next(x for x in busy if conn in (x.conn, x.proc.sentinel))
                if w.cell is None or w not in workers:  # its pipe and its sentinel both fired: done already
                    continue
                try:
                    rec = w.conn.recv() if w.conn.poll() else None
                except (EOFError, OSError):
                    rec = None
                if rec is None and w.proc.is_alive():
                    continue  # woken by the sentinel of a worker that is still finishing its send
                cell, device = w.cell, w.device
                if rec is None:  # the worker died: its cell is an error, the device gets a new worker
                    w.proc.join(timeout=5)
                    rec = _died(cell, backends[cell.backend], device, w.proc.exitcode)
                    problems.append(f"{rec.message}: {cell}")
                    w.cell = None
                    workers.remove(w)
                    w.close()
                    w = None
                    if restarts[device] < MAX_RESTARTS:
                        restarts[device] += 1
                        w = DeviceWorker(device, options, backends, rounds, target)
                        workers.append(w)
                records.append(rec)
                by_device[device] += 1
                if store is not None:
                    store.append(rec)
                bar.update(f"{cell} {rec.status}")
                if w is not None:
                    w.cell = None
                    if queue:
                        w.give(queue.pop(0))
            if not workers:
                for cell in queue:  # every device's worker died too often
                    rec = _died(cell, backends[cell.backend], "any", None)
                    records.append(rec)
                    if store is not None:
                        store.append(rec)
                queue = []
                break
    finally:
        bar.close()
        for w in workers:
            w.close()
    return records, {"devices": devices, "cells_per_device": by_device, "worker_problems": problems,
                     "rounds": rounds, "processes": len(devices)}
