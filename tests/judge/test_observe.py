"""Observe mode: an observing filter changes nothing, costs the client nothing, counts exactly."""

from __future__ import annotations

import asyncio
import statistics

import aiohttp
import orjson

from proxy.judge.observe import Observer
from proxy.measure import genai_attrs as A
from tests.in_memory_spans import InMemory
from tests.loopback import CHOOSABLE, ProxyFactory, RunningProxy, variant_headers

SLOW_BLOCKER = {"name": "blocker", "type": "synthetic", "mode": "observe",
                "params": {"wall_ms": 20, "cpu_ms": 0.5, "action": "block"}}  # fmt: skip
CHAT = {"model": "m", "messages": [{"role": "user", "content": "echo: a b c"}]}


async def chat(proxy: RunningProxy, variant: str, stream: bool = False) -> str:
    body = {**CHAT, "stream": stream}
    async with aiohttp.ClientSession() as session, session.post(
        f"{proxy.url}/v1/chat/completions", data=orjson.dumps(body),
        headers={"Content-Type": "application/json", **variant_headers(variant)},
    ) as response:  # fmt: skip
        assert response.status == 200
        return await response.text()


def decisions(proxy: RunningProxy, stage: str, action: str) -> float:
    return proxy.value("taxmeter_filter_decisions_total", filter="blocker", stage=stage,
                       mode="observe", action=action)  # fmt: skip


async def test_an_observing_blocker_blocks_nothing_costs_nothing_and_counts_exactly(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy({
        "filters": [{**SLOW_BLOCKER, "stages": ["input", "output"]}],
        "variants": {"observing": {"weight": 1}, "plain": {"weight": 1, "disable": ["blocker"]}},
        **CHOOSABLE,
    })  # fmt: skip
    n = 40
    for _ in range(n):
        text = await chat(proxy, "observing")
        assert '"finish_reason":"stop"' in text
        await chat(proxy, "plain")
    await proxy.settle()
    assert decisions(proxy, "input", "block") == n
    assert decisions(proxy, "output", "block") == n
    # What it would have cost is reported...
    spent = proxy.value("taxmeter_filter_duration_seconds_sum", filter="blocker", stage="input",
                        variant="observing") / n  # fmt: skip
    assert 0.0195 < spent < 0.025
    # ...and the client did not pay it.
    stats = proxy.apps.stats.snapshot({})
    taxes = {v: stats["variants"][v]["samples"]["latency_tax_seconds"]
             for v in ("observing", "plain")}  # fmt: skip
    added = statistics.median(taxes["observing"]) - statistics.median(taxes["plain"])
    assert added < 0.001, added


async def test_an_observing_stream_filter_is_replayed_with_its_cadence(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy({
        "filters": [{**SLOW_BLOCKER, "stages": ["stream"], "params": {"action": "block"}}],
        "variants": {"observing": {"weight": 1}},
    })  # fmt: skip
    body = await chat(proxy, "observing", stream=True)
    assert "content_filter" not in body
    await proxy.settle()
    # "a b c" arrives as three content events: three calls, each a would-be block.
    assert decisions(proxy, "stream", "block") == 3


async def test_a_replayed_stream_observer_is_no_filter_time_on_the_client_s_path(
    start_proxy: ProxyFactory, in_memory: InMemory
) -> None:
    # 20 ms a call, three calls: all of it after the answer was sent, none of it tax.
    proxy = await start_proxy(
        {"filters": [{**SLOW_BLOCKER, "stages": ["stream"]}]}, tracing=in_memory.setup
    )
    await chat(proxy, "default", stream=True)
    (server,) = await in_memory.server_spans()
    attributes = server.attributes or {}
    assert attributes[A.FILTER_CRITICAL_S] == 0.0
    spent = proxy.value("taxmeter_filter_duration_seconds_sum", filter="blocker", stage="stream",
                        variant="default")  # fmt: skip
    assert spent > 0.055


async def test_inline_observers_run_on_the_path(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy({
        "filters": [{**SLOW_BLOCKER, "stages": ["input"], "observe_inline": True}],
    })  # fmt: skip
    await chat(proxy, "default")
    # Counted before the response was sent: nothing left to settle.
    assert proxy.apps.observer.pending == 0
    assert decisions(proxy, "input", "block") == 1
    tax = proxy.value("taxmeter_latency_tax_seconds_sum", route="chat_completions",
                      variant="default")  # fmt: skip
    assert tax > 0.02  # the client paid for it: that is what inline is for


async def test_the_observer_is_bounded() -> None:
    observer = Observer(max_pending=2)
    release = asyncio.Event()

    async def work() -> None:
        await release.wait()

    assert observer.submit(work())
    assert observer.submit(work())
    assert not observer.submit(work())
    assert observer.pending == 2
    release.set()
    await observer.drain(1.0)
    assert observer.pending == 0
