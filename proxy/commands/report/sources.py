"""Where ``taxmeter report`` gets its figures, read into one shape (:class:`Snapshot`).

- a proxy's metrics listener, ``GET /stats`` (see :mod:`proxy.measure.stats`): the
  recent requests of each variant, one value per request; and its ``/metrics``
  for the canary checks since start (:mod:`proxy.control.canary`);
- a Prometheus server's HTTP API: ``increase(...[window])`` of taxmeter's
  histograms and counters, bucket counts instead of values.

Prometheus queries are evaluated at the newest scrape of
``taxmeter_requests_total``, not at "now": ``increase`` extrapolates a range
to its end, so a query made between two scrapes would inflate every count by
up to one scrape interval's worth.

Both raise :class:`SourceError`, whose message names the URL, when the source
cannot be reached or answers something else than expected.
"""

from __future__ import annotations

import http.client
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from proxy.commands.report import prometheus_whole
from proxy.commands.report.capability import CAPABILITY_EVENTS, CapabilityFigures
from proxy.commands.report.stats import Buckets

METRICS = (
    "latency_tax_seconds",
    "request_duration_seconds",
    "ttft_seconds",
    "ttft_tax_seconds",
)
PROMETHEUS_NAMES = {
    "latency_tax_seconds": "taxmeter_latency_tax_seconds",
    "request_duration_seconds": "taxmeter_request_duration_seconds",
    "ttft_seconds": "taxmeter_time_to_first_token_seconds",
    "ttft_tax_seconds": "taxmeter_ttft_tax_seconds",
}
TIMEOUT_S = 30.0
CANARY_CHECKS = "taxmeter_canary_checks"

Figures = list[float] | Buckets  # one metric of one variant: values, or a histogram


class SourceError(Exception):
    """The source was unreachable or gave a bad answer; the message names the URL."""


@dataclass(frozen=True, slots=True)
class VariantFigures:
    requests: int
    weight: float | None  # None: the source does not know it (Prometheus)
    metrics: Mapping[str, Figures]  # a metric without data is absent
    ablates: str | None = None  # an ablation variant: the one filter it disables
    # The CPU of all its filters: per request (proxy), or only their mean (Prometheus).
    filter_cpu: list[float] | float | None = None
    capability: CapabilityFigures | None = None


@dataclass(frozen=True, slots=True)
class FilterFigures:
    requests: int
    duration_seconds_sum: float
    decisions: dict[str, float]  # enforcing calls by action
    observed: dict[str, float]  # observing calls by action
    cpu_seconds_sum: float | None = None  # None: the source does not say (an older proxy)
    cost_usd_sum: float | None = None
    durations: Figures | None = None  # each call's duration (every stage); None: not known
    # Canary checks (label -> action -> checks), every variant's together; empty: none ran.
    canary: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Snapshot:
    source: str  # "proxy" or "prometheus"
    url: str
    variants: dict[str, VariantFigures]
    filters: dict[str, FilterFigures]
    evaluated_at: float | None = None  # Prometheus: the end of the window (Unix time)


