"""What filters cost in dollars: calls at their price plus CPU at the core-hour rate."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.loopback import ProxyFactory, RunningProxy, post_json

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
# $3600 a core-hour is $1 a CPU second: the CPU part is as large as the price part.
RATE_PER_CPU_SECOND = 1.0
MONEY = {
    "cpu_usd_per_core_hour": 3600 * RATE_PER_CPU_SECOND,
    "filters": [
        # Spins 5 ms of CPU on the loop per call, and is a paid API at $0.002 a call.
        {"name": "spinny", "type": "synthetic", "stages": ["input"], "timeout_ms": 2000,
         "cost_per_call_usd": 0.002, "params": {"cpu_ms": 5}},
        # Judges every streamed token: many calls per request, each one priced.
        {"name": "streamy", "type": "synthetic", "stages": ["stream"],
         "cost_per_call_usd": 0.0001, "stream": {"every_tokens": 1}},
        # Observes after the answer (deferred): it still runs, so it still costs.
        {"name": "watcher", "type": "synthetic", "stages": ["input"], "mode": "observe",
         "cost_per_call_usd": 0.01},
        # No price: only its CPU costs.
        {"name": "free", "type": "pii", "stages": ["input"]},
    ],
}  # fmt: skip


def calls(proxy: RunningProxy, name: str, stage: str, mode: str = "enforce") -> float:
    return sum(
        proxy.value("taxmeter_filter_decisions_total", filter=name, stage=stage, mode=mode,
                    action=action)
        for action in ("allow", "block", "redact", "error", "timeout")
    )  # fmt: skip


def cpu_seconds(proxy: RunningProxy, name: str, stage: str) -> float:
    return proxy.value("taxmeter_filter_cpu_seconds_sum", filter=name, stage=stage,
                       variant="default")  # fmt: skip


def cost(proxy: RunningProxy, name: str) -> float:
    return proxy.value("taxmeter_filter_cost_usd_total", filter=name, variant="default")


async def test_a_filter_costs_its_calls_at_its_price_plus_its_cpu_at_the_rate(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy(MONEY)
    n = 4
    for _ in range(n):
        status, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
        assert status == 200
    status, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", {**CHAT, "stream": True})
    assert status == 200
    await proxy.settle()  # the deferred observer has run and been recorded

    spinny_cpu = cpu_seconds(proxy, "spinny", "input")
    assert calls(proxy, "spinny", "input") == n + 1
    assert cost(proxy, "spinny") == pytest.approx(
        (n + 1) * 0.002 + spinny_cpu * RATE_PER_CPU_SECOND, rel=1e-9
    )
    # The CPU part is the spin's: 5 ms a call (thread CPU time; margin for a busy host).
    assert (n + 1) * 0.0049 <= spinny_cpu < (n + 1) * 0.0095

    stream_calls = calls(proxy, "streamy", "stream")
    assert stream_calls > 2  # one per token: priced per call, not per request
    assert cost(proxy, "streamy") == pytest.approx(
        stream_calls * 0.0001 + cpu_seconds(proxy, "streamy", "stream"), rel=1e-9
    )

    assert calls(proxy, "watcher", "input", mode="observe") == n + 1
    assert cost(proxy, "watcher") == pytest.approx(
        (n + 1) * 0.01 + cpu_seconds(proxy, "watcher", "input"), rel=1e-9
    )
    free_cpu = cpu_seconds(proxy, "free", "input")
    assert free_cpu > 0
    assert cost(proxy, "free") == pytest.approx(free_cpu, rel=1e-9)

    # /stats holds the same sums, per filter over every variant.
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{proxy.metrics_url}/stats") as response,
    ):
        stats = await response.json()
    for name, stage in (("spinny", "input"), ("streamy", "stream"), ("watcher", "input")):
        entry = stats["filters"][name]
        assert entry["cpu_seconds_sum"] == pytest.approx(cpu_seconds(proxy, name, stage), rel=1e-6)
        assert entry["cost_usd_sum"] == pytest.approx(cost(proxy, name), rel=1e-6)
    assert stats["taxmeter_stats"] == 1


async def test_without_prices_nothing_costs_and_a_reload_prices_from_then_on(
    start_proxy: ProxyFactory, tmp_path: Path
) -> None:
    spinny = {"name": "spinny", "type": "synthetic", "stages": ["input"], "params": {"cpu_ms": 1}}
    config = {"filters": [spinny], "admin": {"token_env": "ADMIN_TOKEN"}}
    path = tmp_path / "taxmeter.yaml"
    path.write_text(yaml.safe_dump(config))
    proxy = await start_proxy(config, config_path=str(path), environ={"ADMIN_TOKEN": "t"})
    status, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
    assert status == 200
    before = cpu_seconds(proxy, "spinny", "input")
    assert before > 0
    # The series exists (the filter ran) and reads 0: no price, no rate.
    labels = {"filter": "spinny", "variant": "default"}
    assert proxy.registry.get_sample_value("taxmeter_filter_cost_usd_total", labels) == 0.0

    priced = {**config, "cpu_usd_per_core_hour": 3600,
              "filters": [{**spinny, "cost_per_call_usd": 0.5}]}  # fmt: skip
    path.write_text(yaml.safe_dump(priced))
    async with (
        aiohttp.ClientSession(headers={"Authorization": "Bearer t"}) as session,
        session.post(f"{proxy.admin_url}/admin/reload") as response,
    ):
        assert response.status == 200, await response.text()
    status, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
    assert status == 200
    added_cpu = cpu_seconds(proxy, "spinny", "input") - before
    assert cost(proxy, "spinny") == pytest.approx(0.5 + added_cpu * 1.0, rel=1e-9)
