"""Compare two runs cell by cell: FASTER / SLOWER / SAME / UNSURE from the raw samples.

Timing, per cell timed on both sides, with the *timing round* as the unit of replication when
both records have at least ``MIN_ROUNDS`` rounds (:mod:`convbench.suites.measure.rounds`; the default on a CPU is
15 rounds over 3 processes):

* the samples of one round are not independent of each other: they share the round's machine
  phase and, across processes, the process's memory layout.  Measured on the 2-core CPU VM, a
  Mann-Whitney U test on the raw samples of one process per side called 10-30% differences
  between *identical* runs significant at p < 1e-10.  So the per-round medians are compared:
  a Welch t-test on their logs (each is the median of tens to hundreds of samples, so close to
  normal on the log scale; a rank test on so few values discards their magnitude and loses the
  power that the FDR correction over a hundred cells needs).  The effect,
  the ratio new/base, is the ratio of the geometric means of the round medians, with a 95%
  Student-t interval;
* records with fewer rounds (older runs, ``--rounds 1``) fall back to a two-sided Mann-Whitney U
  test of the raw samples with the Hodges-Lehmann interval of the shift of log times (the
  samples then have to be taken as independent: the note column says so);
* the p-values are adjusted across all timed cells by Benjamini-Hochberg, so that the expected
  share of false alarms among the cells called different stays below ``alpha``;
* a cell is SLOWER or FASTER only when that adjusted p-value is below ``alpha`` *and* the ratio
  is beyond the ``threshold`` (default 5%): a significant 1% change is not a regression.  It is
  SAME only when the whole interval lies within the threshold band; otherwise UNSURE (more
  rounds would decide it).

Machine speed (``normalize="probe"``, the default).  Two corrections, applied to the new (and,
for the probe, the base) samples before the per-cell tests, and reported:

* the speed probe, CPU records only: every timing round of a CPU cell also timed a fixed
  pure-Python workload (``round_probe_ms``, :func:`convbench.suites.measure.timing.speed_probe`), which tells how
  fast the core was while that round's samples were taken.  Each round's samples are scaled by
  ``reference probe / round probe`` (the reference: the base run's median probe), so a round
  caught in one of a shared machine's slow phases is put back on the common scale.  On the
  2-core VM a slow phase made every call 1.5x slower while the ratio of call to probe moved
  2-5% (memory-bound calls follow the probe less well than interpreter-bound ones).  Cells
  without probes on both sides (GPU records, older runs) are left as they are;
* run-wide drift: a machine that is simply faster or slower than it was (clock state, a noisy
  neighbour, thermal limits) shifts every cell of a backend by the same factor.  That common
  factor, the median over the backend's cells of the log ratio of medians, is divided out of
  the new samples, and a cell is then judged by how it moved *relative to the rest of its run*.
  With fewer than ``MIN_CELLS_FOR_DRIFT`` timed cells in a backend nothing is divided out.  A
  real change common to every cell is therefore not a per-cell regression: it shows in the drift
  line (and fails the comparison only with ``fail_on_drift``).

``normalize="backend"`` applies the drift correction only, ``normalize="none"`` judges raw times.

Correctness, per cell present on both sides (timed or not): passing -> failing/error is LOST;
the max relative error growing more than ``err_growth`` times (10x, above ``err_floor``) is
ERR_GREW; failing -> passing is FIXED.  Cells without samples (``samples_ms: []``, e.g. Triton
on a CPU-only machine) are compared on correctness only (verdict UNTIMED).  Cells in one run
only are listed.  The run fails (exit status 1) on any SLOWER, LOST or ERR_GREW cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..measure.records import cell_key, load_records, short_of_rounds
from ..measure.stats import benjamini_hochberg, mann_whitney_p, ratio_ci, welch_log_ratio

VERDICTS = ("SLOWER", "FASTER", "UNSURE", "SAME", "UNTIMED")
FAILING_CORRECTNESS = ("LOST", "ERR_GREW")
NORMALIZE = ("probe", "backend", "none")
MIN_CELLS_FOR_DRIFT = 5
#: rounds needed on both sides for the round-level test
MIN_ROUNDS = 3


@dataclass
class CellComparison:
    key: str
    base: object
    new: object
    verdict: str = "UNTIMED"
    ratio: float | None = None      # median(new) / median(base): > 1 is slower
    ci_lo: float | None = None
    ci_hi: float | None = None
    p: float | None = None
    q: float | None = None
    correctness: str = ""           # see correctness_change
    note: str = ""
    #: "rounds" (Welch t on log round medians) or "samples" (Mann-Whitney U on raw samples)
    test: str = ""

    @property
    def regression(self) -> bool:
        return self.verdict == "SLOWER" or self.correctness in FAILING_CORRECTNESS


@dataclass
class Comparison:
    cells: list = field(default_factory=list)
    only_base: list = field(default_factory=list)
    only_new: list = field(default_factory=list)
    threshold: float = 0.05
    alpha: float = 0.05
    base_label: str = "base"
    new_label: str = "new"
    normalize: str = "probe"
    #: backend -> run-wide factor new/base divided out of the new samples (1.0: none)
    drift: dict = field(default_factory=dict)
    #: cells whose rounds were put on the speed probe's scale, and the machine's speed new/base
    #: by the probe (median over those cells of the ratio of median probe times)
    probe_cells: int = 0
    probe_ratio: float | None = None
    fail_on_drift: bool = False
    #: cells of each side with fewer timing rounds than their run asked for (interrupted runs)
    short_base: list = field(default_factory=list)
    short_new: list = field(default_factory=list)

    @property
    def regressions(self) -> list:
        return [c for c in self.cells if c.regression]

    @property
    def drift_regressions(self) -> list:
        """Backends whose whole run slowed beyond the threshold (only fail with fail_on_drift)."""
        return [b for b, f in sorted(self.drift.items()) if f > 1.0 + self.threshold]

    @property
    def failed(self) -> bool:
        return bool(self.regressions) or (self.fail_on_drift and bool(self.drift_regressions))

    def counts(self) -> dict:
        return {v: sum(c.verdict == v for c in self.cells) for v in VERDICTS}

    def geomean(self, cells=None) -> float | None:
        """Geometric mean of the median ratios (new/base) over the cells timed on both sides."""
        logs = [math.log(c.ratio) for c in (self.cells if cells is None else cells)
                if c.ratio is not None and c.ratio > 0]
        return math.exp(sum(logs) / len(logs)) if logs else None


def get_field(rec, name, default=None):
    """A field of a Record or of a dict with the same keys."""
    if isinstance(rec, dict):
        return rec.get(name, default)
    return getattr(rec, name, default)


def _key(rec) -> str:
    return cell_key(rec)


# ---------------------------------------------------------------------------- statistics
def _round_medians(samples: np.ndarray, sizes) -> np.ndarray | None:
    """Median of each round's samples, or None with fewer than MIN_ROUNDS rounds that fit."""
    sizes = list(sizes or [])
    if len(sizes) < MIN_ROUNDS or sum(sizes) != len(samples) or min(sizes) < 1:
        return None
    return np.array([np.median(part) for part in np.split(samples, np.cumsum(sizes)[:-1])])


