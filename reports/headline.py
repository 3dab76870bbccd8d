"""The answer first: what a run says in a few lines, before any table.

* the device and versions in one line;
* per suite and dtype, for each non-vendor backend: the geometric-mean speedup over the vendor
  baseline of that backend's best correct algorithm per shape, with an interval, and how many
  shapes each column (the vendor baseline included) wins;
* correctness in one line: cells passed / failed / errored, the worst error ratio.

The interval is the delta-method one for a geometric mean of measured speedups: each shape's
95% bootstrap interval gives its log-speedup a standard error ``(ln hi - ln lo) / (2 * 1.96)``,
and the mean of n independent logs has ``sqrt(sum se^2) / n``.  It covers measurement noise,
not the choice of shapes; picking each shape's best algorithm after the fact biases the
geomean up by at most the spread between the algorithms' intervals.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from .tables import BACKEND_ORDER, DTYPE_ORDER, _value, as_frame, column_name

Z95 = 1.959964


@dataclass
class BackendSpeedup:
    """One non-vendor backend of a (suite, dtype): its best correct algorithm per shape."""

    backend: str
    #: shapes with a timed, correct cell of this backend and a timed baseline
    shapes: int = 0
    geomean: float | None = None
    lo: float | None = None
    hi: float | None = None
    #: the algorithm that is this backend's best most often
    best_algorithm: str = ""
    #: cells of this backend that ran but were not timed (the Triton interpreter)
    untimed: int = 0

    def text(self) -> str:
        if self.geomean is None:
            return f"{self.backend} not timed ({self.untimed} cells checked for correctness only)"
        return (f"{self.backend} {self.geomean:.2f}x [{self.lo:.2f}, {self.hi:.2f}] "
                f"({self.shapes} shapes, most often {self.best_algorithm})")


@dataclass
class SpeedupLine:
    """One (suite, dtype) of the headline."""

    suite: str
    dtype: str
    backends: list[BackendSpeedup] = field(default_factory=list)
    #: column name -> shapes it is the fastest correct timed cell of (the vendor baseline included)
    wins: Counter = field(default_factory=Counter)

    def text(self) -> str:
        wins = ", ".join(f"{name} {n}" for name, n in self.wins.most_common()) or "none timed"
        return (f"{self.suite} · {self.dtype}: best algorithm per shape over the vendor baseline (geomean) — "
                + "; ".join(b.text() for b in self.backends) + f" · shapes won: {wins}")


@dataclass
class Correctness:
    checked: int = 0
    passed: int = 0
    failed: int = 0
    errored: int = 0
    skipped: int = 0
    worst_ratio: float | None = None
    worst_cell: str = ""

    def text(self) -> str:
        worst = (f"; worst error / tolerance {self.worst_ratio:.3f} ({self.worst_cell})"
                 if self.worst_ratio is not None else "")
        return (f"correctness: {self.passed} of {self.checked} checked cells passed, {self.failed} failed, "
                f"{self.errored} errored ({self.skipped} not applicable){worst}")

    @property
    def ok(self) -> bool:
        return not (self.failed or self.errored)


@dataclass
class Headline:
    device: str
    speedups: list[SpeedupLine]
    correctness: Correctness

    def lines(self) -> list[str]:
        return [self.device, *(s.text() for s in self.speedups), self.correctness.text()]


def device_line(env: dict) -> str:
    """Device and versions in one line (what env.json does not know is left out)."""
    device = env.get("gpu") or f"CPU {env.get('cpu') or '?'} ({env.get('cpu_count') or '?'} cores)"
    parts = [device + "".join(f", {name} {env[key]}" for name, key in (("CUDA", "cuda"), ("cuDNN", "cudnn"))
                              if env.get("gpu") and env.get(key))]
    versions = ", ".join(f"{name} {env[name]}" for name in ("torch", "triton", "numpy", "python") if env.get(name))
    if versions:
        parts.append(versions)
    commit = str(env.get("git_commit") or "")[:12]
    if commit:
        parts.append(f"commit {commit}" + (" (dirty)" if env.get("git_dirty") else ""))
    if env.get("time_utc"):
        parts.append(str(env["time_utc"]))
    return " · ".join(parts)


def _log_se(r) -> float:
    lo, hi = _value(r.speedup_lo), _value(r.speedup_hi)
    if lo is None or hi is None or lo <= 0 or hi <= 0:
        return 0.0
    return (math.log(hi) - math.log(lo)) / (2 * Z95)


def _backend_speedup(backend: str, mine, shape_key) -> BackendSpeedup:
    out = BackendSpeedup(backend, untimed=int(mine["p50_ms"].isna().sum()))
    scored = mine[(mine["status"] == "ok") & mine["speedup"].notna()]
    logs, var, best = [], 0.0, Counter()
    for _, shape in scored.groupby(shape_key, sort=False):
        top = shape.loc[shape["speedup"].idxmax()]
        logs.append(math.log(top["speedup"]))
        var += _log_se(top) ** 2
        best[top["algorithm"]] += 1
    if logs:
        n = len(logs)
        centre, half = sum(logs) / n, Z95 * math.sqrt(var) / n
        out.shapes, out.geomean = n, math.exp(centre)
        out.lo, out.hi = math.exp(centre - half), math.exp(centre + half)
        out.best_algorithm = best.most_common(1)[0][0]
    return out


def _speedup_lines(df) -> list[SpeedupLine]:
    out = []
    shape_key = ["suite", "op", "label", "shape", "dtype", "layout"]
    ran = df[df["status"] != "skipped"]
    for (suite, dtype), group in ran.groupby(["suite", "dtype"], sort=False):
        backends = sorted((b for b in dict.fromkeys(group["backend"]) if b != "torch"),
                          key=lambda b: BACKEND_ORDER.index(b) if b in BACKEND_ORDER else 9)
        line = SpeedupLine(suite, dtype)
        timed = group[(group["status"] == "ok") & group["p50_ms"].notna()]
        for _, shape in timed.groupby(shape_key, sort=False):
            if len(shape) > 1:  # a win needs a contest
                line.wins[column_name(shape.loc[shape["p50_ms"].idxmin()])] += 1
        for backend in backends:
            b = _backend_speedup(backend, group[group["backend"] == backend], shape_key)
            if b.geomean is not None or b.untimed:
                line.backends.append(b)
        if line.backends:
            out.append(line)
    order = {d: i for i, d in enumerate(DTYPE_ORDER)}
    suites = list(dict.fromkeys(df["suite"]))
    out.sort(key=lambda s: (suites.index(s.suite), order.get(s.dtype, 9)))
    return out


def _correctness(df) -> Correctness:
    c = Correctness()
    c.skipped = int((df["status"] == "skipped").sum())
    c.failed = int((df["status"] == "fail").sum())
    c.errored = int((df["status"] == "error").sum())
    c.passed = int((df["status"] == "ok").sum())
    c.checked = c.passed + c.failed + c.errored
    errs = df[df["max_rel_err"].notna() & (df["tolerance"].fillna(0) > 0)]
    if not errs.empty:
        ratio = errs["max_rel_err"] / errs["tolerance"]
        worst = errs.loc[ratio.idxmax()]
        c.worst_ratio = float(ratio.max())
        c.worst_cell = (f"{worst['suite']} {worst['op']} {worst['shape']} {column_name(worst)} "
                        f"{worst['dtype']} {worst['layout']}")
    return c


def headline(records, env: dict) -> Headline:
    """The headline of a run (its records or a frame of them, and its env.json)."""
    df = as_frame(records)
    if df.empty:
        return Headline(device_line(env), [], Correctness())
    return Headline(device_line(env), _speedup_lines(df), _correctness(df))
