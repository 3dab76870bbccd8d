"""Timing rounds: every cell sampled in several passes over the run, in several processes.

Why.  Measured on the 2-core CPU VM with the quick suite (numpy and torch backends):

* the machine changes speed in phases: the same call takes 61 us for seconds, then 95-117 us
  for about a second (CPU time and wall time alike, so it is the core, not the scheduler).  A
  cell sampled in one stretch gets whatever phase it fell into;
* a process has its own per-cell speed: memory placement, which code path a library picked.
  With one process per run, cells differed between two runs of the same code by 10-30% beyond
  what any sample spread inside either run showed, so a test on the raw samples of one process
  per side called identical code "significantly slower" in several cells of every pair.

What.  Round 0 is the runner's first pass (it checks every cell and takes its first share of
samples).  Rounds ``1 .. rounds-1`` take the same number of samples again for every timed cell,
on freshly prepared inputs after a short re-warm-up, alternating the direction of the pass so a
drift over the run weighs on every cell alike.  Round ``r`` runs in process ``r % processes``:
process 0 is the runner itself, the others are worker processes started once per run (spawned,
so each has its own memory layout and library state) and used one at a time, never
concurrently.  The records keep the samples of each round (``round_samples``) and, on a CPU, the
speed probe timed with them (``round_probe_ms``), so :mod:`convbench.suites.regress.verdicts` can treat the
round as the unit of replication.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
from dataclasses import replace
from typing import Sequence

from ..plan import backends as B
from .env import configure_threads
from .inputs import InputCache
from .stats import StopRule, summarize
from .timing import measure
from .tune import prepare

#: warm-up of a later timing round (the code is compiled and warm; caches and clocks are not)
ROUND_WARMUP_S = 0.005


def default_rounds(device: str) -> int:
    """Rounds when none are asked for: 15 on a CPU (5 per process), 3 on a GPU.

    Measured on the 2-core CPU VM (quick suite, numpy and torch, three runs): with 9 rounds over
    3 processes a 30% slowdown planted in one cell was found in 5 of 13 tries (the FDR correction
    over 73 cells asks for p < ~7e-4); with 15 rounds in 25 of 26, a 2% one in none, and no A/A
    pair failed.  The time budget per cell is split between the rounds, so more rounds cost only
    their warm-ups (5 ms a cell a round)."""
    return 15 if device == "cpu" else 3


def default_processes(device: str) -> int:
    """Processes the rounds are spread over: 3 on a CPU, 1 on a GPU (each process would pay for
    its own CUDA context and cuDNN/Triton tuning; GPU kernels see far less per-process noise)."""
    return 3 if device == "cpu" else 1


def round_rule(rule: StopRule, rounds: int) -> StopRule:
    """The stopping rule of round 0: ``rule``'s sample counts and time budgets split evenly
    over the rounds (at least 3 samples a round); the timeout for a very slow call is kept whole."""
    if rounds == 1:
        return rule
    min_samples = max(3, math.ceil(rule.min_samples / rounds))
    return StopRule(min_samples=min_samples,
                    max_samples=max(min_samples, math.ceil(rule.max_samples / rounds)),
                    target_noise=rule.target_noise, min_time_s=rule.min_time_s / rounds,
                    max_time_s=rule.max_time_s / rounds,
                    timeout_s=rule.timeout_s if rule.timeout_s is not None else 10 * rule.max_time_s)


def add_round(rec, samples_ms: Sequence[float], probe_ms: float | None = None, pid: int | None = None) -> None:
    """Append one round's samples (and its speed-probe time, CPU only, and the id of the process
    that took it) to the record ``rec`` and refresh its summary (over all rounds)."""
    rec.samples_ms = rec.samples_ms + [float(v) for v in samples_ms]
    rec.round_samples = rec.round_samples + [len(samples_ms)]
    rec.round_pids = rec.round_pids + [int(pid if pid is not None else os.getpid())]
    if probe_ms is not None:
        rec.round_probe_ms = rec.round_probe_ms + [probe_ms]
    rec.rounds = len(rec.round_samples)
    s = summarize(rec.samples_ms)
    rec.p50_ms, rec.p20_ms, rec.p80_ms, rec.mean_ms = s.p50, s.p20, s.p80, s.mean
    rec.cv, rec.noise, rec.n_samples = s.cv, s.noise, s.n


def time_round(cell, backend, cache, options, n_samples: int, budget_s: float):
    """One later round of one cell: ``n_samples`` samples (at most ``budget_s`` of sampling)."""
    rule = StopRule(min_samples=n_samples, max_samples=n_samples, max_time_s=budget_s,
                    target_noise=options.rule.target_noise)
    tensors, _, _ = cache.get(cell.case, cell.dtype, reference=False)
    prepared = prepare(backend, cell, tensors, options.tune)
    prepared.setup()
    return measure(prepared.run, backend.device, rule, flush_l2=options.flush_l2, graph=bool(options.graph),
                   warmup_s=ROUND_WARMUP_S)


def round_result(cell, backend, cache, options, n_samples: int, budget_s: float) -> tuple:
    """:func:`time_round` as plain data, in the main process or a worker: (samples, probe time,
    ``""``, pid), or ``([], None, "Type: message", pid)`` when the round raised."""
    try:
        m = time_round(cell, backend, cache, options, n_samples, budget_s)
    except Exception as exc:
        return [], None, f"{type(exc).__name__}: {exc}", os.getpid()
    return list(m.samples_ms), m.probe_ms, "", os.getpid()


# ------------------------------------------------------------------------------ processes
def _serve(conn, options, backends) -> None:
    """A worker process: time the rounds it is sent until it is sent ``None``, with the parent's
    backend objects (their configuration, e.g. the torch baseline's device, not just their names)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    configure_threads(options.threads)
    cache = InputCache(options.seed, options.check_max_flops)
    made: dict = dict(backends)
    while True:
        try:
            jobs = conn.recv()
        except (EOFError, OSError):  # the parent closed the pipe (it is done, or it died): just leave
            return
        if jobs is None:
            return
        results = []
        for cell, n_samples, budget_s, graphed in jobs:
            # a backend the parent made cannot fail here; if it did, the parent sees the pipe
            # close and times the round itself
            backend = made.get(cell.backend) or made.setdefault(cell.backend, B.make_backend(cell.backend))
            results.append(round_result(cell, backend, cache, replace(options, graph=graphed), n_samples, budget_s))
        try:
            conn.send(results)
        except (BrokenPipeError, OSError):  # nobody is listening any more
            return


class Worker:
    """One spawned worker process and its pipe."""

    def __init__(self, options, backends: dict | None = None):
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, options, dict(backends or {})), daemon=True,
                                name="convbench-rounds")
        self.proc.start()
        child.close()

    def call(self, jobs: list) -> list:
        self.conn.send(jobs)
        return self.conn.recv()

    def close(self) -> None:
        try:
            self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(timeout=5)
        self.conn.close()


