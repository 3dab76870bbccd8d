"""Clusters on Ray (``convbench run --executor ray [--address ADDR]``).

Each cell is one Ray task that checks and times it with every timing round (the timing rules
stay per worker: rounds, probes, L2 flush).  A task holds one GPU (``num_gpus=1``) when the run
uses one and the cluster has GPUs, so a cell is never timed while another cell runs on the same
GPU; on CPU-only clusters it holds one CPU (``num_cpus=1``).  The driver owns the output folder:
it hands out at most as many cells as the cluster has slots, appends each record as it comes
back, and so keeps ``--resume`` and the report exactly as for a local run.  A task whose worker
dies is retried once by Ray (``max_retries=1``); if that fails too the cell is an error record.
Ray is an optional extra (``pip install convbench[ray]``), imported only here.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Sequence

from .cell import new_record, run_cell
from .env import configure_threads
from .inputs import InputCache
from .progress import Progress
from .rounds import round_rule, run_rounds

#: environment the workers need to decide like the driver (interpreter mode, torch device)
FORWARDED_ENV = ("TRITON_INTERPRET", "CONVBENCH_TORCH_DEVICE", "CONVBENCH_TUNE_CACHE")


def import_ray():
    try:
        import ray  # the optional extra, only for --executor ray
    except ImportError:
        raise RuntimeError("--executor ray needs Ray: pip install 'convbench[ray]' (or ray==2.60.0)") from None
    return ray


def run_one(cell, backend, options, rounds: int):
    """One cell in a Ray worker: check, round 0, then the remaining rounds; returns the record."""
    configure_threads(options.threads)
    cache = InputCache(options.seed, options.check_max_flops)
    first = replace(options, rule=round_rule(options.rule, rounds))
    rec = run_cell(cell, backend, cache, first)
    if rec.timed:
        rec.rounds_requested = rounds
        run_rounds([(cell, rec)], {cell.backend: backend}, cache, options, rounds, 1, first.rule.max_time_s)
    return rec


def run_on_ray(todo: Sequence, backends: dict, store, options, *, records: list, rounds: int,
               address: str | None = None, progress: bool = True) -> tuple[list, dict]:
    ray = import_ray()

    started_here = not ray.is_initialized()
    if started_here:
        env_vars = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                 runtime_env={"env_vars": env_vars} if env_vars else None)
    try:
        resources = ray.cluster_resources()
        wants_gpu = any(b.device == "cuda" for b in backends.values())
        gpus = int(resources.get("GPU", 0))
        if wants_gpu and gpus:
            task, slots, unit = ray.remote(num_gpus=1, max_retries=1)(run_one), gpus, "GPU"
        else:
            task, slots, unit = ray.remote(num_cpus=1, max_retries=1)(run_one), max(int(resources.get("CPU", 1)), 1), "CPU"
        queue = list(todo)
        in_flight: dict = {}
        problems: list[str] = []
        bar = Progress(len(queue), enabled=progress)
        try:
            while queue or in_flight:
                while queue and len(in_flight) < slots:
                    cell = queue.pop(0)
                    in_flight[task.remote(cell, backends[cell.backend], options, rounds)] = cell
                done, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in done:
                    cell = in_flight.pop(ref)
                    try:
                        rec = ray.get(ref)
                    except Exception as exc:  # the worker died twice, or Ray could not run the task
                        rec = new_record(cell, backends[cell.backend])
                        rec.status, rec.timing_note = "error", "not measured: the Ray task failed"
                        rec.message = f"Ray task failed after a retry: {type(exc).__name__}: {str(exc)[:300]}"
                        problems.append(f"{cell}: {rec.message}")
                    records.append(rec)
                    if store is not None:
                        store.append(rec)
                    bar.update(f"{cell} {rec.status}")
        finally:
            bar.close()
            for ref in in_flight:
                ray.cancel(ref, force=True)
        return records, {"executor": "ray", "ray_address": address or "local", "slots": slots, "slot_unit": unit,
                         "ray_problems": problems, "rounds": rounds, "processes": "ray tasks"}
    finally:
        if started_here:
            ray.shutdown()
