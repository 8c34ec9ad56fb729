"""The canary's metrics: what each filter did with each labelled check, and what it took.

Kept apart from :mod:`proxy.measure.metrics` on purpose: a canary is not a
request, so nothing here touches the request metrics, and nothing there
counts a canary. Label values: ``filter`` and ``variant`` from the config,
``label`` from the canary dataset (bounded by proxy.config.canary), ``action``
from the fixed set.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from proxy.measure.metrics import ACTIONS, LATENCY_BUCKETS
from proxy.measure.timeline import NS_PER_S, Timeline


class CanaryMetrics:
    """``taxmeter_canary_checks_total`` and ``taxmeter_canary_duration_seconds``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.checks = Counter(
            "taxmeter_canary_checks",
            "Canary checks: one labelled text judged by one filter of one variant's live "
            "chain, by the text's label and the filter's action (observe mode: what it "
            "would have done).",
            ("filter", "variant", "label", "action"),
            registry=registry,
        )
        self.duration = Histogram(
            "taxmeter_canary_duration_seconds",
            "Time one filter took to judge one canary text.",
            ("filter", "variant"),
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self._started: set[tuple[str, str, str]] = set()
        self._children: dict[tuple[str, ...], Any] = {}

    def start_series(self, filter_name: str, variant: str, labels: tuple[str, ...]) -> None:
        """Every action's series at 0, so the rates' ratios read 0 rather than absent."""
        for label in labels:
            key = (filter_name, variant, label)
            if key in self._started:
                continue
            self._started.add(key)
            for action in ACTIONS:
                self._child(self.checks, filter_name, variant, label, action)

    def checked(self, variant: str, label: str, timeline: Timeline) -> None:
        """Count the filter calls of one canary check, from the check's own timeline."""
        for call in timeline.filter_calls:
            self._child(self.checks, call.filter, variant, label, call.action).inc()
            self._child(self.duration, call.filter, variant).observe(call.duration_ns / NS_PER_S)

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (str(id(metric)), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child