def run_rounds(timed: Sequence, backends: dict, cache, options, rounds: int, processes: int,
               budget_s: float, progress=None, checkpoint=None) -> list[str]:
    """Rounds ``1 .. rounds-1`` of the (cell, record) pairs in ``timed``; returns problems met
    (a worker that died: its round is then timed in this process), for env.json.

    Round ``r`` is taken by the cells that have exactly ``r`` rounds, so a cell resumed with
    ``k`` rounds joins at round ``k`` and is timed in the same alternating order and process as
    the others; ``checkpoint()`` is called after every round (the runner saves the records)."""
    problems: list[str] = []
    workers: dict[int, Worker] = {}
    try:
        for r in range(1, rounds):
            live = [(cell, rec) for cell, rec in timed if rec.status != "error" and len(rec.round_samples) == r]
            if not live:
                continue
            order = live[::-1] if r % 2 else live
            proc = r % processes
            sizes = [max(3, rec.round_samples[0]) for _, rec in order]  # round 0's count
            # a cell round 0 timed with CUDA graphs keeps that timer in every round
            graphed = [rec.timer == "cuda-graph" for _, rec in order]
            results = None
            if proc:
                try:
                    worker = workers.get(proc) or workers.setdefault(proc, Worker(options, backends))
                    results = worker.call([(cell, n, budget_s, g) for (cell, _), n, g in zip(order, sizes, graphed)])
                except Exception as exc:  # died, could not start, or could not be sent the cells
                    problems.append(f"round {r + 1}: worker process {proc} failed ({type(exc).__name__}: "
                                    f"{exc}); timed in the main process")
                    workers.pop(proc, None)
            for i, ((cell, rec), n, g) in enumerate(zip(order, sizes, graphed)):
                samples, probe, error, pid = results[i] if results is not None else \
                    round_result(cell, backends[cell.backend], cache, replace(options, graph=g), n, budget_s)
                if error:  # it ran in round 0: keep those samples, say what happened
                    rec.status, rec.message = "error", f"timing round {r + 1}: {error}"
                elif samples:
                    add_round(rec, samples, probe, pid)
                if progress is not None:
                    progress.update(f"round {r + 1}/{rounds} {cell}")
            if checkpoint is not None:
                checkpoint()
    finally:
        for w in workers.values():
            w.close()
    return problems