def _get(url: str, absent_ok: bool = False) -> bytes | None:
    """The body at ``url``; None for a 404 when ``absent_ok``."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            body: bytes = response.read()
    except urllib.error.HTTPError as exc:
        if absent_ok and exc.code == 404:
            return None
        detail = exc.read(500).decode("utf-8", "replace").strip()
        raise SourceError(f"{url}: HTTP {exc.code} {detail}".rstrip()) from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise SourceError(f"{url}: unreachable ({reason})") from exc
    return body


def _get_json(url: str) -> Any:
    body = _get(url) or b""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise SourceError(f"{url}: the answer is not JSON ({exc})") from exc


def read_proxy(base_url: str, routes: Collection[str] | None) -> Snapshot:
    """The /stats reservoir, keeping requests of ``routes`` (None: every route)."""
    url = f"{base_url.rstrip('/')}/stats"
    doc = _get_json(url)
    canary = _proxy_canary(f"{base_url.rstrip('/')}/metrics")
    if not isinstance(doc, dict) or doc.get("taxmeter_stats") != 1:
        raise SourceError(f"{url}: not a taxmeter /stats document of version 1")
    try:
        variants = {str(name): _proxy_variant(raw, routes) for name, raw in doc["variants"].items()}
        filters = {
            str(name): FilterFigures(
                requests=int(raw["requests"]),
                duration_seconds_sum=float(raw["duration_seconds_sum"]),
                decisions={k: float(v) for k, v in raw["decisions"].items()},
                observed={k: float(v) for k, v in raw["observed_decisions"].items()},
                cpu_seconds_sum=_optional_float(raw.get("cpu_seconds_sum")),
                cost_usd_sum=_optional_float(raw.get("cost_usd_sum")),
                durations=[float(v) for v in raw.get("duration_seconds", ())] or None,
                canary=canary.get(str(name), {}),
            )
            for name, raw in doc["filters"].items()
        }
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SourceError(f"{url}: unexpected /stats document ({exc!r})") from exc
    return Snapshot("proxy", url, variants, filters)


Canaries = dict[str, dict[str, dict[str, float]]]  # filter -> label -> action -> checks


def _add_check(canaries: Canaries, labels: Mapping[str, str], value: float) -> None:
    actions = canaries.setdefault(labels.get("filter", ""), {}).setdefault(
        labels.get("label", ""), {}
    )
    action = labels.get("action", "")
    actions[action] = actions.get(action, 0.0) + value


def _proxy_canary(url: str) -> Canaries:
    """The canary checks since start, from the listener's Prometheus exposition
    (none when it serves /stats alone)."""
    body = _get(url, absent_ok=True)
    text = "" if body is None else body.decode("utf-8", "replace")
    canaries: Canaries = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == f"{CANARY_CHECKS}_total":
                    _add_check(canaries, sample.labels, float(sample.value))
    except ValueError as exc:
        raise SourceError(f"{url}: not a Prometheus exposition ({exc})") from exc
    return canaries


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _proxy_variant(raw: dict[str, Any], routes: Collection[str] | None) -> VariantFigures:
    samples = raw["samples"]
    keep = [routes is None or route in routes for route in samples["route"]]
    every = all(keep)

    def column(name: str) -> list[Any] | None:
        """The kept values of a column (None: this proxy does not record it)."""
        values = samples.get(name)
        if values is None:
            return None
        if len(values) != len(keep):
            raise ValueError(f"column {name} has {len(values)} values, route has {len(keep)}")
        if every:
            return list(values)
        return [v for v, kept in zip(values, keep, strict=True) if kept]

    metrics: dict[str, Figures] = {}
    for metric in METRICS:
        values = [float(v) for v in column(metric) or () if v is not None]
        if values:
            metrics[metric] = values
    cpu = column("filter_cpu_seconds")
    outcomes = column("outcome") or []
    flags = {event: column(event) for event in CAPABILITY_EVENTS if event != "blocked"}
    tokens = column("completion_tokens")
    capability = CapabilityFigures(
        requests=len(outcomes),
        counts={
            "blocked": sum(o == "blocked" for o in outcomes),
            **{e: None if v is None else sum(bool(x) for x in v) for e, v in flags.items()},
        },
        tokens=None if tokens is None else [float(t) for t in tokens if t is not None],
    )
    return VariantFigures(
        sum(keep),
        float(raw["weight"]),
        metrics,
        ablates=None if raw.get("ablates") is None else str(raw["ablates"]),
        filter_cpu=None if cpu is None else [float(v) for v in cpu if v is not None],
        capability=capability,
    )


class _Prometheus:
    def __init__(self, base_url: str, window: str, routes: Collection[str] | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.window = window
        self.selector = f'{{route=~"{"|".join(sorted(routes))}"}}' if routes else ""
        self.at: float | None = None

    def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        params = {"query": expr} | ({"time": f"{self.at:.3f}"} if self.at is not None else {})
        url = f"{self.base_url}/api/v1/query?{urllib.parse.urlencode(params)}"
        doc = _get_json(url)
        try:
            if doc["status"] != "success" or doc["data"]["resultType"] != "vector":
                raise ValueError(f"status {doc['status']!r}")
            rows = [(dict(r["metric"]), float(r["value"][1])) for r in doc["data"]["result"]]
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise SourceError(f"{url}: not a Prometheus instant vector ({exc!r})") from exc
        return [(labels, value if math.isfinite(value) else 0.0) for labels, value in rows]

    def increase(self, by: str, name: str, selector: str | None = None) -> list[Any]:
        where = self.selector if selector is None else selector
        return self.query(f"sum by ({by}) (increase({name}{where}[{self.window}]))")


def read_prometheus(base_url: str, window: str, routes: Collection[str] | None) -> Snapshot:
    """taxmeter's series in the ``window`` (a PromQL duration) ending at the newest scrape."""
    prom = _Prometheus(base_url, window, routes)
    newest = prom.query("max(timestamp(taxmeter_requests_total))")
    # Series gone stale (the proxy stopped long ago): fall back to "now".
    prom.at = newest[0][1] if newest else None

    requests = {
        labels.get("variant", ""): value
        for labels, value in prom.increase("variant", "taxmeter_requests_total")
    }
    histograms: dict[str, dict[str, Buckets]] = {}
    for metric, name in PROMETHEUS_NAMES.items():
        sums = {r.get("variant", ""): v for r, v in prom.increase("variant", f"{name}_sum")}
        rows = prom.increase("variant, le", f"{name}_bucket")
        for variant, buckets in _histograms(rows, sums, prom.base_url).items():
            histograms.setdefault(variant, {})[metric] = buckets
    filters = _filters(prom)
    cpu = prometheus_whole.filter_cpu_means(prom.query, prom.window)
    capability = prometheus_whole.capability_figures(
        prom.query, prom.window, prom.selector, requests
    )
    variants = {
        name: VariantFigures(
            round(requests.get(name, 0.0)),
            None,
            histograms.get(name, {}),
            ablates=prometheus_whole.ablated(name, filters),
            filter_cpu=cpu.get(name),
            capability=capability.get(name),
        )
        for name in sorted({*requests, *histograms})
    }
    return Snapshot("prometheus", prom.base_url, variants, filters, prom.at)


