"""Statistics on raw timing samples: summaries, the noise of the median, intervals, stopping.

Everything here is a pure function of the samples (no timing, no I/O), so it is tested on
synthetic data.  Conventions:

* percentiles use linear interpolation between order statistics (NumPy's default);
* the *relative noise of the median* is the half-width of the distribution-free 95% confidence
  interval of the median (order statistics ``x_(j)``, ``x_(k)`` with ``j, k = n/2 -+ 1.96*sqrt(n)/2``)
  divided by the median: it needs no normality assumption and shrinks like ``1/sqrt(n)``;
* the speedup ``base/new`` of two medians gets a seeded percentile-bootstrap 95% interval,
  each side resampled independently;
* comparing two sets of times (``convbench compare``): Welch's t on the logs of replicate values
  (round medians), a Mann-Whitney U test with its Hodges-Lehmann interval on raw samples, and
  Benjamini-Hochberg adjustment over many cells.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Summary:
    n: int
    p50: float
    p20: float
    p80: float
    mean: float
    std: float
    cv: float
    #: relative half-width of the 95% CI of the median (``nan`` with fewer than 3 samples)
    noise: float
    min: float
    max: float


def _array(samples: Sequence[float]) -> np.ndarray:
    a = np.asarray(samples, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"samples must be one-dimensional, got shape {a.shape}")
    return a


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation."""
    a = _array(samples)
    if a.size == 0:
        raise ValueError("percentile of an empty sample")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q!r}")
    return float(np.percentile(a, q))


def median_ci(samples: Sequence[float], z: float = Z95) -> tuple[float, float]:
    """Distribution-free CI of the median from order statistics (needs >= 3 samples).

    With ``n`` samples sorted, the 1-based ranks ``j = floor(n/2 - z*sqrt(n)/2)`` and
    ``k = ceil(n/2 + z*sqrt(n)/2) + 1`` (clamped to [1, n]) bound the median with about 95%
    coverage (binomial(n, 1/2) normal approximation).
    """
    a = np.sort(_array(samples))
    n = a.size
    if n < 3:
        raise ValueError(f"median_ci needs at least 3 samples, got {n}")
    half = z * math.sqrt(n) / 2
    j = max(1, int(math.floor(n / 2 - half)))
    k = min(n, int(math.ceil(n / 2 + half)) + 1)
    return float(a[j - 1]), float(a[k - 1])


def median_noise(samples: Sequence[float]) -> float:
    """Relative half-width of :func:`median_ci`; ``nan`` for fewer than 3 samples."""
    a = _array(samples)
    if a.size < 3:
        return float("nan")
    lo, hi = median_ci(a)
    med = float(np.median(a))
    if med == 0:
        return 0.0 if hi == lo else float("inf")
    return (hi - lo) / (2 * abs(med))


def summarize(samples: Sequence[float]) -> Summary:
    a = _array(samples)
    if a.size == 0:
        raise ValueError("cannot summarize an empty sample")
    p20, p50, p80 = (float(v) for v in np.percentile(a, [20, 50, 80]))
    mean = float(a.mean())
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    cv = std / mean if mean else float("nan")
    return Summary(int(a.size), p50, p20, p80, mean, std, cv, median_noise(a), float(a.min()), float(a.max()))


@dataclass(frozen=True)
class StopRule:
    """When to stop taking samples (nvbench's "stdrel" idea applied to the median).

    Never before ``min_samples`` samples (unless a single call is so slow that ``timeout_s``
    passes first, and then not before 3).  After that: stop once ``min_time_s`` of measured time
    is in and the relative noise of the median is below ``target_noise``, or when ``max_time_s``
    of wall time is spent; stop anyway at ``max_samples`` samples.
    """

    min_samples: int = 10
    max_samples: int = 2000
    target_noise: float = 0.01
    min_time_s: float = 0.0
    max_time_s: float = 1.0
    #: hard limit for very slow calls (default: 10 x ``max_time_s``)
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        if self.min_samples < 3:
            raise ValueError(f"min_samples must be >= 3, got {self.min_samples}")
        if self.max_samples < self.min_samples:
            raise ValueError(f"max_samples={self.max_samples} must be >= min_samples={self.min_samples}")
        if not self.target_noise > 0:
            raise ValueError(f"target_noise must be positive, got {self.target_noise}")
        if self.max_time_s <= 0:
            raise ValueError(f"max_time_s must be positive, got {self.max_time_s}")


def should_stop(samples: Sequence[float], elapsed_s: float, rule: StopRule, *,
                check_noise: bool = True) -> tuple[bool, str]:
    """(stop?, reason): ``"converged"``, ``"time budget"``, ``"max samples"`` or ``"timeout"``.

    ``check_noise=False`` skips the convergence test (a sort of all samples) and applies only the
    cheap count and time limits: see :class:`StopChecker`."""
    n = len(samples)
    if n >= rule.max_samples:
        return True, "max samples"
    if n >= rule.min_samples:
        if check_noise and elapsed_s >= rule.min_time_s and median_noise(samples) <= rule.target_noise:
            return True, "converged"
        if elapsed_s >= rule.max_time_s:
            return True, "time budget"
        return False, ""
    timeout = rule.timeout_s if rule.timeout_s is not None else 10 * rule.max_time_s
    if elapsed_s >= timeout and n >= 3:
        return True, "timeout"
    return False, ""


