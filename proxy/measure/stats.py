"""Recent per-request figures per variant, for `taxmeter report` (served at /stats).

Prometheus histograms answer percentiles only to a bucket's width; the A/B
report wants the figures themselves to bootstrap confidence intervals. So
the last ``reservoir_size`` requests of each variant are kept here (a ring:
memory is bounded, the figures are recent), with counters per filter.

The JSON served at /stats (``STATS_VERSION`` 1)::

    {"taxmeter_stats": 1, "reservoir_size": N,
     "variants": {NAME: {"weight": w, "requests": n,
                         "samples": {"route": [...], "outcome": [...],
                                     "request_duration_seconds": [...],
                                     "latency_tax_seconds": [...],
                                     "ttft_seconds": [float | null, ...],
                                     "ttft_tax_seconds": [float | null, ...],
                                     "filter_cpu_seconds": [...],
                                     "redacted": [bool, ...],
                                     "content_filter": [bool, ...],
                                     "completion_tokens": [int | null, ...]}},
                         "ablates": FILTER | null}},
     "filters": {NAME: {"requests": n, "duration_seconds_sum": s,
                        "duration_seconds": [...],
                        "cpu_seconds_sum": s, "cost_usd_sum": usd,
                        "decisions": {ACTION: n}, "observed_decisions": {ACTION: n}}}}

``samples`` are oldest first, columns of equal length; ``requests`` counts
every request since start; ``decisions`` counts enforcing calls by action,
``observed_decisions`` observing ones (what the filter would have done);
``cpu_seconds_sum`` is the CPU of the filter's own code, ``cost_usd_sum`` its
calls and CPU priced (:mod:`proxy.measure.cost`), both over every call that ran;
``duration_seconds`` the durations of its last ``reservoir_size`` calls (every
stage, oldest first), for its percentiles.
``filter_cpu_seconds`` is a request's CPU in filters (every filter and stage);
``redacted``, ``content_filter`` and ``completion_tokens`` are its capability
record (:mod:`proxy.measure.capability`); ``ablates`` names the filter an
ablation variant disables. These were added within version 1: a reader
takes a missing column or key for "not recorded".

With ``--workers N`` each worker keeps its own reservoir and the supervisor
serves them merged (:func:`merge`): counts added up, each variant's samples
the workers' one after the other (up to N times ``reservoir_size``), and
``"workers": N`` in the document.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from proxy.measure.capability import NOTHING, Capability
from proxy.measure.cost import Prices
from proxy.measure.marks import FilterCall
from proxy.measure.timeline import Breakdown

STATS_VERSION = 1
COLUMNS = (
    "route",
    "outcome",
    "request_duration_seconds",
    "latency_tax_seconds",
    "ttft_seconds",
    "ttft_tax_seconds",
    "filter_cpu_seconds",
    "redacted",
    "content_filter",
    "completion_tokens",
)
_ACTIONS = ("allow", "block", "redact", "error", "timeout")


class _FilterCounts:
    __slots__ = ("cost", "cpu", "decisions", "duration", "durations", "observed", "requests")

    def __init__(self, reservoir_size: int) -> None:
        self.requests = 0
        self.duration = 0.0
        self.durations: deque[float] = deque(maxlen=reservoir_size)
        self.cpu = 0.0
        self.cost = 0.0
        self.decisions = dict.fromkeys(_ACTIONS, 0)
        self.observed = dict.fromkeys(_ACTIONS, 0)


class Stats:
    """The reservoir; one per proxy process."""

    def __init__(self, reservoir_size: int = 10_000, prices: Prices | None = None) -> None:
        """``prices``: shared with the metrics (proxy.measure.metrics), so both price alike."""
        self.reservoir_size = reservoir_size
        self.prices = Prices() if prices is None else prices
        self._samples: dict[str, deque[tuple[Any, ...]]] = {}
        self._requests: dict[str, int] = {}
        self._filters: dict[str, _FilterCounts] = {}

    def record(
        self,
        route: str,
        variant: str,
        outcome: str,
        figures: Breakdown,
        calls: list[FilterCall],
        capability: Capability = NOTHING,
    ) -> None:
        ring = self._samples.get(variant)
        if ring is None:
            ring = self._samples[variant] = deque(maxlen=self.reservoir_size)
        ring.append((
            route, outcome, figures.total, figures.tax, figures.ttft, figures.ttft_tax,
            sum(figures.filter_cpu.values()), capability.redacted, capability.content_filter,
            capability.completion_tokens,
        ))  # fmt: skip
        self._requests[variant] = self._requests.get(variant, 0) + 1
        seen: set[str] = set()
        for call in calls:
            counts = self._filters.get(call.filter)
            if counts is None:
                counts = self._filters[call.filter] = _FilterCounts(self.reservoir_size)
            if call.filter not in seen:
                seen.add(call.filter)
                counts.requests += 1
            duration = call.duration_ns / 1e9
            counts.duration += duration
            counts.durations.append(duration)
            counts.cpu += call.cpu_ns / 1e9
            target = counts.decisions if call.mode == "enforce" else counts.observed
            target[call.action] = target.get(call.action, 0) + 1
        if self.prices.priced:
            for name, usd in self.prices.costs(figures, calls).items():
                self._filters[name].cost += usd

    def snapshot(
        self, weights: dict[str, float], ablates: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """The /stats document; variants with a weight but no traffic are listed empty.

        ``ablates``: ablation variant -> the filter it disables."""
        variants: dict[str, Any] = {}
        for name in dict.fromkeys([*weights, *self._samples]):
            rows = list(self._samples.get(name, ()))
            columns = list(zip(*rows, strict=True)) if rows else [() for _ in COLUMNS]
            variants[name] = {
                "weight": weights.get(name, 0.0),
                "requests": self._requests.get(name, 0),
                "samples": {
                    col: list(values) for col, values in zip(COLUMNS, columns, strict=True)
                },
                "ablates": (ablates or {}).get(name),
            }
        filters = {
            name: {
                "requests": c.requests,
                "duration_seconds_sum": c.duration,
                "duration_seconds": list(c.durations),
                "cpu_seconds_sum": c.cpu,
                "cost_usd_sum": c.cost,
                "decisions": dict(c.decisions),
                "observed_decisions": dict(c.observed),
            }
            for name, c in self._filters.items()
        }
        return {
            "taxmeter_stats": STATS_VERSION,
            "reservoir_size": self.reservoir_size,
            "variants": variants,
            "filters": filters,
        }


def merge(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """One /stats document from those of several workers (their own config's weights)."""
    variants: dict[str, Any] = {}
    for document in documents:
        for name, variant in document["variants"].items():
            total = variants.setdefault(name, {
                "weight": variant["weight"], "requests": 0,
                "samples": {col: [] for col in COLUMNS}, "ablates": variant.get("ablates"),
            })  # fmt: skip
            total["requests"] += variant["requests"]
            samples = variant["samples"]
            for col in COLUMNS:
                # A worker of a release without the column: its rows say "not recorded".
                column = samples.get(col)
                if column is None:
                    column = [None] * len(samples["route"])
                total["samples"][col] += column
    filters: dict[str, Any] = {}
    for document in documents:
        for name, counts in document["filters"].items():
            total = filters.setdefault(name, {
                "requests": 0, "duration_seconds_sum": 0.0, "duration_seconds": [],
                "cpu_seconds_sum": 0.0, "cost_usd_sum": 0.0,
                "decisions": dict.fromkeys(_ACTIONS, 0),
                "observed_decisions": dict.fromkeys(_ACTIONS, 0),
            })  # fmt: skip
            total["requests"] += counts["requests"]
            total["duration_seconds_sum"] += counts["duration_seconds_sum"]
            total["duration_seconds"] += counts.get("duration_seconds", [])
            # A worker started from an older install has neither: it adds nothing.
            total["cpu_seconds_sum"] += counts.get("cpu_seconds_sum", 0.0)
            total["cost_usd_sum"] += counts.get("cost_usd_sum", 0.0)
            for key in ("decisions", "observed_decisions"):
                for action, n in counts[key].items():
                    total[key][action] = total[key].get(action, 0) + n
    size = max((d["reservoir_size"] for d in documents), default=0)
    return {
        "taxmeter_stats": STATS_VERSION,
        "reservoir_size": size,
        "workers": len(documents),
        "variants": variants,
        "filters": filters,
    }
