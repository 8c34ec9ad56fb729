"""The report's statistics: percentiles, bootstrap intervals, histogram quantiles."""

from __future__ import annotations

import random
import statistics

import pytest

from proxy.commands.report.bootstrap import bootstrap, bootstrap_buckets, difference_ci
from proxy.commands.report.stats import (
    STATISTICS,
    Buckets,
    histogram_quantile,
    percentile,
    summarize,
    summarize_buckets,
)

BOUNDS = (0.01, 0.025, 0.05, 0.1)  # a cut of the proxy's latency buckets


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([7.0], 0.5, 7.0),
        ([7.0], 0.99, 7.0),
        ([1.0, 2.0, 3.0, 4.0], 0.5, 2.5),
        ([1.0, 2.0, 3.0, 4.0], 0.95, 3.85),
        ([1.0, 2.0, 3.0, 4.0], 1.0, 4.0),
        ([1.0, 2.0, 3.0, 4.0], 0.0, 1.0),
        ([float(i) for i in range(1, 101)], 0.99, 99.01),
        ([float(i) for i in range(1, 102)], 0.5, 51.0),
    ],
)
def test_percentile_is_the_linear_definition(
    values: list[float], q: float, expected: float
) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_summarize_agrees_with_statistics_inclusive_quantiles() -> None:
    rng = random.Random(1)
    values = [rng.lognormvariate(-4, 1) for _ in range(999)]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    summary = summarize(values)  # not sorted: summarize sorts
    assert summary["p50"] == pytest.approx(cuts[49])
    assert summary["p95"] == pytest.approx(cuts[94])
    assert summary["p99"] == pytest.approx(cuts[98])
    assert summary["mean"] == pytest.approx(statistics.fmean(values))


@pytest.mark.parametrize(("n", "q"), [(6, 0.5), (7, 0.5), (9, 0.95), (40, 0.99)])
def test_fast_bootstrap_draws_what_resampling_and_sorting_draws(n: int, q: float) -> None:
    """The order-statistic shortcut against the definition, on samples small enough
    that an off-by-one rank would show: the two distributions' CDFs coincide."""
    rng = random.Random(n)
    values = [float(i) ** 1.5 for i in range(n)]
    name = next(k for k, v in {"p50": 0.5, "p95": 0.95, "p99": 0.99}.items() if v == q)
    draws = 20_000
    fast = sorted(bootstrap(values, draws, rng)[name])
    slow = sorted(percentile(sorted(rng.choices(values, k=n)), q) for _ in range(draws))
    for cut in values:
        below_fast = sum(v <= cut for v in fast) / draws
        below_slow = sum(v <= cut for v in slow) / draws
        assert abs(below_fast - below_slow) < 0.02, (cut, below_fast, below_slow)


def shifted_pair(shift: float, seed: int) -> tuple[list[float], list[float]]:
    rng = random.Random(seed)
    baseline = [0.0002 + rng.expovariate(1 / 0.0003) for _ in range(300)]
    variant = [shift + 0.0002 + rng.expovariate(1 / 0.0003) for _ in range(300)]
    return variant, baseline


@pytest.mark.parametrize("statistic", STATISTICS)
def test_bootstrap_ci_of_a_20ms_shift_contains_it_and_excludes_0(statistic: str) -> None:
    variant, baseline = shifted_pair(0.020, seed=2)
    rng = random.Random(3)
    lo, hi = difference_ci(bootstrap(variant, 2000, rng), bootstrap(baseline, 2000, rng), statistic)
    assert 0 < lo <= 0.020 <= hi, (lo, hi)
    assert hi - lo < 0.002  # 300 samples pin even p99 down to a couple of ms


