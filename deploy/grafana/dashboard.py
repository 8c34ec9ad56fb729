"""Generate the latency-tax Grafana dashboard: taxmeter-latency-tax.json beside this file.

    python deploy/grafana/dashboard.py          # rewrite the JSON
    python deploy/grafana/dashboard.py --check  # exit 1 if the JSON is stale

The panels read the recording rules of deploy/prometheus/rules where a query
is heavy, and the raw histograms where exemplars (trace ids) should show.
Every query is evaluated against a real Prometheus fed by a real taxmeter in
tests/deploy/test_prometheus_live.py.
"""

# The panels below are data: one PromQL query per line reads better than wrapped.
# ruff: noqa: E501

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("taxmeter-latency-tax.json")
DS = {"type": "prometheus", "uid": "${datasource}"}
RV = 'route=~"$route", variant=~"$variant"'
FV = 'filter=~"$filter", variant=~"$variant"'
WIDTH = 24
# The outcomes shown apart from the tax ratio: blocked by a filter, refused as the client's fault.
UNANSWERED = "blocked|client_error"

Panel = dict[str, Any]


def query(expr: str, legend: str = "", *, exemplar: bool = False, table: bool = False) -> Panel:
    target: Panel = {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto"}
    if exemplar:
        target["exemplar"] = True
    if table:
        target.update(format="table", instant=True, range=False)
    return target


def panel(kind: str, title: str, description: str, targets: list[Panel], **options: Any) -> Panel:
    unit = options.pop("unit", "s")
    overrides = options.pop("overrides", [])
    built: Panel = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": overrides},
        "targets": [{**t, "refId": chr(ord("A") + i)} for i, t in enumerate(targets)],
    }
    built.update(options)
    return built


def timeseries(
    title: str,
    description: str,
    targets: list[Panel],
    unit: str = "s",
    overrides: list[Panel] | None = None,
) -> Panel:
    return panel(
        "timeseries", title, description, targets, unit=unit, overrides=overrides or [],
        options={"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]},
                 "tooltip": {"mode": "multi", "sort": "desc"}},
    )  # fmt: skip


def threshold_lines(legend_regex: str) -> list[Panel]:
    """Series whose legend matches drawn as red dashed lines: thresholds, not data."""
    return [{"matcher": {"id": "byRegexp", "options": legend_regex}, "properties": [
        {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}},
        {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
        {"id": "custom.fillOpacity", "value": 0},
    ]}]  # fmt: skip


def per_1000_requests(counter: str) -> str:
    """A filter's ``counter`` per 1,000 requests it judged (at its busiest stage)."""
    return (f"1000 * sum by (filter) (rate({counter}{{{FV}}}[$__rate_interval])) / "
            f"max by (filter) (sum by (filter, stage) (rate(taxmeter_filter_duration_seconds_count{{{FV}}}[$__rate_interval])))")  # fmt: skip


def change_marks() -> list[Panel]:
    """Annotations where a new config (its sha256) or a new release (its version) appeared."""

    def appeared(metric: str, label: str, name: str, color: str) -> Panel:
        return {
            "name": name, "datasource": DS, "enable": True, "iconColor": color,
            "expr": f"max by ({label}) ({metric}) unless max by ({label}) ({metric} offset 1m)",
            "step": "30s", "titleFormat": f"{name}: {{{{{label}}}}}", "tagKeys": label,
        }  # fmt: skip

    return [
        appeared("taxmeter_config_info", "config_sha256", "Config change", "orange"),
        appeared("taxmeter_build_info", "version", "Release", "purple"),
    ]


def quantiles(recorded: str, selector: str) -> Panel:
    """A recorded quantile series, one line per label set and quantile."""
    return query(f"{recorded}{{{selector}}}", "")


