"""deploy/grafana: the committed dashboard is the generated one, with the views asked for.

Whether its queries return data is tested live (test_prometheus_live.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.deploy.manifests import DASHBOARD, GRAFANA


def _dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return document


def _exprs() -> list[str]:
    return [t["expr"] for p in _dashboard()["panels"] for t in p.get("targets", [])]


def test_committed_json_is_the_generated_one() -> None:
    checked = subprocess.run(
        [sys.executable, str(GRAFANA / "dashboard.py"), "--check"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr


def test_template_variables_are_used() -> None:
    names = {v["name"] for v in _dashboard()["templating"]["list"]}
    assert names == {"datasource", "variant", "route", "filter"}
    joined = "\n".join(_exprs())
    for name in ("variant", "route", "filter"):
        assert f"${name}" in joined, name
    for panel in _dashboard()["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_the_views_the_issue_asks_for_are_there() -> None:
    joined = "\n".join(_exprs())
    for metric in (
        "taxmeter_latency_tax_seconds", "taxmeter_latency_tax_ratio",
        "taxmeter_filter_duration_seconds", "taxmeter_filter_decisions",
        "taxmeter_time_to_first_token_seconds", "taxmeter_upstream_time_to_first_token_seconds",
        "taxmeter_upstream_duration_seconds", "taxmeter_upstream_errors",
        "taxmeter_proxy_overhead_seconds", "taxmeter_inflight_requests",
    ):  # fmt: skip
        assert metric in joined, metric
    kinds = {p["type"] for p in _dashboard()["panels"]}
    assert {"heatmap", "table", "timeseries"} <= kinds
    exemplar_exprs = [
        t["expr"] for p in _dashboard()["panels"] for t in p.get("targets", []) if t.get("exemplar")
    ]
    # Exemplars live on raw histogram buckets only, not on recorded series.
    assert exemplar_exprs
    assert all("_bucket{" in e and ":" not in e.split("_bucket{")[0] for e in exemplar_exprs)


def test_panels_do_not_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in _dashboard()["panels"]:
        grid = panel["gridPos"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, panel["title"]
        assert grid["x"] + grid["w"] <= 24
        taken |= cells


def test_the_canary_row_shows_each_filters_tax_beside_its_catch() -> None:
    panels = _dashboard()["panels"]
    (table,) = [p for p in panels if p["title"] == "Tax beside catch and false positives"]
    exprs = "\n".join(t["expr"] for t in table["targets"])
    for recorded in (
        "taxmeter_filter_duration_seconds:quantile_rate1m",
        "filter_variant:taxmeter_canary_catch:ratio_rate1h",
        "filter_variant:taxmeter_canary_false_positive:ratio_rate1h",
    ):
        assert recorded in exprs, recorded


def test_budgets_are_threshold_lines_and_config_or_release_changes_are_marked() -> None:
    [latency] = [p for p in _dashboard()["panels"]
                 if p["title"] == "Filter cost per request p50 / p95 / p99"]  # fmt: skip
    [budget] = [t for t in latency["targets"] if "taxmeter_filter_budget_seconds" in t["expr"]]
    [override] = latency["fieldConfig"]["overrides"]
    assert override["matcher"] == {"id": "byRegexp", "options": ".* budget$"}
    assert budget["legendFormat"].endswith(" budget")
    assert {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}} in override[
        "properties"
    ]
    marks = {a["name"]: a for a in _dashboard()["annotations"]["list"]}
    assert "taxmeter_config_info" in marks["Config change"]["expr"]
    assert "taxmeter_build_info" in marks["Release"]["expr"]
    for mark in marks.values():
        assert mark["datasource"]["uid"] == "${datasource}"
    joined = "\n".join(_exprs())
    assert "taxmeter_filter_cost_usd_total" in joined
    assert "taxmeter_filter_cpu_seconds_sum" in joined


def test_blocked_and_refused_requests_are_shown_apart_from_the_tax_ratio() -> None:
    panels = {p["title"]: p for p in _dashboard()["panels"]}
    assert "answered (outcome ok)" in panels["Latency tax ratio"]["description"]
    [share] = panels["Blocked and refused requests"]["targets"]
    [latency] = panels["Blocked and refused requests: latency p95"]["targets"]
    assert share["expr"].startswith("route_variant_outcome:taxmeter_requests:ratio_rate1m{")
    assert latency["expr"].startswith(
        "route_variant_outcome:taxmeter_unanswered_duration_seconds:quantile_rate1m{"
    )
    for target in (share, latency):
        assert 'outcome=~"blocked|client_error"' in target["expr"]