def _histograms(
    rows: Iterable[tuple[dict[str, str], float]],
    sums: dict[str, float],
    url: str,
    key: str = "variant",
) -> dict[str, Buckets]:
    """One histogram per value of the label ``key``, from cumulative bucket counts."""
    cumulative: dict[str, dict[float, float]] = {}
    for labels, value in rows:
        try:
            bound = float(labels["le"])
        except (KeyError, ValueError) as exc:
            raise SourceError(f"{url}: a histogram bucket without a valid le label") from exc
        cumulative.setdefault(labels.get(key, ""), {})[bound] = value
    out = {}
    for name, by_bound in cumulative.items():
        bounds = sorted(by_bound)
        if len(bounds) < 2 or bounds[-1] != math.inf:
            raise SourceError(f"{url}: histogram of {key} {name!r} lacks its +Inf bucket")
        # Each bucket's increase() is extrapolated on its own; like histogram_quantile,
        # force the cumulative counts to be monotonic before taking differences.
        running = 0.0
        counts = []
        for bound in bounds:
            level = max(running, by_bound[bound])
            counts.append(level - running)
            running = level
        if round(running) >= 1:
            out[name] = Buckets(tuple(bounds[:-1]), tuple(counts), sums.get(name, 0.0))
    return out


def _filters(prom: _Prometheus) -> dict[str, FilterFigures]:
    calls = prom.increase("filter, stage", "taxmeter_filter_duration_seconds_count", "")
    seconds = prom.increase("filter", "taxmeter_filter_duration_seconds_sum", "")
    decisions = prom.increase("filter, mode, action", "taxmeter_filter_decisions_total", "")
    cpu = dict(_by_filter(prom.increase("filter", "taxmeter_filter_cpu_seconds_sum", "")))
    usd = dict(_by_filter(prom.increase("filter", "taxmeter_filter_cost_usd_total", "")))
    duration = dict(_by_filter(seconds))
    buckets = prom.increase("filter, le", "taxmeter_filter_duration_seconds_bucket", "")
    durations = _histograms(buckets, duration, prom.base_url, key="filter")
    canaries: Canaries = {}
    for labels, value in prom.increase("filter, label, action", f"{CANARY_CHECKS}_total", ""):
        _add_check(canaries, labels, value)
    # A request meets a filter at up to three stages; the stage it met most
    # often stands for the requests (every request passes the input stage).
    requests: dict[str, float] = {}
    for labels, value in calls:
        name = labels.get("filter", "")
        requests[name] = max(requests.get(name, 0.0), value)
    by_mode: dict[tuple[str, str], dict[str, float]] = {}
    for labels, value in decisions:
        mode = "observe" if labels.get("mode") == "observe" else "enforce"
        actions = by_mode.setdefault((labels.get("filter", ""), mode), {})
        actions[labels.get("action", "")] = actions.get(labels.get("action", ""), 0.0) + value
    names = sorted({*requests, *(name for name, _ in by_mode)})
    return {
        name: FilterFigures(
            round(requests.get(name, 0.0)),
            duration.get(name, 0.0),
            by_mode.get((name, "enforce"), {}),
            by_mode.get((name, "observe"), {}),
            cpu.get(name, 0.0),
            usd.get(name, 0.0),
            durations.get(name),
            canaries.get(name, {}),
        )
        for name in names
    }


def _by_filter(rows: list[tuple[dict[str, str], float]]) -> list[tuple[str, float]]:
    return [(labels.get("filter", ""), value) for labels, value in rows]
