"""The capability tax in ``taxmeter report``: what each variant's answers gave the clients.

Per variant: the shares of requests blocked, redacted (an enforcing filter
rewrote some text) and ended as filtered (``content_filter``: a finish reason
``content_filter`` or ``refusal``), and completion tokens per request (of the
requests whose tokens are known: see :mod:`proxy.measure.capability`); and
each variant's difference from the baseline with a 95% interval.

A share's interval is a parametric bootstrap of two proportions: each
resample draws the variant's and the baseline's counts as binomials of their
own size and share; the interval is the 2.5 %-97.5 % percentile of the
resampled differences. It needs only counts, so it is the same from /stats
and from Prometheus. Tokens per request: from /stats a bootstrap of the
per-request counts' mean; from Prometheus, which holds a sum and a count and
not the spread, the difference without an interval.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from proxy.commands.report.bootstrap import difference_ci, proportion_ci, resampled_means

if TYPE_CHECKING:
    from proxy.commands.report.bootstrap import Draws

CAPABILITY_EVENTS = ("blocked", "redacted", "content_filter")
SHARES = {event: f"{event}_share" for event in CAPABILITY_EVENTS}
TOKENS = "completion_tokens_per_request"


@dataclass(frozen=True, slots=True)
class CapabilityFigures:
    """One variant's requests and how many of them had each event."""

    requests: int
    counts: Mapping[str, int | None]  # event -> requests; None: the source does not record it
    tokens: list[float] | None = None  # /stats: each known request's completion tokens
    tokens_total: tuple[float, int] | None = None  # Prometheus: (tokens, requests known)

    def tokens_per_request(self) -> float | None:
        if self.tokens:
            return math.fsum(self.tokens) / len(self.tokens)
        if self.tokens_total is not None and self.tokens_total[1] > 0:
            return self.tokens_total[0] / self.tokens_total[1]
        return None

    def known(self) -> int:
        if self.tokens is not None:
            return len(self.tokens)
        return self.tokens_total[1] if self.tokens_total is not None else 0


def _row(figures: CapabilityFigures) -> dict[str, Any]:
    n = figures.requests
    row: dict[str, Any] = {"requests": n}
    for event, key in SHARES.items():
        count = figures.counts.get(event)
        row[key] = None if count is None or n == 0 else count / n
    row[TOKENS] = figures.tokens_per_request()
    row["requests_with_tokens"] = figures.known()
    return row


def capability_section(
    figures: Mapping[str, CapabilityFigures | None],
    baseline: str,
    resamples: int,
    rng: random.Random,
) -> dict[str, Any]:
    """The report's ``capability`` key: a row per variant, differences from the baseline."""
    rows = {name: _row(f) for name, f in figures.items() if f is not None}
    differences: list[dict[str, Any]] = []
    base = figures.get(baseline)
    if base is None or base.requests == 0:
        return {"variants": rows, "differences": differences}
    base_means: Draws | None = None
    for name, other in figures.items():
        if name == baseline or other is None or other.requests == 0:
            continue
        for event, key in SHARES.items():
            count, base_count = other.counts.get(event), base.counts.get(event)
            if count is None or base_count is None:
                continue
            ci = proportion_ci((count, other.requests), (base_count, base.requests), resamples, rng)
            difference = rows[name][key] - rows[baseline][key]
            differences.append(
                {"variant": name, "metric": key, "difference": difference, "ci95": ci}
            )
        mine, theirs = rows[name][TOKENS], rows[baseline][TOKENS]
        if mine is None or theirs is None:
            continue
        interval: list[float | None] = [None, None]
        if other.tokens and base.tokens:
            if base_means is None:
                base_means = resampled_means(base.tokens, resamples, rng)
            drawn = resampled_means(other.tokens, resamples, rng)
            interval = list(difference_ci({"mean": drawn}, {"mean": base_means}, "mean"))
        differences.append(
            {"variant": name, "metric": TOKENS, "difference": mine - theirs, "ci95": interval}
        )
    return {"variants": rows, "differences": differences}