def median_ms(samples) -> float:
    return float(np.median(np.asarray(samples, float)))


# ---------------------------------------------------------------------------- correctness
def _failing(rec) -> bool:
    return get_field(rec, "status") in ("fail", "error") or get_field(rec, "passed") is False


def correctness_change(base, new, *, err_growth: float = 10.0, err_floor: float = 1e-9) -> tuple[str, str]:
    """("LOST" | "ERR_GREW" | "FIXED" | "STILL_FAILING" | "NOW_FAILING" | "NOW_SKIPPED" | "",
    explanation).  Only LOST (passing -> failing) and ERR_GREW fail a comparison."""
    b_fail, n_fail = _failing(base), _failing(new)
    b_status, n_status = get_field(base, "status"), get_field(new, "status")
    if n_fail and not b_fail and b_status != "skipped":
        why = get_field(new, "message") or f"passed={get_field(new, 'passed')}"
        return "LOST", f"{b_status} -> {n_status}: {why}"[:200]
    if n_fail and not b_fail:  # it did not run before (skipped): a new failure, not a lost pass
        return "NOW_FAILING", f"{b_status} -> {n_status}: {get_field(new, 'message') or ''}"[:200]
    if b_fail and n_fail:
        return "STILL_FAILING", f"{b_status} -> {n_status}"
    if b_fail and not n_fail:
        return "FIXED", f"{b_status} -> {n_status}"
    if n_status == "skipped" and b_status != "skipped":
        return "NOW_SKIPPED", (get_field(new, "message") or "")[:200]
    b_err, n_err = get_field(base, "max_rel_err"), get_field(new, "max_rel_err")
    if b_err is not None and n_err is not None and n_err > err_floor and n_err > err_growth * b_err:
        grew = f"{n_err / b_err:.0f}x" if b_err > 0 else "from 0"
        return "ERR_GREW", f"max rel err {b_err:.2e} -> {n_err:.2e} ({grew})"
    return "", ""


