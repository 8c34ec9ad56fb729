"""The figures are true, checked against clocks the proxy does not read.

A filter's cost is set on another clock (CPU spun on the thread's own CPU
clock, ``time.thread_time``), not by a sleep on the clock the chain reads:
a thread cannot use more CPU than the time that passed, so a filter that
spins 20 ms of CPU costs at least 20 ms whatever the chain's clock says. And
the proxy's self-reported tax is compared with what a client measured on its
own clock, each proxied request beside the same request sent directly.
"""

from __future__ import annotations

import statistics
import time

import aiohttp
import orjson

from proxy.sim.model_server import MockSettings, make_mock_app
from tests.loopback import ProxyFactory, RunningProxy, ServerFactory, post_json

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
ROUTE = {"route": "chat_completions", "variant": "default"}
SPIN = {"name": "spin", "type": "synthetic", "stages": ["input"], "params": {"cpu_ms": 20}}
SPIN_20MS = {"filters": [SPIN]}
# The model answers at once: its own time does not drown the proxy's in the client's figures.
INSTANT_MODEL = MockSettings(ttft_ms=0.0, tokens_per_s=1e6, max_tokens=16)


def sums(proxy: RunningProxy) -> dict[str, float]:
    return {
        "total": proxy.value("taxmeter_request_duration_seconds_sum", **ROUTE),
        "upstream": proxy.value("taxmeter_upstream_duration_seconds_sum", **ROUTE),
        "tax": proxy.value("taxmeter_latency_tax_seconds_sum", **ROUTE),
        "overhead": proxy.value("taxmeter_proxy_overhead_seconds_sum", **ROUTE),
        "filter": proxy.value(
            "taxmeter_filter_duration_seconds_sum", filter="spin", stage="input", variant="default"
        ),
        "cpu": proxy.value(
            "taxmeter_filter_cpu_seconds_sum", filter="spin", stage="input", variant="default"
        ),
    }


def spin_here(seconds: float) -> float:
    """Spin ``seconds`` of this thread's CPU, as the filter does; the wall time it took."""
    start = time.perf_counter()
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass
    return time.perf_counter() - start


def spread(values: list[float]) -> float:
    """The interquartile range: how much the host's own noise moves a figure."""
    quartiles = statistics.quantiles(values, n=4)
    return quartiles[2] - quartiles[0]