def rows() -> list[tuple[str, list[tuple[int, Panel]]]]:
    """(row title, [(panel width, panel)])."""
    tax = "route_variant:taxmeter_latency_tax_seconds"
    return [
        ("Latency tax", [
            (12, timeseries(
                "Latency tax p50 / p95 / p99",
                "Time the client waited that the model server did not cause (total - upstream). "
                "The p99 line carries exemplars: click a dot to open the trace.",
                [quantiles(f"{tax}:quantile_rate1m", RV) | {"legendFormat": "{{variant}} {{route}} p{{quantile}}"},
                 query(f"histogram_quantile(0.99, sum by (le) (rate(taxmeter_latency_tax_seconds_bucket{{{RV}}}[$__rate_interval])))",
                       "p99 all (with traces)", exemplar=True)])),
            (8, timeseries(
                "Latency tax ratio",
                "Tax as a share of total request time over the requests answered (outcome ok): the mean, "
                "and the p95 of single requests. Blocked and refused requests are not in it (they are all "
                "tax): see the panels below.",
                [query(f"route_variant:taxmeter_latency_tax_ratio:mean_rate1m{{{RV}}}", "{{variant}} {{route}} mean"),
                 query(f"route_variant:taxmeter_latency_tax_ratio:quantile_rate1m{{{RV}}}", "{{variant}} {{route}} p{{quantile}}")],
                unit="percentunit")),
            (4, panel(
                "stat", "Tax share of all request time",
                "Summed tax over summed total time, over the dashboard's rate interval.",
                [query(f"sum(rate(taxmeter_latency_tax_seconds_sum{{{RV}}}[$__rate_interval])) / "
                       f"sum(rate(taxmeter_request_duration_seconds_sum{{{RV}}}[$__rate_interval]))")],
                unit="percentunit")),
            (12, timeseries(
                "Blocked and refused requests",
                "The requests the tax ratio leaves out: each outcome's share of a route's requests, "
                "blocked (by a filter) and client_error (a 4xx: malformed, too large, or the model server's).",
                [query(f'route_variant_outcome:taxmeter_requests:ratio_rate1m{{{RV}, outcome=~"{UNANSWERED}"}}',
                       "{{variant}} {{route}} {{outcome}}")],
                unit="percentunit")),
            (12, timeseries(
                "Blocked and refused requests: latency p95",
                "How long the blocked and refused requests took, request received to last byte sent: "
                "all of it is the proxy's and its filters'.",
                [query(f'route_variant_outcome:taxmeter_unanswered_duration_seconds:quantile_rate1m{{{RV}, outcome=~"{UNANSWERED}"}}',
                       "{{variant}} {{route}} {{outcome}} p{{quantile}}")])),
        ]),
        ("Filters", [
            (12, timeseries(
                "Filter cost per request p50 / p95 / p99",
                "Time in one filter at one stage for one request, summed over its calls. "
                "Red dashes: each filter's p99 budget (budget_ms).",
                [quantiles("filter_stage_variant:taxmeter_filter_duration_seconds:quantile_rate1m", FV)
                 | {"legendFormat": "{{filter}} {{stage}} {{variant}} p{{quantile}}"},
                 query('max by (filter) (taxmeter_filter_budget_seconds{filter=~"$filter"})', "{{filter}} budget")],
                overrides=threshold_lines(".* budget$"))),
            (12, panel(
                "heatmap", "Filter cost distribution",
                "Per-request filter time, bucketed; exemplar dots open the trace.",
                [query(f"sum by (le) (increase(taxmeter_filter_duration_seconds_bucket{{{FV}}}[$__rate_interval]))",
                       "{{le}}", exemplar=True) | {"format": "heatmap"}],
                options={"calculate": False, "yAxis": {"unit": "s"}, "exemplars": {"color": "rgba(255,0,255,0.7)"},
                         "cellGap": 1, "color": {"mode": "scheme", "scheme": "Oranges"}})),
            (12, timeseries(
                "Block / redact / error rate per filter",
                "Each verdict's share of a filter's calls (mode=observe: what it would have done).",
                [query('filter_stage_mode_action:taxmeter_filter_decisions:ratio_rate1m{filter=~"$filter", action!="allow"}',
                       "{{filter}} {{stage}} {{mode}} {{action}}")], unit="percentunit")),
            (12, timeseries(
                "Stream holdback per filter p95",
                "Streamed responses: how long text waited for a stream filter before it could be sent.",
                [query(f"histogram_quantile(0.95, sum by (le, filter, variant) (rate(taxmeter_stream_holdback_seconds_bucket{{{FV}}}[$__rate_interval])))",
                       "{{filter}} {{variant}}")])),
            (12, timeseries(
                "Filter CPU per 1,000 requests",
                "CPU time of each filter's own code (thread CPU clock), per 1,000 requests it judged.",
                [query(per_1000_requests("taxmeter_filter_cpu_seconds_sum"), "{{filter}}")])),
            (12, timeseries(
                "Filter dollars per 1,000 requests",
                "Calls at cost_per_call_usd plus CPU at cpu_usd_per_core_hour, per 1,000 requests it judged.",
                [query(per_1000_requests("taxmeter_filter_cost_usd_total"), "{{filter}}")],
                unit="currencyUSD")),
        ]),
        ("What each filter costs, beside what it catches (canaries)", [
            (12, panel(
                "table", "Tax beside catch and false positives",
                "Per filter and variant: p99 time per request on live traffic (the larger of its stages), "
                "and over the last hour of canaries (the config's canary section) the share of attack "
                "canaries it blocked or redacted and the share of benign ones.",
                [query(f'max by (filter, variant) (filter_stage_variant:taxmeter_filter_duration_seconds:quantile_rate1m{{quantile="0.99", {FV}}})', table=True),
                 query(f"filter_variant:taxmeter_canary_catch:ratio_rate1h{{{FV}}}", table=True),
                 query(f"filter_variant:taxmeter_canary_false_positive:ratio_rate1h{{{FV}}}", table=True)],
                unit="percentunit",
                transformations=[
                    {"id": "merge", "options": {}},
                    {"id": "organize", "options": {"excludeByName": {"Time": True}, "renameByName": {
                        "Value #A": "tax p99", "Value #B": "catch rate", "Value #C": "false positives"}}},
                ])
             | {"fieldConfig": {"defaults": {"unit": "percentunit"}, "overrides": [
                 {"matcher": {"id": "byName", "options": "tax p99"}, "properties": [{"id": "unit", "value": "s"}]}]}}),
            (12, timeseries(
                "Canary catch and false-positive rate",
                "Over the last hour of canaries: the share of attack canaries each filter flagged (catch), "
                "and of benign ones (false positives). Alerts: TaxmeterCanaryCatchRateDrop, TaxmeterCanaryFalsePositiveRise.",
                [query(f"filter_variant:taxmeter_canary_catch:ratio_rate1h{{{FV}}}", "{{filter}} {{variant}} catch"),
                 query(f"filter_variant:taxmeter_canary_false_positive:ratio_rate1h{{{FV}}}", "{{filter}} {{variant}} false positives")],
                unit="percentunit")),
        ]),
        ("Time to first token", [
            (12, timeseries(
                "TTFT against upstream TTFT (p95)",
                "Streamed responses: first content to the client, beside first content from the model server.",
                [query(f"route_variant:taxmeter_time_to_first_token_seconds:quantile_rate1m{{{RV}}}", "client {{variant}} {{route}}"),
                 query(f"route_variant:taxmeter_upstream_time_to_first_token_seconds:quantile_rate1m{{{RV}}}", "upstream {{variant}} {{route}}")])),
            (12, timeseries(
                "TTFT tax p95 / p99",
                "What the proxy and its filters added to the time to first token.",
                [query(f"histogram_quantile(0.95, sum by (le, variant) (rate(taxmeter_ttft_tax_seconds_bucket{{{RV}}}[$__rate_interval])))", "{{variant}} p95"),
                 query(f"histogram_quantile(0.99, sum by (le, variant) (rate(taxmeter_ttft_tax_seconds_bucket{{{RV}}}[$__rate_interval])))", "{{variant}} p99")])),
        ]),
        ("Variants (A/B)", [
            (12, timeseries(
                "Latency tax by variant (p95)",
                "The A/B arms side by side over time.",
                [query(f"histogram_quantile(0.95, sum by (le, variant) ({tax}_bucket:rate1m{{{RV}}}))", "{{variant}}")])),
            (12, panel(
                "table", "Variants side by side",
                "Now, per variant: tax percentiles, mean tax ratio and request rate.",
                [query(f"histogram_quantile({q}, sum by (le, variant) ({tax}_bucket:rate1m{{{RV}}}))", table=True)
                 for q in ("0.5", "0.95", "0.99")]
                + [query(f"avg by (variant) (route_variant:taxmeter_latency_tax_ratio:mean_rate1m{{{RV}}})", table=True),
                   query(f"sum by (variant) (route_variant_outcome:taxmeter_requests:rate1m{{{RV}}})", table=True)],
                transformations=[
                    {"id": "merge", "options": {}},
                    {"id": "organize", "options": {"excludeByName": {"Time": True}, "renameByName": {
                        "Value #A": "tax p50", "Value #B": "tax p95", "Value #C": "tax p99",
                        "Value #D": "tax ratio", "Value #E": "req/s"}}},
                ])),
        ]),
        ("Upstream and proxy", [
            (8, timeseries(
                "Total against upstream latency (p95)",
                "Request received to last byte sent, beside request sent upstream to last upstream byte.",
                [query(f"route_variant:taxmeter_request_duration_seconds:quantile_rate1m{{{RV}}}", "total {{variant}} {{route}}"),
                 query(f"route_variant:taxmeter_upstream_duration_seconds:quantile_rate1m{{{RV}}}", "upstream {{variant}} {{route}}")])),
            (8, timeseries(
                "Upstream errors",
                "Requests answered 502/504: model server unreachable, reset, malformed or timed out.",
                [query('route:taxmeter_upstream_errors:ratio_rate5m{route=~"$route"}', "{{route}} share (5m)"),
                 query(f'sum by (route, outcome) (route_variant_outcome:taxmeter_requests:rate1m{{{RV}, outcome=~"upstream_error|timeout"}})',
                       "{{route}} {{outcome}} /s")], unit="short")),
            (8, timeseries(
                "Proxy overhead p99",
                "Latency tax not spent in filters on the critical path: parsing, copying, scheduling.",
                [query(f"route_variant:taxmeter_proxy_overhead_seconds:quantile_rate1m{{{RV}}}", "{{variant}} {{route}}")])),
            (8, timeseries(
                "Requests per second by outcome", "",
                [query(f"sum by (outcome) (route_variant_outcome:taxmeter_requests:rate1m{{{RV}}})", "{{outcome}}")],
                unit="reqps")),
            (8, timeseries(
                "In-flight requests", "Requests being served, summed over instances.",
                [query("sum(taxmeter_inflight_requests)", "in flight")], unit="short")),
            (8, timeseries(
                "Event-loop lag p99",
                "How late the event loop ran a 5 ms timer: a filter blocking the loop, or saturation.",
                [query("histogram_quantile(0.99, sum by (le) (rate(taxmeter_event_loop_lag_seconds_bucket[$__rate_interval])))", "p99")])),
            (8, timeseries(
                "Garbage-collector pauses p99",
                "Python's collector stops the proxy's process; every request in flight waits. By generation (0: young, 2: full).",
                [query("histogram_quantile(0.99, sum by (le, generation) (rate(taxmeter_gc_pause_seconds_bucket[$__rate_interval])))",
                       "generation {{generation}}")])),
        ]),
    ]  # fmt: skip