# ------------------------------------------------------------------------------- compare
def compare(base_records, new_records, *, threshold: float = 0.05, alpha: float = 0.05,
            err_growth: float = 10.0, err_floor: float = 1e-9,
            base_label: str = "base", new_label: str = "new", normalize: str = "probe",
            fail_on_drift: bool = False) -> Comparison:
    """Cell-by-cell comparison of two lists of records (or dicts with the same fields)."""
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize must be one of {NORMALIZE}, got {normalize!r}")
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0 (a fraction, 0.05 = 5%), got {threshold}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    base = {_key(r): r for r in base_records}
    new = {_key(r): r for r in new_records}
    out = Comparison(threshold=threshold, alpha=alpha, base_label=base_label, new_label=new_label,
                     normalize=normalize, fail_on_drift=fail_on_drift)
    out.only_base = sorted(set(base) - set(new))
    out.only_new = sorted(set(new) - set(base))
    out.short_base, out.short_new = short_of_rounds(base.values()), short_of_rounds(new.values())
    timed = []
    for key in sorted(set(base) & set(new)):
        b, n = base[key], new[key]
        if get_field(b, "status") == "skipped" and get_field(n, "status") == "skipped":
            continue
        cell = CellComparison(key, b, n)
        cell.correctness, cell.note = correctness_change(b, n, err_growth=err_growth, err_floor=err_floor)
        bs, ns = get_field(b, "samples_ms") or [], get_field(n, "samples_ms") or []
        if bs and ns and not _failing(n) and not _failing(b):
            timed.append(cell)
        elif bool(bs) != bool(ns):
            cell.note = (cell.note + "; " if cell.note else "") + \
                f"timed only in {base_label if bs else new_label}"
        out.cells.append(cell)
    samples = {c.key: (np.asarray(get_field(c.base, "samples_ms"), float),
                       np.asarray(get_field(c.new, "samples_ms"), float)) for c in timed}
    if normalize == "probe":
        samples, out.probe_cells, out.probe_ratio = probe_scaled(timed, samples, base_records)
    if normalize in ("probe", "backend"):
        out.drift = run_drift(timed, samples)
    for cell in timed:
        bs, ns = samples[cell.key]
        ns = ns / out.drift.get(get_field(cell.new, "backend"), 1.0)
        b_rounds = _round_medians(bs, get_field(cell.base, "round_samples"))
        n_rounds = _round_medians(ns, get_field(cell.new, "round_samples"))
        if b_rounds is not None and n_rounds is not None:
            cell.test = "rounds"
            cell.ratio, cell.p, cell.ci_lo, cell.ci_hi = welch_log_ratio(b_rounds, n_rounds)
        else:
            cell.test = "samples"
            cell.ratio = median_ms(ns) / median_ms(bs)
            cell.p = mann_whitney_p(bs, ns)
            cell.ci_lo, cell.ci_hi = ratio_ci(bs, ns)
            cell.note = (cell.note + "; " if cell.note else "") + "single round: samples taken as independent"
    hi = 1.0 + threshold
    for cell, q in zip(timed, benjamini_hochberg([c.p for c in timed])):
        cell.q = q
        if q < alpha and cell.ratio > hi:
            cell.verdict = "SLOWER"
        elif q < alpha and cell.ratio < 1.0 / hi:
            cell.verdict = "FASTER"
        elif cell.ci_lo >= 1.0 / hi and cell.ci_hi <= hi:
            cell.verdict = "SAME"
        else:
            cell.verdict = "UNSURE"
    return out


