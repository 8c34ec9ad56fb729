"""What Prometheus holds for the report's marginal and capability tables.

- Filter CPU per variant: ``taxmeter_filter_cpu_seconds`` is one histogram
  per (filter, stage), so a request's total over its filters is not in it,
  only their sum: the mean per request is that sum over the variant's
  requests (every route: the filter series carry no route label), and its
  percentiles are not known.
- Capability: ``taxmeter_requests_total{outcome="blocked"}``,
  ``taxmeter_capability_events_total{event}`` and
  ``taxmeter_completion_tokens_total``, on the report's routes.
- Ablation variants by name: ``without_<filter>`` of a filter that ran.

Each query goes through the caller's ``query`` (evaluated where the others
are), so this module knows PromQL and nothing of HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

from proxy.commands.report.capability import CapabilityFigures
from proxy.config.ablation import PREFIX

Rows = list[tuple[dict[str, str], float]]
Query = Callable[[str], Rows]


def _by_variant(rows: Iterable[tuple[dict[str, str], float]]) -> dict[str, float]:
    return {labels.get("variant", ""): value for labels, value in rows}


def _where(route_selector: str, *matchers: str) -> str:
    inner = ", ".join(m for m in (route_selector.strip("{}"), *matchers) if m)
    return f"{{{inner}}}" if inner else ""


def filter_cpu_means(query: Query, window: str) -> dict[str, float]:
    """Each variant's mean CPU in filters per request (every route)."""
    cpu = _by_variant(
        query(f"sum by (variant) (increase(taxmeter_filter_cpu_seconds_sum[{window}]))")
    )
    requests = _by_variant(query(f"sum by (variant) (increase(taxmeter_requests_total[{window}]))"))
    return {name: cpu.get(name, 0.0) / n for name, n in requests.items() if round(n) >= 1}


def capability_figures(
    query: Query, window: str, route_selector: str, requests: dict[str, float]
) -> dict[str, CapabilityFigures]:
    """Each variant's capability counts on the routes of ``route_selector``."""
    refused = _where(route_selector, 'outcome="blocked"')
    blocked = _by_variant(
        query(f"sum by (variant) (increase(taxmeter_requests_total{refused}[{window}]))")
    )
    events: dict[str, dict[str, float]] = {}
    for labels, value in query(
        "sum by (variant, event) (increase(taxmeter_capability_events_total"
        f"{route_selector}[{window}]))"
    ):
        events.setdefault(labels.get("variant", ""), {})[labels.get("event", "")] = value
    tokens = _by_variant(
        query(
            "sum by (variant) (increase(taxmeter_completion_tokens_total"
            f"{route_selector}[{window}]))"
        )
    )
    out = {}
    for name, n in requests.items():
        recorded = events.get(name)  # none at all: a proxy that does not count them

        def count(event: str, recorded: dict[str, float] | None = recorded) -> int | None:
            return None if recorded is None else round(recorded.get(event, 0.0))

        known = count("usage_known")
        out[name] = CapabilityFigures(
            requests=round(n),
            counts={
                "blocked": round(blocked.get(name, 0.0)),
                "redacted": count("redacted"),
                "content_filter": count("content_filter"),
            },
            tokens_total=None if not known else (tokens.get(name, 0.0), known),
        )
    return out


def ablated(variant: str, filters: Collection[str]) -> str | None:
    """The filter an ablation variant disables, known from its name only."""
    if variant.startswith(PREFIX) and variant[len(PREFIX) :] in filters:
        return variant[len(PREFIX) :]
    return None
