"""Statistics on synthetic samples: known medians and percentiles, interval coverage, stopping."""

import math

import numpy as np
import pytest

from convbench.suites.measure.stats import (StopRule, bootstrap_ratio_ci, median_ci, median_noise, percentile,
                                           should_stop, summarize)


def test_known_median_and_percentiles():
    samples = list(range(1, 102))  # 1..101
    s = summarize(samples)
    assert s.n == 101 and s.p50 == 51 and s.min == 1 and s.max == 101
    assert s.p20 == pytest.approx(21.0) and s.p80 == pytest.approx(81.0)  # linear interpolation
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([0.0, 10.0], 25) == pytest.approx(2.5)
    assert s.mean == pytest.approx(51.0)
    assert s.cv == pytest.approx(np.std(samples, ddof=1) / 51.0)


def test_constant_samples_have_no_noise():
    s = summarize([2.0] * 12)
    assert s.cv == 0.0 and s.noise == 0.0 and s.p50 == 2.0


def test_bad_input_raises():
    with pytest.raises(ValueError, match="empty"):
        summarize([])
    with pytest.raises(ValueError, match="q must be"):
        percentile([1.0], 120)
    with pytest.raises(ValueError, match="at least 3"):
        median_ci([1.0, 2.0])
    with pytest.raises(ValueError, match="min_samples"):
        StopRule(min_samples=2)
    with pytest.raises(ValueError, match="max_samples"):
        StopRule(min_samples=10, max_samples=5)
    assert math.isnan(median_noise([1.0, 2.0]))


def test_median_ci_order_statistics_by_hand():
    # n = 10: ranks floor(5 - 1.96*sqrt(10)/2) = 1 and ceil(5 + 3.10) + 1 = 10 -> [min, max]
    assert median_ci(list(range(10))) == (0.0, 9.0)
    # n = 100: ranks floor(50 - 9.8) = 40 and ceil(59.8) + 1 = 61 (1-based)
    assert median_ci(list(range(100))) == (39.0, 60.0)


def test_median_ci_covers_the_true_median_about_95_percent():
    rng = np.random.default_rng(1)
    true_median = math.log(2.0)  # of the unit exponential: skewed, like timing samples
    trials, n = 400, 41
    hits = 0
    for _ in range(trials):
        lo, hi = median_ci(rng.exponential(1.0, n))
        hits += lo <= true_median <= hi
    assert 0.92 <= hits / trials <= 0.995


def test_noise_shrinks_like_one_over_sqrt_n():
    rng = np.random.default_rng(2)
    small = np.median([median_noise(1.0 + 0.05 * rng.standard_normal(25)) for _ in range(50)])
    large = np.median([median_noise(1.0 + 0.05 * rng.standard_normal(400)) for _ in range(50)])
    assert 2.5 < small / large < 6.5  # sqrt(400/25) = 4


def test_stopping_rule():
    rule = StopRule(min_samples=10, max_samples=100, target_noise=0.01, max_time_s=1.0)
    quiet = [1.0 + 1e-4 * (i % 3) for i in range(10)]
    assert should_stop(quiet[:9], 0.01, rule) == (False, "")  # too few samples, however quiet
    assert should_stop(quiet, 0.01, rule) == (True, "converged")
    noisy = list(np.random.default_rng(3).uniform(0.5, 1.5, 20))
    assert should_stop(noisy, 0.1, rule) == (False, "")  # noisy and budget left: continue
    assert should_stop(noisy, 1.5, rule) == (True, "time budget")
    assert should_stop(noisy[:5], 5.0, rule) == (False, "")  # the budget does not cut below min_samples
    assert should_stop(noisy[:5], 10.0, rule) == (True, "timeout")  # ... unless calls are very slow
    assert should_stop(noisy[:2], 99.0, rule) == (False, "")  # and never below 3 samples
    assert should_stop([1.0] * 100, 0.0, rule) == (True, "max samples")
    slow_start = StopRule(min_samples=10, min_time_s=0.5, max_time_s=2.0)
    assert should_stop(quiet, 0.1, slow_start) == (False, "")  # converged but under min_time_s


def test_bootstrap_ratio_interval():
    rng = np.random.default_rng(4)
    base = 2.0 * (1 + 0.02 * rng.standard_normal(60))
    new = 1.0 * (1 + 0.02 * rng.standard_normal(60))
    ratio, lo, hi = bootstrap_ratio_ci(base, new, n_boot=500, seed=7)
    assert lo < ratio < hi and lo < 2.0 < hi and hi - lo < 0.1
    assert bootstrap_ratio_ci(base, new, n_boot=500, seed=7) == (ratio, lo, hi)  # seeded: reproducible
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_ratio_ci([], new)


def test_bootstrap_interval_coverage_sanity():
    rng = np.random.default_rng(5)
    hits, trials = 0, 60
    for _ in range(trials):
        base = rng.lognormal(math.log(3.0), 0.05, 40)
        new = rng.lognormal(math.log(2.0), 0.05, 40)
        _, lo, hi = bootstrap_ratio_ci(base, new, n_boot=300, seed=int(rng.integers(1 << 30)))
        hits += lo <= 1.5 <= hi
    assert hits / trials >= 0.83


def test_stop_checker_runs_the_convergence_test_only_at_checkpoints(monkeypatch):
    from convbench.suites.measure import stats as S

    calls = []
    real = S.median_noise
    monkeypatch.setattr(S, "median_noise", lambda samples: (calls.append(len(samples)), real(samples))[1])
    rule = StopRule(min_samples=10, max_samples=10_000, target_noise=1e-9, max_time_s=1.0)
    check = S.StopChecker(rule)
    samples = []
    for i in range(200):
        samples.append(1.0 + 0.01 * (i % 7))
        assert check(samples, 0.0) == (False, "")
    # first at min_samples, then each time the count grew by a quarter (at least 5)
    assert calls[:4] == [10, 15, 20, 25] and calls[-1] <= 200 and len(calls) < 20
    assert calls == sorted(set(calls))
    # the cheap limits still act on every sample
    assert check(samples + [1.0], 5.0) == (True, "time budget")
    quiet = S.StopChecker(StopRule(min_samples=10))
    assert quiet([1.0] * 10, 0.0) == (True, "converged")