def round_probes(rec) -> list[float] | None:
    """The record's per-round probe times, or None when it has none that fit its samples."""
    probes, sizes = get_field(rec, "round_probe_ms") or [], get_field(rec, "round_samples") or []
    if not probes or len(probes) != len(sizes) or sum(sizes) != len(get_field(rec, "samples_ms") or []):
        return None
    if not all(p > 0 for p in probes):
        return None
    return [float(p) for p in probes]


def _scale_rounds(samples: np.ndarray, sizes, probes, reference: float) -> np.ndarray:
    factors = np.repeat(reference / np.asarray(probes, float), np.asarray(sizes, int))
    return samples * factors


def probe_scaled(cells, samples: dict, base_records) -> tuple[dict, int, float | None]:
    """``samples`` with every round of the cells that have probes on both sides scaled to the
    base run's median probe time; (samples, cells scaled, median probe ratio new/base)."""
    base_probes = [p for r in base_records for p in (round_probes(r) or [])]
    if not base_probes:
        return samples, 0, None
    reference = float(np.median(base_probes))
    out, ratios = dict(samples), []
    for c in cells:
        bp, np_ = round_probes(c.base), round_probes(c.new)
        if bp is None or np_ is None:
            continue
        bs, ns = samples[c.key]
        out[c.key] = (_scale_rounds(bs, get_field(c.base, "round_samples"), bp, reference),
                      _scale_rounds(ns, get_field(c.new, "round_samples"), np_, reference))
        ratios.append(math.log(float(np.median(np_)) / float(np.median(bp))))
    return out, len(ratios), (math.exp(float(np.median(ratios))) if ratios else None)


def run_drift(cells, samples: dict) -> dict:
    """backend -> exp(median over its cells of log(median new / median base)), for backends with
    at least MIN_CELLS_FOR_DRIFT cells timed on both sides; ``samples``: key -> (base, new) arrays."""
    logs: dict = {}
    for c in cells:
        bs, ns = samples[c.key]
        logs.setdefault(get_field(c.new, "backend"), []).append(math.log(median_ms(ns) / median_ms(bs)))
    return {b: math.exp(float(np.median(v))) for b, v in logs.items() if len(v) >= MIN_CELLS_FOR_DRIFT}


def compare_paths(base_path, new_path, **kw) -> Comparison:
    return compare(load_records(base_path), load_records(new_path),
                   base_label=str(base_path), new_label=str(new_path), **kw)


def to_dict(cmp: Comparison) -> dict:
    return {
        "failed": cmp.failed, "threshold": cmp.threshold, "alpha": cmp.alpha,
        "normalize": cmp.normalize, "drift": cmp.drift,
        "probe_cells": cmp.probe_cells, "probe_ratio": cmp.probe_ratio,
        "geomean_ratio": cmp.geomean(), "counts": cmp.counts(),
        "only_base": cmp.only_base, "only_new": cmp.only_new,
        "cells": [{"key": c.key, "verdict": c.verdict, "correctness": c.correctness,
                   "ratio": c.ratio, "ci": [c.ci_lo, c.ci_hi] if c.ci_lo is not None else None,
                   "p": c.p, "q": c.q, "test": c.test, "note": c.note, "regression": c.regression}
                  for c in cmp.cells],
    }