@pytest.mark.parametrize("statistic", ["p50", "mean"])
def test_bootstrap_ci_of_no_shift_contains_0(statistic: str) -> None:
    variant, baseline = shifted_pair(0.0, seed=4)
    rng = random.Random(5)
    lo, hi = difference_ci(bootstrap(variant, 2000, rng), bootstrap(baseline, 2000, rng), statistic)
    assert lo < 0 < hi, (lo, hi)


def test_difference_ci_is_the_percentile_interval_of_paired_differences() -> None:
    variant = {"p50": [float(i) for i in range(101)]}
    baseline = {"p50": [10.0] * 101}
    assert difference_ci(variant, baseline, "p50") == pytest.approx((-7.5, 87.5))


@pytest.mark.parametrize(
    ("counts", "q", "expected"),
    [
        ((0, 10, 0, 0, 0), 0.5, 0.0175),  # the middle of (10 ms, 25 ms]
        ((10, 10, 0, 0, 0), 0.5, 0.01),  # rank 10 ends the first bucket
        ((10, 10, 0, 0, 0), 0.75, 0.0175),
        ((4, 0, 0, 0, 0), 0.5, 0.005),  # the first bucket starts at 0
        ((0, 0, 0, 0, 5), 0.5, 0.1),  # +Inf answers with the highest finite bound
        ((90, 0, 0, 10, 0), 0.95, 0.075),
        ((50, 30, 15, 4, 1), 0.99, 0.1),
    ],
)
def test_histogram_quantile_interpolates_like_prometheus(
    counts: tuple[float, ...], q: float, expected: float
) -> None:
    assert histogram_quantile(q, BOUNDS, counts) == pytest.approx(expected)


def test_summarize_buckets_takes_the_mean_from_the_sum() -> None:
    summary = summarize_buckets(Buckets(BOUNDS, (0, 10, 0, 0, 0), total=0.201))
    assert summary == pytest.approx({"p50": 0.0175, "p95": 0.02425, "p99": 0.02485, "mean": 0.0201})


def test_buckets_reject_a_wrong_shape() -> None:
    with pytest.raises(ValueError, match="one count per bound"):
        Buckets(BOUNDS, (1, 2), total=0.0)
    with pytest.raises(ValueError, match="ascend"):
        Buckets((0.1, 0.05), (1, 2, 3), total=0.0)


def test_histogram_bootstrap_separates_two_buckets_and_says_little_inside_one() -> None:
    rng = random.Random(6)
    slow = Buckets(BOUNDS, (0, 100, 0, 0, 0), total=100 * 0.0201)
    fast = Buckets(BOUNDS, (100, 0, 0, 0, 0), total=100 * 0.0002)
    slow_draws, fast_draws = bootstrap_buckets(slow, 2000, rng), bootstrap_buckets(fast, 2000, rng)
    lo, hi = difference_ci(slow_draws, fast_draws, "p50")
    # All of each variant in one bucket: the p50s never move from mid-bucket.
    assert (lo, hi) == pytest.approx((0.0175 - 0.005, 0.0175 - 0.005))
    # The mean is the exact one, widened by the width of the buckets.
    lo, hi = difference_ci(slow_draws, fast_draws, "mean")
    assert lo < 0.0199 < hi
    assert 0.001 < hi - lo < 0.003  # about 2 * 1.96 * 15 ms / sqrt(12 * 100)


def test_histogram_bootstrap_moves_with_counts_spread_over_buckets() -> None:
    rng = random.Random(7)
    spread = Buckets(BOUNDS, (40, 30, 20, 10, 0), total=2.0)
    draws = sorted(bootstrap_buckets(spread, 2000, rng)["p50"])
    observed = summarize_buckets(spread)["p50"]
    assert percentile(draws, 0.025) < observed < percentile(draws, 0.975)
    assert percentile(draws, 0.975) - percentile(draws, 0.025) > 0.002
    with pytest.raises(ValueError, match="without observations"):
        bootstrap_buckets(Buckets(BOUNDS, (0, 0.2, 0, 0, 0), total=0.001), 10, rng)
