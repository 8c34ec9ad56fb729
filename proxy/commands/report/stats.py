"""The statistics of ``taxmeter report``: percentiles and bootstrap intervals,
from samples or from histogram buckets. Pure functions of their arguments and
the ``random.Random`` given.

Percentiles use the "linear" (inclusive, Hyndman-Fan type 7) definition, the
default of numpy and of ``statistics.quantiles(method="inclusive")``: of
sorted ``x[0..n-1]``, with ``h = q * (n - 1)``, ``j = floor(h)``, the
q-quantile is ``x[j] + (h - j) * (x[j + 1] - x[j])``.

Bootstrap from samples: each resample draws ``n`` of the ``n`` samples with
replacement. Its mean is computed from such a draw. Its quantiles are drawn
without building and sorting the resample, with the same distribution: the
k-th smallest value of a resample is ``x[floor(n * U)]`` where ``U`` is the
k-th smallest of ``n`` uniform numbers, which is Beta(k, n - k + 1)
distributed; the next one above it is the minimum of the ``n - k`` uniforms
above ``U``. That takes two random numbers per quantile instead of a sort
of ``n`` values; the mean still needs its ``n`` draws (about 0.7 ms per
resample of 10,000 samples). Each statistic gets its own resamples, so each
interval stands alone (marginal, not joint).

Bootstrap from a histogram: the bucket counts are resampled (multinomial,
drawn bucket by bucket as binomials) and each statistic recomputed the way
``histogram_quantile`` does, by linear interpolation inside the bucket. It
only knows the bucket a value fell in, so it is approximate: a percentile of
values that all share one bucket shows an interval of no width at all.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

STATISTICS = ("p50", "p95", "p99", "mean")
QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}

Summary = dict[str, float]  # statistic name -> value, in seconds

# Binomials with a smaller mean are drawn exactly; larger ones from their
# normal limit, whose error is far below a histogram bucket's resolution.
_EXACT_BINOMIAL_MEAN = 30.0


def percentile(ordered: Sequence[float], q: float) -> float:
    """The linear q-quantile (0 <= q <= 1) of an ascending, non-empty sequence."""
    h = q * (len(ordered) - 1)
    j = math.floor(h)
    if j + 1 >= len(ordered):
        return ordered[-1]
    return ordered[j] + (h - j) * (ordered[j + 1] - ordered[j])


def summarize(values: Sequence[float]) -> Summary:
    """p50, p95, p99 and mean of non-empty ``values``."""
    ordered = sorted(values)
    summary = {name: percentile(ordered, q) for name, q in QUANTILES.items()}
    summary["mean"] = math.fsum(ordered) / len(ordered)
    return summary


def _resampled_quantile(ordered: Sequence[float], q: float, rng: random.Random) -> float:
    n = len(ordered)
    h = q * (n - 1)
    k = math.floor(h) + 1  # the resample's k-th smallest value is x[j] of the formula
    u = rng.betavariate(k, n - k + 1)
    low = ordered[min(n - 1, int(u * n))]
    if k >= n or h == k - 1:
        return low
    # The smallest of the n - k uniforms above u: u + (1 - u) * Beta(1, n - k).
    above = u - (1.0 - u) * math.expm1(math.log(1.0 - rng.random()) / (n - k))
    high = ordered[min(n - 1, int(above * n))]
    return low + (h - k + 1) * (high - low)


def bootstrap(values: Sequence[float], resamples: int, rng: random.Random) -> list[Summary]:
    """The statistics of ``resamples`` bootstrap resamples of non-empty ``values``."""
    ordered = sorted(values)
    n = len(ordered)
    return [
        {
            **{name: _resampled_quantile(ordered, q, rng) for name, q in QUANTILES.items()},
            "mean": sum(rng.choices(ordered, k=n)) / n,
        }
        for _ in range(resamples)
    ]


def difference_ci(
    variant: Sequence[Summary], baseline: Sequence[Summary], statistic: str
) -> tuple[float, float]:
    """The 2.5 %-97.5 % percentile interval of variant minus baseline, resample by resample."""
    diffs = sorted(v[statistic] - b[statistic] for v, b in zip(variant, baseline, strict=True))
    return percentile(diffs, 0.025), percentile(diffs, 0.975)


@dataclass(frozen=True, slots=True)
class Buckets:
    """A histogram: ``counts[i]`` observations at most ``bounds[i]`` and above
    the bound before; ``counts`` has one more entry, the +Inf bucket."""

    bounds: tuple[float, ...]
    counts: tuple[float, ...]
    total: float  # the sum of the observations, for the mean

    def __post_init__(self) -> None:
        if len(self.counts) != len(self.bounds) + 1:
            raise ValueError("expected one count per bound and one for +Inf")
        if any(b >= a for b, a in zip(self.bounds, self.bounds[1:], strict=False)):
            raise ValueError("bucket bounds must ascend")

    @property
    def count(self) -> float:
        return math.fsum(self.counts)


def histogram_quantile(q: float, bounds: Sequence[float], counts: Sequence[float]) -> float:
    """Prometheus's ``histogram_quantile``: the bucket holding rank ``q * count``,
    interpolated linearly from its lower bound (0 for the first bucket); the
    +Inf bucket answers with the highest finite bound."""
    rank = q * math.fsum(counts)
    below = 0.0
    for i, upper in enumerate(bounds):
        inside = counts[i]
        if below + inside >= rank and inside > 0:
            lower = bounds[i - 1] if i > 0 else min(0.0, upper)
            return lower + (upper - lower) * ((rank - below) / inside)
        below += inside
    return bounds[-1]


def _lower_bounds(bounds: Sequence[float]) -> list[float]:
    return [min(0.0, bounds[0]), *bounds[:-1]]


def _binned_mean(counts: Sequence[float], midpoints: Sequence[float]) -> float:
    return math.fsum(c * m for c, m in zip(counts, midpoints, strict=True)) / math.fsum(counts)


def summarize_buckets(buckets: Buckets) -> Summary:
    """p50, p95, p99 as ``histogram_quantile`` would; mean = sum / count. Needs count > 0."""
    summary = {
        name: histogram_quantile(q, buckets.bounds, buckets.counts) for name, q in QUANTILES.items()
    }
    summary["mean"] = buckets.total / buckets.count
    return summary


def bootstrap_buckets(buckets: Buckets, resamples: int, rng: random.Random) -> list[Summary]:
    """Statistics of multinomial resamples of the bucket counts (rounded to whole
    observations). Where inside its bucket a value lay is unknown, so a
    resample's mean is the exact mean, moved as much as the mean of bucket
    midpoints moved, plus the spread of values uniform inside their buckets
    (histogram_quantile's assumption; the +Inf bucket has no width), drawn
    from its normal limit."""
    counts = [round(c) for c in buckets.counts]
    n = sum(counts)
    if n == 0:
        raise ValueError("a histogram without observations has no bootstrap")
    lowers = _lower_bounds(buckets.bounds)
    midpoints = [(lo + hi) / 2 for lo, hi in zip(lowers, buckets.bounds, strict=True)]
    midpoints.append(buckets.bounds[-1])
    variances = [(hi - lo) ** 2 / 12 for lo, hi in zip(lowers, buckets.bounds, strict=True)]
    variances.append(0.0)
    shift = buckets.total / buckets.count - _binned_mean(counts, midpoints)
    out = []
    for _ in range(resamples):
        drawn = multinomial(n, counts, rng)
        summary = {
            name: histogram_quantile(q, buckets.bounds, drawn) for name, q in QUANTILES.items()
        }
        spread = math.sqrt(math.fsum(d * v for d, v in zip(drawn, variances, strict=True))) / n
        summary["mean"] = _binned_mean(drawn, midpoints) + shift + rng.gauss(0.0, spread)
        out.append(summary)
    return out


def multinomial(n: int, counts: Sequence[int], rng: random.Random) -> list[int]:
    """Counts of ``n`` draws over categories weighted by ``counts`` (at least one > 0)."""
    out = []
    left_weight = sum(counts)
    left = n
    for count in counts:
        # Integer weights make the last category with weight certain (p == 1).
        drawn = binomial(left, count / left_weight, rng) if count > 0 else 0
        out.append(drawn)
        left -= drawn
        left_weight -= count
    return out


def binomial(n: int, p: float, rng: random.Random) -> int:
    """Successes in ``n`` trials of probability ``p``; exact while n*p is small
    (waiting times between successes), from the normal limit beyond."""
    if n <= 0 or p <= 0.0:
        return 0
    if p >= 1.0:
        return n
    if p > 0.5:
        return n - binomial(n, 1.0 - p, rng)
    if n * p > _EXACT_BINOMIAL_MEAN:
        drawn = round(rng.gauss(n * p, math.sqrt(n * p * (1.0 - p))))
        return min(n, max(0, drawn))
    log_q = math.log1p(-p)
    successes = trial = 0
    while True:
        # The number of trials up to and including the next success is geometric.
        trial += int(math.log(1.0 - rng.random()) / log_q) + 1
        if trial > n:
            return successes
        successes += 1
