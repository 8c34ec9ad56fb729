"""The metrics listener: valid exposition, bounded labels, health and readiness."""

from __future__ import annotations

import asyncio
import gc
import os
import shutil

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from proxy.measure.config_gauges import build_version
from proxy.measure.heap import GcPauses, freeze_startup_heap
from proxy.measure.metrics import CAPABILITY_EVENTS, OVERHEAD_PARTS
from tests.loopback import ProxyFactory, post_json

DESIGN_METRICS = {
    "taxmeter_requests": "counter",
    "taxmeter_request_duration_seconds": "histogram",
    "taxmeter_upstream_duration_seconds": "histogram",
    "taxmeter_latency_tax_seconds": "histogram",
    "taxmeter_latency_tax_ratio": "histogram",
    "taxmeter_proxy_overhead_seconds": "histogram",
    "taxmeter_filter_duration_seconds": "histogram",
    "taxmeter_filter_decisions": "counter",
    "taxmeter_time_to_first_token_seconds": "histogram",
    "taxmeter_upstream_time_to_first_token_seconds": "histogram",
    "taxmeter_ttft_tax_seconds": "histogram",
    "taxmeter_inflight_requests": "gauge",
    "taxmeter_completion_tokens": "counter",
    "taxmeter_capability_events": "counter",
    "taxmeter_filter_cost_usd": "counter",
    "taxmeter_filter_budget_seconds": "gauge",
    "taxmeter_config_info": "gauge",
    "taxmeter_build_info": "gauge",
}
ROUTES = ("chat_completions", "completions", "embeddings", "responses", "messages", "other")
CHAIN = {"filters": [{"name": "pii", "type": "pii", "budget_ms": 10}]}


async def scrape(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as response:
        assert response.status == 200
        return await response.text()


async def drive_traffic(url: str) -> None:
    """Requests whose content tries to mint label values: odd paths, models, headers."""
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings",
                 "/v1/models", "/evil/../../etc", "/v1/chat/completions/x%20y"):  # fmt: skip
        body = {
            "model": f"model-{path}",
            "messages": [{"role": "user", "content": "hi a@b.org"}],
            "prompt": "hello",
            "input": "x",
            "stream": path.endswith("completions"),
        }
        await post_json(f"{url}{path}", body, {"X-Taxmeter-Variant": "attacker", "X-User": "u1"})


