"""Prometheus metrics, derived from a finished request timeline in one place.

Label values come only from fixed sets (route, outcome, stage, action, mode)
or from the config (variant, filter), never from a request, so a client
cannot create series.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from proxy.config.routes import ROUTE_LABELS
from proxy.config.schema import Config
from proxy.measure.capability import Capability
from proxy.measure.config_gauges import ConfigGauges
from proxy.measure.cost import Prices
from proxy.measure.marks import FilterCall
from proxy.measure.timeline import Breakdown

OUTCOMES = (
    "ok", "blocked", "upstream_error", "timeout", "client_error", "client_disconnect",
    "internal_error",
)  # fmt: skip
ACTIONS = ("allow", "block", "redact", "error", "timeout")
# taxmeter_capability_events_total's events (see proxy.measure.capability): usage_known
# counts the requests whose completion tokens are known, the per-request denominator.
CAPABILITY_EVENTS = ("redacted", "content_filter", "usage_known")
OVERHEAD_PARTS = ("ingress", "upstream_connect", "loop_wait", "egress", "proxy_work")

# From 100 µs (what a regex filter costs) up to the ten minutes of a long generation.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip
RATIO_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


class Metrics:
    """taxmeter's metrics, registered on the registry given (tests pass a fresh one)."""

    def __init__(
        self, registry: CollectorRegistry, config: Config, prices: Prices | None = None
    ) -> None:
        """``prices``: shared with /stats (proxy.measure.stats), so both price alike."""

        def histogram(name: str, doc: str, labels: tuple[str, ...]) -> Histogram:
            return Histogram(name, doc, labels, registry=registry, buckets=LATENCY_BUCKETS)

        rv = ("route", "variant")
        self.requests = Counter(
            "taxmeter_requests", "Requests by outcome.", (*rv, "outcome"), registry=registry
        )
        self.request_duration = histogram(
            "taxmeter_request_duration_seconds",
            "Total time: request received to last byte sent to the client.",
            rv,
        )
        self.upstream_duration = histogram(
            "taxmeter_upstream_duration_seconds",
            "Upstream time: request sent upstream to last byte received.",
            rv,
        )
        self.tax = histogram(
            "taxmeter_latency_tax_seconds",
            "Latency tax: total minus upstream (filters on the critical path plus overhead).",
            rv,
        )
        self.tax_ratio = Histogram(
            "taxmeter_latency_tax_ratio",
            "Latency tax as a fraction of total time, over the requests answered (outcome ok).",
            rv,
            registry=registry,
            buckets=RATIO_BUCKETS,
        )
        self.unanswered_duration = histogram(
            "taxmeter_unanswered_duration_seconds",
            "Total time of the requests not answered ok (blocked, refused, failed, abandoned),"
            " by outcome: the requests the tax ratio leaves out.",
            (*rv, "outcome"),
        )
        self.overhead = histogram(
            "taxmeter_proxy_overhead_seconds",
            "Latency tax not spent in filters on the critical path.",
            rv,
        )
        self.overhead_part = histogram(
            "taxmeter_proxy_overhead_part_seconds",
            "Proxy overhead by part: ingress (read, parse, waiting for the loop), "
            "upstream_connect (pool wait, connect), loop_wait (the upstream's answer "
            "waiting for a late loop), egress (last writes), proxy_work (the rest).",
            (*rv, "part"),
        )
        self.filter_duration = histogram(
            "taxmeter_filter_duration_seconds",
            "Time in one filter at one stage for one request, summed over its calls.",
            ("filter", "stage", "variant"),
        )
        self.filter_cpu = histogram(
            "taxmeter_filter_cpu_seconds",
            "CPU time one filter's own code used at one stage for one request, summed over"
            " its calls (its coroutine's steps on the thread's CPU clock, or its worker's).",
            ("filter", "stage", "variant"),
        )
        self.cost = Counter(
            "taxmeter_filter_cost_usd",
            "Dollars a filter cost: its calls at cost_per_call_usd plus its CPU at"
            " cpu_usd_per_core_hour (every call that ran, observing and deferred ones too).",
            ("filter", "variant"),
            registry=registry,
        )
        self.prices = Prices(config) if prices is None else prices
        self.config_gauges = ConfigGauges(registry, config)
        self.decisions = Counter(
            "taxmeter_filter_decisions",
            "Filter verdicts; mode=observe counts what the filter would have done.",
            ("filter", "stage", "mode", "action"),
            registry=registry,
        )
        self.ttft = histogram(
            "taxmeter_time_to_first_token_seconds",
            "Streamed responses: request received to the first content sent to the client.",
            rv,
        )
        self.upstream_ttft = histogram(
            "taxmeter_upstream_time_to_first_token_seconds",
            "Streamed responses: request sent upstream to the first content it streamed.",
            rv,
        )
        self.ttft_tax = histogram(
            "taxmeter_ttft_tax_seconds",
            "Streamed responses: time to first token minus upstream time to first token.",
            rv,
        )
        self.holdback = histogram(
            "taxmeter_stream_holdback_seconds",
            "Streamed responses: mean time a piece of text waited for a stream filter "
            "before it could be forwarded, per request.",
            ("filter", "variant"),
        )
        self.loop_lag = Histogram(
            "taxmeter_event_loop_lag_seconds",
            "How late the event loop ran a timer set every 5 ms: blocking and saturation.",
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self.assignments = Counter(
            "taxmeter_variant_assignments",
            "Requests assigned to each variant.",
            ("variant",),
            registry=registry,
        )
        self.uninspected = Counter(
            "taxmeter_uninspected_parts",
            "Parts of prompts no text filter can read (images, audio, files, token ids), "
            "by kind; refused with uninspected: block.",
            ("route", "kind"),
            registry=registry,
        )
        self.completion_tokens = Counter(
            "taxmeter_completion_tokens",
            "Completion (output) tokens of the answers, by their usage.",
            rv,
            registry=registry,
        )
        self.capability_events = Counter(
            "taxmeter_capability_events",
            "Requests an enforcing filter redacted (redacted), whose answer ended as filtered"
            " (content_filter), or whose completion tokens are known (usage_known).",
            (*rv, "event"),
            registry=registry,
        )
        self.observations_skipped = Counter(
            "taxmeter_observations_skipped",
            "Requests whose deferred observing filters did not run: too many were pending.",
            registry=registry,
        )
        # Children are cached; the label sets are bounded (see the module docstring).
        self._route_series: dict[tuple[str, str], _RouteSeries] = {}
        self._children: dict[tuple[Any, ...], Any] = {}
        # With several workers, the supervisor adds up the workers' live values.
        self.inflight = Gauge(
            "taxmeter_inflight_requests",
            "Requests being served.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        # Series that exist from the start read as 0 rather than absent, so
        # rate() and alert rules work before the first event.
        self.add_variants(config)

    def add_variants(self, config: Config) -> None:
        """Start the series of the config's variants at 0 (again on reload: no-op for known)."""
        for variant in config.variants:
            self.assignments.labels(variant.name)
            for route in ROUTE_LABELS:
                for outcome in OUTCOMES:
                    self.requests.labels(route, variant.name, outcome)
                self.completion_tokens.labels(route, variant.name)
                for event in CAPABILITY_EVENTS:
                    self.capability_events.labels(route, variant.name, event)

    def config_changed(self, config: Config) -> None:
        """The live config changed (a reload, a mode, weights): new prices, budgets, hash."""
        self.prices.update(config)
        self.config_gauges.update(config)

    def uninspected_parts(self, route: str, kinds: list[str]) -> None:
        for kind in kinds:
            self._child(self.uninspected, route, kind).inc()

    def assigned(self, variant: str) -> None:
        """A request was assigned to ``variant`` (counted when it starts)."""
        self._child(self.assignments, variant).inc()

    def record(
        self,
        route: str,
        variant: str,
        outcome: str,
        figures: Breakdown,
        calls: list[FilterCall],
        exemplar: dict[str, str] | None = None,
        capability: Capability | None = None,
    ) -> None:
        """Everything one finished request contributes to the metrics.

        ``exemplar`` (``{"trace_id": hex}`` of a sampled trace) goes on the
        latency histograms, for OpenMetrics scrapes; ``capability``: what its
        answer gave the client (None: not known).
        """
        series = self._route_series.get((route, variant))
        if series is None:
            series = self._route_series[(route, variant)] = _RouteSeries(self, route, variant)
        series.requests(outcome).inc()
        series.duration.observe(figures.total, exemplar)
        if figures.called_upstream:
            series.upstream.observe(figures.upstream)
        series.tax.observe(figures.tax, exemplar)
        if outcome == "ok":
            series.tax_ratio.observe(figures.tax_ratio)
        else:
            # All tax or cut short (a block, a 400, a failure): in the ratio, such a
            # request would weigh as much as an answer and drown the answers' tax.
            series.unanswered(outcome).observe(figures.total)
        series.overhead.observe(figures.overhead)
        series.ingress.observe(figures.ingress)
        series.upstream_connect.observe(figures.upstream_connect)
        series.loop_wait.observe(figures.loop_wait)
        series.egress.observe(figures.egress)
        series.proxy_work.observe(figures.proxy_work)
        for (filter_name, stage), seconds in figures.filters.items():
            self._child(self.filter_duration, filter_name, stage, variant).observe(
                seconds, exemplar
            )
        for (filter_name, stage), seconds in figures.filter_cpu.items():
            self._child(self.filter_cpu, filter_name, stage, variant).observe(seconds)
        if self.prices.priced:
            for filter_name, usd in self.prices.costs(figures, calls).items():
                self._child(self.cost, filter_name, variant).inc(usd)
        else:  # nothing to add: the series only need to exist (at 0) for rate()
            for filter_name, _stage in figures.filter_cpu:
                self._child(self.cost, filter_name, variant)
        for call in calls:
            self._child(self.decisions, call.filter, call.stage, call.mode, call.action).inc()
        for filter_name, seconds in figures.holdback.items():
            self._child(self.holdback, filter_name, variant).observe(seconds)
        if figures.ttft is not None and figures.upstream_ttft is not None:
            series.ttft.observe(figures.ttft, exemplar)
            series.upstream_ttft.observe(figures.upstream_ttft)
            series.ttft_tax.observe(max(0.0, figures.ttft - figures.upstream_ttft))
        if capability is not None:
            self._capability(route, variant, capability)

    def _capability(self, route: str, variant: str, capability: Capability) -> None:
        events = self.capability_events
        if capability.redacted:
            self._child(events, route, variant, "redacted").inc()
        if capability.content_filter:
            self._child(events, route, variant, "content_filter").inc()
        if capability.completion_tokens is not None:
            self._child(events, route, variant, "usage_known").inc()
            tokens = self._child(self.completion_tokens, route, variant)
            tokens.inc(capability.completion_tokens)

    def _child(self, metric: Any, *labels: str) -> Any:
        """A labelled child, looked up once: labels() is the costly part of a record."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child


class _RouteSeries:
    """The children of one (route, variant), resolved once."""

    __slots__ = (
        "_by_outcome",
        "_key",
        "_requests",
        "_unanswered",
        "_unanswered_by_outcome",
        "duration",
        "egress",
        "ingress",
        "loop_wait",
        "overhead",
        "proxy_work",
        "tax",
        "tax_ratio",
        "ttft",
        "ttft_tax",
        "upstream",
        "upstream_connect",
        "upstream_ttft",
    )

    def __init__(self, metrics: Metrics, route: str, variant: str) -> None:
        self._requests = metrics.requests
        self._by_outcome: dict[str, Any] = {}
        self._unanswered = metrics.unanswered_duration
        self._unanswered_by_outcome: dict[str, Any] = {}
        self.duration = metrics.request_duration.labels(route, variant)
        self.upstream = metrics.upstream_duration.labels(route, variant)
        self.tax = metrics.tax.labels(route, variant)
        self.tax_ratio = metrics.tax_ratio.labels(route, variant)
        self.overhead = metrics.overhead.labels(route, variant)
        part = metrics.overhead_part
        self.ingress, self.upstream_connect, self.loop_wait, self.egress, self.proxy_work = (
            part.labels(route, variant, name) for name in OVERHEAD_PARTS
        )
        self.ttft = metrics.ttft.labels(route, variant)
        self.upstream_ttft = metrics.upstream_ttft.labels(route, variant)
        self.ttft_tax = metrics.ttft_tax.labels(route, variant)
        self._key = (route, variant)

    def requests(self, outcome: str) -> Any:
        return self._by(self._by_outcome, self._requests, outcome)

    def unanswered(self, outcome: str) -> Any:
        return self._by(self._unanswered_by_outcome, self._unanswered, outcome)

    def _by(self, cache: dict[str, Any], metric: Any, outcome: str) -> Any:
        child = cache.get(outcome)
        if child is None:
            child = cache[outcome] = metric.labels(*self._key, outcome)
        return child