def variable(name: str, metric: str) -> Panel:
    return {
        "name": name,
        "label": name,
        "type": "query",
        "datasource": DS,
        "query": {"query": f"label_values({metric}, {name})", "refId": name},
        "definition": f"label_values({metric}, {name})",
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"text": "All", "value": "$__all"},
        "sort": 1,
    }


def dashboard() -> Panel:
    panels: list[Panel] = []
    y = 0
    next_id = 1
    for title, members in rows():
        panels.append({"type": "row", "title": title, "id": next_id, "collapsed": False,
                       "gridPos": {"h": 1, "w": WIDTH, "x": 0, "y": y}, "panels": []})  # fmt: skip
        next_id += 1
        y += 1
        x = 0
        for width, member in members:
            if x + width > WIDTH:
                x, y = 0, y + 8
            panels.append(member | {"id": next_id, "gridPos": {"h": 8, "w": width, "x": x, "y": y}})
            next_id += 1
            x += width
        y += 8
    return {
        "uid": "taxmeter-latency-tax",
        "title": "taxmeter: latency tax",
        "description": "What the safety filters and the proxy cost, per filter, route and variant.",
        "tags": ["taxmeter", "llm", "latency"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "10s",
        "schemaVersion": 39,
        "time": {"from": "now-30m", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {"text": "Prometheus", "value": "prometheus"},
                },
                variable("variant", "taxmeter_variant_assignments_total"),
                variable("route", "taxmeter_requests_total"),
                variable("filter", "taxmeter_filter_decisions_total"),
            ]
        },
        "annotations": {"list": change_marks()},
        "links": [],
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, sort_keys=False) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if OUT.read_text() != text:
            print(f"{OUT.name} is stale: run python deploy/grafana/dashboard.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
