"""The statistics of ``taxmeter report``: percentiles and summaries, from
samples or from histogram buckets. Pure functions of their arguments.

Percentiles use the "linear" (inclusive, Hyndman-Fan type 7) definition, the
default of numpy and of ``statistics.quantiles(method="inclusive")``: of
sorted ``x[0..n-1]``, with ``h = q * (n - 1)``, ``j = floor(h)``, the
q-quantile is ``x[j] + (h - j) * (x[j + 1] - x[j])``.

The bootstraps built on them are in :mod:`~proxy.commands.report.bootstrap`
(numpy); this module is plain Python, so ``taxmeter evaluate`` and the
proxy's imports do not load numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

STATISTICS = ("p50", "p95", "p99", "mean")
QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}

Summary = dict[str, float]  # statistic name -> value, in seconds


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


def lower_bounds(bounds: Sequence[float]) -> list[float]:
    """Each bucket's lower bound, as ``histogram_quantile`` takes it (0 for the first)."""
    return [min(0.0, bounds[0]), *bounds[:-1]]


def summarize_buckets(buckets: Buckets) -> Summary:
    """p50, p95, p99 as ``histogram_quantile`` would; mean = sum / count. Needs count > 0."""
    summary = {
        name: histogram_quantile(q, buckets.bounds, buckets.counts) for name, q in QUANTILES.items()
    }
    summary["mean"] = buckets.total / buckets.count
    return summary


def quantiles(figures: Sequence[float] | Buckets, qs: Sequence[float]) -> list[float]:
    """Each q-quantile of non-empty ``figures`` as :func:`summarize` (values) or
    :func:`summarize_buckets` (a histogram) computes its percentiles."""
    if isinstance(figures, Buckets):
        return [histogram_quantile(q, figures.bounds, figures.counts) for q in qs]
    ordered = sorted(figures)
    return [percentile(ordered, q) for q in qs]