class StopChecker:
    """:func:`should_stop` for a sampling loop, with the convergence test only at checkpoints.

    The test sorts every sample taken so far; run between two samples of a microsecond-scale CPU
    call it evicts that call's code and data from the caches, and the next sample pays for it
    (measured on the CPU backends: torch calls of 8-35 us timed 1.6-2.3x slower once the test
    ran after every sample, numpy ones 1.2-1.4x).  So it runs at ``min_samples`` and then each
    time the sample count has grown by a quarter (at least 5 samples); the count and time limits
    are checked after every sample, which costs one comparison.
    """

    def __init__(self, rule: StopRule):
        self.rule = rule
        self.next_check = rule.min_samples

    def __call__(self, samples: Sequence[float], elapsed_s: float) -> tuple[bool, str]:
        n = len(samples)
        due = n >= self.next_check
        if due:
            self.next_check = n + max(5, n // 4)
        return should_stop(samples, elapsed_s, self.rule, check_noise=due)


def bootstrap_ratio_ci(base: Sequence[float], new: Sequence[float], *, n_boot: int = 2000,
                       confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(ratio, lo, hi) for ``median(base) / median(new)``: a speedup when ``new`` is faster.

    Percentile bootstrap, each sample resampled independently, with a fixed ``seed`` so a report
    rebuilt from the same samples shows the same interval.
    """
    b, a = _array(base), _array(new)
    if b.size == 0 or a.size == 0:
        raise ValueError("bootstrap_ratio_ci needs non-empty samples on both sides")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    ratio = float(np.median(b) / np.median(a))
    rng = np.random.default_rng(seed)
    # chunk so that a few thousand samples per side never build a huge index matrix
    chunk = max(1, min(n_boot, 2_000_000 // max(b.size, a.size)))
    ratios = []
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        mb = np.median(b[rng.integers(0, b.size, size=(m, b.size))], axis=1)
        ma = np.median(a[rng.integers(0, a.size, size=(m, a.size))], axis=1)
        ratios.append(mb / ma)
    r = np.concatenate(ratios)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(r, [alpha, 1 - alpha])
    return ratio, float(lo), float(hi)


# ------------------------------------------------------------------ comparing two sets of times
def mann_whitney_p(base: Sequence[float], new: Sequence[float]) -> float:
    """Two-sided Mann-Whitney U p-value (1.0 when the samples cannot be told apart at all)."""
    from scipy.stats import mannwhitneyu  # scipy when a comparison asks for it (slow import)

    a, b = np.asarray(new, float), np.asarray(base, float)
    if len(a) == 0 or len(b) == 0:
        return 1.0
    if np.all(a == a[0]) and np.all(b == a[0]):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def welch_log_ratio(base: Sequence[float], new: Sequence[float]) -> tuple[float, float, float, float]:
    """(ratio, p, ci_lo, ci_hi) of new/base from independent replicate values (round medians):
    Welch's t on the logs; the ratio is that of the geometric means, the interval Student's 95%."""
    from scipy import stats  # scipy when a comparison asks for it (slow import)

    a, b = np.log(np.asarray(new, float)), np.log(np.asarray(base, float))
    diff = float(a.mean() - b.mean())
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0.0:  # every replicate identical on both sides
        return math.exp(diff), (1.0 if diff == 0.0 else 0.0), math.exp(diff), math.exp(diff)
    df = (va + vb) ** 2 / ((va ** 2 / (len(a) - 1) if va else 0.0) + (vb ** 2 / (len(b) - 1) if vb else 0.0))
    p = float(2 * stats.t.sf(abs(diff) / se, df))
    half = float(stats.t.ppf(0.975, df)) * se
    return math.exp(diff), p, math.exp(diff - half), math.exp(diff + half)


def benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    """BH-adjusted p-values (q-values), in the input order."""
    p = np.asarray(pvalues, float)
    m = len(p)
    if m == 0:
        return []
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(q, 1.0)
    return out.tolist()


def ratio_ci(base: Sequence[float], new: Sequence[float], z: float = Z95,
             max_pairs: int = 1_000_000) -> tuple[float, float]:
    """Distribution-free CI of the new/base time ratio: exp of the Hodges-Lehmann interval of
    the shift of log times (order statistics of all pairwise differences picked by the
    normal approximation of U's null distribution).  Very large samples are thinned evenly."""
    a, b = np.log(np.asarray(new, float)), np.log(np.asarray(base, float))
    keep = max(2, int(math.sqrt(max_pairs)))
    a, b = _thin(a, keep), _thin(b, keep)
    n, m = len(a), len(b)
    diffs = np.sort((a[:, None] - b[None, :]).ravel())
    k = int(math.floor(n * m / 2.0 - z * math.sqrt(n * m * (n + m + 1) / 12.0)))
    k = min(max(k, 0), n * m - 1)
    return math.exp(diffs[k]), math.exp(diffs[n * m - 1 - k])


def _thin(x: np.ndarray, keep: int) -> np.ndarray:
    """At most ``keep`` evenly spaced order statistics of ``x`` (deterministic)."""
    if len(x) <= keep:
        return x
    return np.sort(x)[np.linspace(0, len(x) - 1, keep).round().astype(int)]