async def test_a_filter_spinning_20ms_of_cpu_is_reported_as_20ms(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy(SPIN_20MS)
    requests = 20
    filter_times, cpu_times, taxes, here = [], [], [], []
    for _ in range(requests):
        before = sums(proxy)
        status, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
        assert status == 200
        await proxy.settle()
        after = sums(proxy)
        d = {k: after[k] - before[k] for k in after}
        filter_times.append(d["filter"])
        cpu_times.append(d["cpu"])
        taxes.append(d["tax"])
        here.append(spin_here(0.020))  # the same spin, on this thread, at the same time
    count = proxy.value(
        "taxmeter_filter_duration_seconds_count", filter="spin", stage="input", variant="default"
    )
    assert count == requests
    # Wall time is never less than the CPU one thread used in it: not one request
    # may read under 20 ms, in the filter's figure or in the tax it is part of.
    assert min(filter_times) >= 0.020, filter_times
    assert min(taxes) >= 0.020, taxes
    assert min(cpu_times) >= 0.020, cpu_times
    # Above it, what the same spin takes on this thread meanwhile: the host's share
    # of a core, which no bound fixed in advance knows. Measured on a 2-core host
    # beside other test runs (load 3-7): the filter's median 36-60 ms, the spin here
    # within 0.1-3.5 ms of it, its spread (IQR) 1.7-11 ms.
    bound = statistics.median(here) + 2 * spread(here) + 0.001
    assert statistics.median(filter_times) < bound, (filter_times, here)
    assert statistics.median(taxes) < bound + 0.002, (taxes, here)


async def timed_post(session: aiohttp.ClientSession, url: str, body: bytes) -> float:
    """Seconds on the client's clock from writing the request to the answer read."""
    start = time.perf_counter()
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as got:
        await got.read()
        assert got.status == 200
    return time.perf_counter() - start


async def client_and_proxy_figures(
    proxy: RunningProxy, direct_url: str, pairs: int, warmup: int = 10
) -> tuple[list[float], list[float], list[float], dict[str, float]]:
    """Per pair: the direct request's latency and proxied - direct, on the client's clock;
    the proxy's tax for that request; and the sums' change over the counted pairs."""
    body = orjson.dumps(CHAT)
    directs, added, reported = [], [], []
    first = sums(proxy)
    async with aiohttp.ClientSession() as direct, aiohttp.ClientSession() as proxied:
        for i in range(warmup + pairs):
            if i == warmup:
                first = sums(proxy)
            direct_s = await timed_post(direct, f"{direct_url}/v1/chat/completions", body)
            before = proxy.value("taxmeter_latency_tax_seconds_sum", **ROUTE)
            proxied_s = await timed_post(proxied, f"{proxy.url}/v1/chat/completions", body)
            await proxy.settle()
            tax = proxy.value("taxmeter_latency_tax_seconds_sum", **ROUTE) - before
            if i >= warmup:
                directs.append(direct_s)
                added.append(proxied_s - direct_s)
                reported.append(tax)
    last = sums(proxy)
    return directs, added, reported, {k: last[k] - first[k] for k in last}


async def test_the_self_reported_tax_is_what_a_client_measures(
    start_proxy: ProxyFactory, aiohttp_server: ServerFactory
) -> None:
    model = await aiohttp_server(make_mock_app(INSTANT_MODEL))
    model_url = str(model.make_url("")).rstrip("/")
    proxy = await start_proxy({"filters": [{"name": "pii", "type": "pii"}]}, upstream=model_url)
    direct, added, reported, change = await client_and_proxy_figures(proxy, model_url, pairs=150)
    # The bookkeeping, which holds by definition.
    assert abs(change["total"] - change["upstream"] - change["tax"]) < 1e-6, change
    # What the client paid for going through the proxy, less what the proxy says
    # it added: the extra loopback hop and the client's own reading of a longer
    # answer, which no clock inside the proxy sees. Measured over 150 pairs on a
    # 2-core host beside other test runs (load 3-7): the median residual 0.01-0.12 ms
    # (added 0.4-0.9 ms), and -1.0 to -2.1 ms in three runs of eight, as preemption
    # landed on the direct side of pairs. So the room is 0.3 ms plus three times the
    # spread (IQR) of the direct requests' latency, the host's noise in the same run:
    # 0.9-1.9 ms then.
    residuals = [a - r for a, r in zip(added, reported, strict=True)]
    room = 0.0003 + 3 * spread(direct)
    figures = (statistics.median(residuals), room, statistics.median(added))
    assert statistics.median(added) > 0, added
    assert abs(statistics.median(residuals)) < room, figures


async def test_a_known_filter_cost_shows_on_the_clients_clock_as_reported(
    start_proxy: ProxyFactory, aiohttp_server: ServerFactory
) -> None:
    """The same comparison with a 20 ms CPU filter: what the proxy calls tax the client paid."""
    model = await aiohttp_server(make_mock_app(INSTANT_MODEL))
    model_url = str(model.make_url("")).rstrip("/")
    proxy = await start_proxy(SPIN_20MS, upstream=model_url)
    figures = await client_and_proxy_figures(proxy, model_url, pairs=20, warmup=3)
    direct, added, reported, _ = figures
    assert min(reported) >= 0.020, reported
    residual = statistics.median(a - r for a, r in zip(added, reported, strict=True))
    # The room as above (measured: residual 0.02-0.42 ms, room 0.8-2.7 ms): the
    # 20 ms is neither lost nor counted twice.
    room = 0.0003 + 3 * spread(direct)
    assert abs(residual) < room, (residual, room, added, reported)


async def test_inline_observe_mode_costs_the_same_but_never_acts(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy(
        {"filters": [{"name": "slow", "type": "synthetic", "stages": ["input"], "mode": "observe",
                      "observe_inline": True, "params": {"wall_ms": 5, "action": "block"}}]}
    )  # fmt: skip
    status, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
    assert status == 200
    assert proxy.value("taxmeter_filter_decisions_total", filter="slow", stage="input",
                       mode="observe", action="block") == 1  # fmt: skip
    mean = proxy.value(
        "taxmeter_filter_duration_seconds_sum", filter="slow", stage="input", variant="default"
    )
    assert 0.0045 < mean < 0.0075