async def test_exposition_has_every_design_metric_and_passes_promtool(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy(CHAIN)
    await drive_traffic(proxy.url)
    text = await scrape(proxy.metrics_url)
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    for name, kind in DESIGN_METRICS.items():
        assert families.get(name) == kind, name

    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing; .ci/run installs Debian's prometheus package")
        pytest.skip("promtool not installed (Debian package prometheus)")
    checked = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await checked.communicate(text.encode())
    assert checked.returncode == 0, output.decode()


async def test_label_values_come_only_from_fixed_sets_and_config(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy(CHAIN)
    await drive_traffic(proxy.url)
    allowed = {
        "route": set(ROUTES),
        "variant": {"default"},
        "outcome": {
            "ok",
            "blocked",
            "upstream_error",
            "timeout",
            "client_error",
            "client_disconnect",
            "internal_error",
        },
        "filter": {"pii"},
        "stage": {"input", "output", "stream"},
        "mode": {"enforce", "observe"},
        "action": {"allow", "block", "redact", "error", "timeout"},
        "reason": {"concurrency", "client_connections", "header_timeout", "body_timeout"},
        "generation": {"0", "1", "2"},
        "part": set(OVERHEAD_PARTS),
        "event": set(CAPABILITY_EVENTS),
        "config_sha256": {"none"},  # built in code; a file's hash otherwise
        "version": {build_version()},
    }
    text = await scrape(proxy.metrics_url)
    seen_routes = set()
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("taxmeter_"):
            continue
        for sample in family.samples:
            for label, value in sample.labels.items():
                if label in ("le",):
                    continue
                assert label in allowed, (sample.name, label)
                assert value in allowed[label], (sample.name, label, value)
                if label == "route":
                    seen_routes.add(value)
    # The odd paths were counted, under route="other" (the mock answers them 404/405);
    # a POST to /v1/chat/completions/{id} updates a stored answer and hands it back,
    # so it is judged (on output), under chat_completions.
    assert proxy.value("taxmeter_requests_total", route="other", variant="default",
                       outcome="client_error") == 2  # fmt: skip
    assert seen_routes == allowed["route"]


async def test_buckets_resolve_sub_millisecond_to_minutes(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy(CHAIN)
    await post_json(f"{proxy.url}/v1/models", b"")
    text = await scrape(proxy.metrics_url)
    assert (
        'taxmeter_latency_tax_seconds_bucket{le="0.0001",route="other",variant="default"}' in text
    )
    assert 'le="300.0",route="other"' in text


async def test_healthz_and_readyz(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{proxy.metrics_url}/healthz") as response:
            assert response.status == 200
        async with session.get(f"{proxy.metrics_url}/readyz") as response:
            assert response.status == 200
        proxy.readiness.ready = False  # as on shutdown
        async with session.get(f"{proxy.metrics_url}/readyz") as response:
            assert response.status == 503


async def test_inflight_gauge_returns_to_zero(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy(CHAIN)
    await drive_traffic(proxy.url)
    assert proxy.value("taxmeter_inflight_requests") == 0


async def test_with_metrics_off_nothing_is_recorded(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy({"telemetry": {"metrics": False}, **CHAIN})
    status, headers, _ = await post_json(
        f"{proxy.url}/v1/chat/completions",
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert status == 200
    assert "filter-pii" in headers["Server-Timing"]  # the timeline still runs
    assert proxy.value("taxmeter_requests_total", route="chat_completions", variant="default",
                       outcome="ok") == 0  # fmt: skip
    assert proxy.apps.stats.snapshot({})["variants"] == {}


async def test_a_filter_that_blocks_the_loop_shows_as_loop_lag(start_proxy: ProxyFactory) -> None:
    blocking = {"name": "hog", "type": "synthetic", "stages": ["input"],
                "params": {"cpu_ms": 250}, "timeout_ms": 1000}  # fmt: skip
    proxy = await start_proxy({"filters": [blocking]})
    await asyncio.sleep(0.25)  # a few wake-ups on an idle loop first

    def late(over: str) -> float:
        total = proxy.value("taxmeter_event_loop_lag_seconds_count")
        return total - proxy.value("taxmeter_event_loop_lag_seconds_bucket", le=over)

    assert late("0.1") == 0
    status, _, _ = await post_json(
        f"{proxy.url}/v1/chat/completions",
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert status == 200
    await asyncio.sleep(0.15)
    assert late("0.1") >= 1  # one wake-up came more than 100 ms late


async def test_gc_pauses_are_observed_by_generation() -> None:
    registry = CollectorRegistry()
    pauses = GcPauses(registry)
    pauses.FLUSH_EVERY_S = 0.01
    pauses.start()
    try:
        gc.collect(0)
        gc.collect()
        await asyncio.sleep(0.05)  # flushed from the loop, not from the collector
        assert (
            registry.get_sample_value("taxmeter_gc_pause_seconds_count", {"generation": "2"}) == 1
        )
    finally:
        pauses.stop()
    gc.collect()  # after stop: not observed
    for generation in ("0", "2"):
        count = registry.get_sample_value(
            "taxmeter_gc_pause_seconds_count", {"generation": generation}
        )
        assert count is not None
        assert count >= 1
    full = registry.get_sample_value("taxmeter_gc_pause_seconds_count", {"generation": "2"})
    assert full == 1


def test_the_startup_heap_is_frozen_and_the_gauge_says_so() -> None:
    registry = CollectorRegistry()
    GcPauses(registry)
    try:
        freeze_startup_heap()
        frozen = registry.get_sample_value("taxmeter_gc_frozen_objects")
        assert frozen is not None
        assert frozen > 1000
    finally:
        gc.unfreeze()
    assert registry.get_sample_value("taxmeter_gc_frozen_objects") == 0
