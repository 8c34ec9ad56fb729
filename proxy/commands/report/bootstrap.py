"""The bootstrap of ``taxmeter report``, vectorised with numpy.

numpy is imported inside the functions, never at the top: the command line
imports every command, ``serve`` included, and the proxy must not load it.
Every function takes the report's seeded ``random.Random`` and draws from a
numpy generator seeded from it, so a ``--seed`` repeats the intervals.

A bootstrap gives, per statistic, one array of ``resamples`` values
(:data:`Resamples`). Each statistic's draws are its own (the mean's, the
p50's...), so each interval stands alone (marginal, not joint).

From samples, each resample draws ``n`` of the ``n`` samples with replacement.

- Its quantiles are drawn without building and sorting the resample, with the
  same distribution: the k-th smallest value of a resample is ``x[floor(n * U)]``
  where ``U`` is the k-th smallest of ``n`` uniform numbers, Beta(k, n - k + 1)
  distributed; the next one above it is the minimum of the ``n - k`` uniforms
  above ``U``. Two random numbers per quantile and resample.
- Its mean, up to ``EXACT_MEAN_LIMIT`` samples, from its ``n`` draws. Beyond, the
  sorted samples are cut in three: a low tail, a bulk and a high tail. How many
  of the ``n`` draws fall in each part is drawn exactly (multinomial), and so
  is every draw in the tails (where an outlier lives); the sum of the draws in
  the bulk is drawn from its normal limit, with its exact mean and variance.
  That limit is off only by the bulk's skewness over the square root of its
  draws; the tails grow until that is at most ``BULK_SKEW_LIMIT`` (a shift of
  the 2.5 % and 97.5 % points by under 1 % of the spread, against about 6 %
  of Monte Carlo noise at 2,000 resamples), else every draw is made.

From a histogram, the bucket counts are resampled (multinomial) and each
statistic recomputed as ``histogram_quantile`` does (see
:mod:`~proxy.commands.report.stats`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from proxy.commands.report.stats import QUANTILES, Buckets, lower_bounds

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    Draws = NDArray[np.float64]

Resamples = dict[str, "Draws"]  # statistic -> its value in each resample

EXACT_MEAN_LIMIT = 2_000
BULK_SKEW_LIMIT = 0.02
_TAIL_SHARE = 100  # each tail starts as 1/100 of the samples
_CHUNK = 1 << 22  # random indices drawn at a time (32 MB)


def generator(rng: random.Random) -> np.random.Generator:
    """A numpy generator seeded from ``rng`` (which moves on by 128 bits)."""
    import numpy as np

    return np.random.Generator(np.random.SFC64(rng.getrandbits(128)))


def _sums_of_draws(values: Draws, counts: NDArray[Any], gen: np.random.Generator) -> Draws:
    """For each ``counts[r]``: the sum of that many draws (with replacement) of ``values``."""
    import numpy as np

    width = int(counts.max(initial=0))
    out = np.zeros(len(counts))
    if width == 0 or len(values) == 0:
        return out
    rows = max(1, _CHUNK // width)
    for start in range(0, len(counts), rows):
        wanted = counts[start : start + rows]
        if (wanted == width).all():
            drawn = gen.integers(0, len(values), (len(wanted), width), np.int32)
            out[start : start + len(wanted)] = np.take(values, drawn).sum(axis=1)
            continue
        # Unequal counts: all the draws in one run, summed per resample.
        drawn = gen.integers(0, len(values), int(wanted.sum()), np.int32)
        some = wanted > 0
        starts = (np.cumsum(wanted) - wanted)[some]
        out[start : start + len(wanted)][some] = np.add.reduceat(np.take(values, drawn), starts)
    return out


def _bulk_skew(bulk: Draws) -> float:
    """The bulk's skewness over the square root of its size: its sum's distance from normal."""
    import numpy as np

    centred = bulk - bulk.mean()
    variance = float(np.mean(centred**2))
    if variance <= 0.0:
        return 0.0
    skewness = abs(float(np.mean(centred**3))) / math.pow(variance, 1.5)
    return skewness / math.sqrt(len(bulk))


def resampled_means(values: Sequence[float] | Draws, resamples: int, rng: random.Random) -> Draws:
    """The means of ``resamples`` bootstrap resamples of non-empty ``values``."""
    import numpy as np

    ordered = np.sort(np.asarray(values, dtype=np.float64))
    n = len(ordered)
    gen = generator(rng)
    tail = max(1, n // _TAIL_SHARE)
    while n > EXACT_MEAN_LIMIT and 4 * tail <= n:
        bulk = ordered[tail : n - tail]
        if _bulk_skew(bulk) <= BULK_SKEW_LIMIT:
            parts = gen.multinomial(n, [tail / n, len(bulk) / n, tail / n], size=resamples)
            low = _sums_of_draws(ordered[:tail], parts[:, 0], gen)
            high = _sums_of_draws(ordered[n - tail :], parts[:, 2], gen)
            inside = parts[:, 1].astype(np.float64)
            spread = np.sqrt(inside * float(np.var(bulk)))
            middle = inside * float(bulk.mean()) + spread * gen.standard_normal(resamples)
            means: Draws = (low + middle + high) / n
            return means
        tail *= 2
    return _sums_of_draws(ordered, np.full(resamples, n), gen) / n


def _resampled_quantile(
    ordered: Draws, q: float, resamples: int, gen: np.random.Generator
) -> Draws:
    import numpy as np

    n = len(ordered)
    h = q * (n - 1)
    k = math.floor(h) + 1  # the resample's k-th smallest value is x[j] of the formula
    u = gen.beta(k, n - k + 1, resamples)
    low = ordered[np.minimum(n - 1, (u * n).astype(np.int64))]
    if k >= n or h == k - 1:
        return low
    # The smallest of the n - k uniforms above u: u + (1 - u) * Beta(1, n - k).
    above = u - (1.0 - u) * np.expm1(np.log1p(-gen.random(resamples)) / (n - k))
    high = ordered[np.minimum(n - 1, (above * n).astype(np.int64))]
    drawn: Draws = low + (h - k + 1) * (high - low)
    return drawn


def bootstrap(values: Sequence[float], resamples: int, rng: random.Random) -> Resamples:
    """p50, p95, p99 and mean of ``resamples`` bootstrap resamples of non-empty ``values``."""
    import numpy as np

    ordered = np.sort(np.asarray(values, dtype=np.float64))
    gen = generator(rng)
    out = {name: _resampled_quantile(ordered, q, resamples, gen) for name, q in QUANTILES.items()}
    out["mean"] = resampled_means(ordered, resamples, rng)
    return out


def difference_ci(
    variant: Mapping[str, Any], baseline: Mapping[str, Any], statistic: str
) -> tuple[float, float]:
    """The 2.5 %-97.5 % percentile interval of variant minus baseline, resample by resample."""
    import numpy as np

    mine, theirs = np.asarray(variant[statistic]), np.asarray(baseline[statistic])
    if mine.shape != theirs.shape:
        raise ValueError(f"{len(mine)} resamples against {len(theirs)}")
    lo, hi = np.percentile(mine - theirs, [2.5, 97.5])
    return float(lo), float(hi)


def proportion_ci(
    variant: tuple[int, int], baseline: tuple[int, int], resamples: int, rng: random.Random
) -> list[float]:
    """The interval of (variant share - baseline share), each given as (count, requests):
    each resample draws both counts as binomials of their own size and share."""
    import numpy as np

    (kv, nv), (kb, nb) = variant, baseline
    gen = generator(rng)
    diffs = gen.binomial(nv, kv / nv, resamples) / nv - gen.binomial(nb, kb / nb, resamples) / nb
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return [float(lo), float(hi)]


def _histogram_quantiles(q: float, bounds: Draws, lowers: Draws, drawn: NDArray[Any]) -> Draws:
    """``histogram_quantile`` of every row of ``drawn`` (rows of equal total)."""
    import numpy as np

    finite = drawn[:, : len(bounds)]
    cumulative = np.cumsum(finite, axis=1)
    rank = q * float(drawn[0].sum())
    hit = (cumulative >= rank) & (finite > 0)
    i = hit.argmax(axis=1)
    rows = np.arange(len(drawn))
    inside = finite[rows, i]
    below = cumulative[rows, i] - inside
    share = (rank - below) / np.where(inside > 0, inside, 1)
    inside_bucket = lowers[i] + (bounds[i] - lowers[i]) * share
    found: Draws = np.where(hit.any(axis=1), inside_bucket, bounds[-1])
    return found


def bootstrap_buckets(buckets: Buckets, resamples: int, rng: random.Random) -> Resamples:
    """Statistics of multinomial resamples of the bucket counts (rounded to whole
    observations). Where inside its bucket a value lay is unknown, so a
    resample's mean is the exact mean, moved as much as the mean of bucket
    midpoints moved, plus the spread of values uniform inside their buckets
    (histogram_quantile's assumption; the +Inf bucket has no width), drawn
    from its normal limit."""
    import numpy as np

    counts = np.array([round(c) for c in buckets.counts], dtype=np.int64)
    n = int(counts.sum())
    if n == 0:
        raise ValueError("a histogram without observations has no bootstrap")
    bounds = np.array(buckets.bounds, dtype=np.float64)
    lowers = np.array(lower_bounds(buckets.bounds), dtype=np.float64)
    midpoints = np.append((lowers + bounds) / 2, bounds[-1])
    variances = np.append((bounds - lowers) ** 2 / 12, 0.0)
    shift = buckets.total / buckets.count - float(counts @ midpoints) / n
    gen = generator(rng)
    drawn = gen.multinomial(n, counts / n, size=resamples)
    out = {name: _histogram_quantiles(q, bounds, lowers, drawn) for name, q in QUANTILES.items()}
    spread = np.sqrt(drawn @ variances) / n
    out["mean"] = drawn @ midpoints / n + shift + gen.normal(0.0, 1.0, resamples) * spread
    return out
