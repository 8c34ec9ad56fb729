"""Every dashboard and rule query returns data on a real Prometheus fed by a real taxmeter.

`taxmeter serve` (with the simulated model server) gets the compose stack's
mixed traffic from its load script, plus requests that time out upstream; a
real Prometheus scrapes it every second with the deploy rules loaded. Then
each PromQL expression of the Grafana dashboard, of the recording rules and
of the alert rules (as `bool` comparisons) must evaluate without error and
return at least one finite sample.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.deploy.live import (
    PromQL,
    alert_as_bool,
    grafana_to_promql,
    load,
    mock_upstream,
    prometheus,
    taxmeter,
)
from tests.deploy.manifests import DASHBOARD, RULE_FILES, alert_rules, recording_rules
from tests.deploy.promtool import prometheus_binary

# Several filters at every stage, a filter that always times out (observed,
# so it never changes an answer), two variants, a 1 s upstream read timeout, and
# canaries.
CONFIG: dict[str, Any] = yaml.safe_load("""
upstream: {read_timeout_s: 1}
cpu_usd_per_core_hour: 0.05
filters:
  - {name: denylist, type: denylist, stages: [input], cost_per_call_usd: 0.0001,
     params: {words: [ignore previous instructions, disregard your system prompt]}}
  - {name: pii, type: pii, stages: [input, output], params: {action: redact}, budget_ms: 10}
  - {name: pii_stream, type: pii, stages: [stream],
     stream: {every_tokens: 1, window_chars: 256, holdback_chars: 32}}
  - {name: slow_check, type: synthetic, stages: [input], mode: observe,
     timeout_ms: 5, params: {wall_ms: 20}}
variants:
  default: {weight: 70}
  no_pii: {weight: 30, disable: [pii, pii_stream]}
canary: {interval_s: 0.05}  # the packaged prompt set, fast enough to fill 1h windows
""")
DEADLINE_S = 45


def dashboard_queries() -> dict[str, str]:
    """{panel title / refId: PromQL} for every target of every panel, and every annotation."""
    document = json.loads(DASHBOARD.read_text())
    return {
        f"{panel['title']} / {target['refId']}": grafana_to_promql(target["expr"])
        for panel in document["panels"]
        for target in panel.get("targets", [])
    } | {
        f"annotation {mark['name']}": grafana_to_promql(mark["expr"])
        for mark in document["annotations"]["list"]
    }


def rule_queries() -> dict[str, str]:
    queries = {f"record {r['record']}": r["expr"] for r in recording_rules()}
    queries |= {f"record {r['record']} (series)": r["record"] for r in recording_rules()}
    queries |= {f"alert {r['alert']}": alert_as_bool(r["expr"]) for r in alert_rules()}
    return queries


async def _time_out_upstream(proxy: str) -> None:
    """A few requests whose model answers after the proxy's 1 s read timeout: 504s."""
    body = {"model": "mock-model", "messages": [{"role": "user", "content": "slow"}]}
    async with aiohttp.ClientSession(headers={"x-mock-ttft-ms": "3000"}) as session:
        for _ in range(3):
            async with session.post(f"{proxy}/v1/chat/completions", json=body) as response:
                assert response.status == 504


async def _until_every_query_has_data(promql: PromQL, queries: dict[str, str]) -> list[str]:
    """Re-evaluate until each query has a finite sample; the ones that never do."""
    missing = dict(queries)
    end = time.monotonic() + DEADLINE_S
    while missing and time.monotonic() < end:
        for name, expr in list(missing.items()):
            if await promql.finite_samples(expr) > 0:
                del missing[name]
        await asyncio.sleep(1)
    return [f"{name}: {expr}" for name, expr in missing.items()]


async def test_dashboard_and_rule_queries_return_data(tmp_path: Path) -> None:
    binary = prometheus_binary("prometheus")
    queries = dashboard_queries() | rule_queries()
    assert len(queries) > 40
    async with (
        mock_upstream() as model,
        taxmeter(CONFIG | {"upstream": {**CONFIG["upstream"], "url": model}}, tmp_path) as where,
        prometheus(binary, where["metrics"].split("/")[2], RULE_FILES, tmp_path) as prom,
        load(where["proxy"], seconds=DEADLINE_S) as traffic,
        aiohttp.ClientSession() as session,
    ):
        await _time_out_upstream(where["proxy"])
        promql = PromQL(session, prom)
        missing = await _until_every_query_has_data(promql, queries)
        assert not missing, "no data:\n" + "\n".join(missing)

        # The template variables' label_values() queries list values.
        document = json.loads(DASHBOARD.read_text())
        for variable in document["templating"]["list"]:
            if variable["type"] == "query":
                metric = variable["definition"].split("(")[1].split(",")[0]
                values = await promql.get(
                    f"/api/v1/label/{variable['name']}/values", **{"match[]": metric}
                )
                assert values, variable["name"]
        assert {"default", "no_pii"} <= set(
            await promql.get(
                "/api/v1/label/variant/values", **{"match[]": "taxmeter_requests_total"}
            )
        )

        # Every rule evaluates without error inside Prometheus itself.
        groups = (await promql.get("/api/v1/rules"))["groups"]
        unhealthy = [
            (rule["name"], rule.get("lastError"))
            for group in groups
            for rule in group["rules"]
            if rule["health"] != "ok"
        ]
        assert not unhealthy
        assert sum(len(g["rules"]) for g in groups) == len(recording_rules()) + len(alert_rules())

        # Exemplars (trace ids) reach Prometheus, for the dashboard's trace links.
        now = time.time()
        exemplars = await promql.get(
            "/api/v1/query_exemplars",
            query="taxmeter_latency_tax_seconds_bucket",
            start=str(now - 120),
            end=str(now),
        )
        assert any("trace_id" in e["labels"] for series in exemplars for e in series["exemplars"])
        traffic.terminate()
