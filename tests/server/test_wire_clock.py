"""The clock starts at the wire, the overhead splits into parts, and a blocked loop is overhead."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable

import aiohttp
import orjson

from proxy.measure.metrics import OVERHEAD_PARTS
from tests.loopback import CHOOSABLE, ProxyFactory, RunningProxy, post_json, variant_headers

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
ROUTE = {"route": "chat_completions", "variant": "default"}
BODY = orjson.dumps(CHAT)
HEAD = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n"
)


def figure(proxy: RunningProxy, name: str, variant: str = "default", of: str = "sum") -> float:
    return proxy.value(f"taxmeter_{name}_{of}", route="chat_completions", variant=variant)


def part(proxy: RunningProxy, name: str, variant: str = "default") -> float:
    return proxy.value(
        "taxmeter_proxy_overhead_part_seconds_sum",
        route="chat_completions",
        variant=variant,
        part=name,
    )


async def read_response(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


async def test_the_clock_starts_when_the_first_byte_arrives(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy()
    reader, writer = await asyncio.open_connection(proxy.server.host, proxy.server.port)
    writer.write(HEAD[:20])  # the request line, cut short
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.write(HEAD[20:] + BODY)
    assert b" 200 " in (await read_response(reader)).split(b"\r\n", 1)[0]
    writer.close()

    # The handler started only once the head was whole, 100 ms after its first byte.
    assert figure(proxy, "request_duration_seconds") >= 0.1
    assert part(proxy, "ingress") >= 0.095
    assert figure(proxy, "proxy_overhead_seconds") >= 0.095


async def test_ingress_the_client_held_back_is_in_the_tax(start_proxy: ProxyFactory) -> None:
    """A head sent in two parts: the gap, on the client's clock, is tax the model never saw."""
    proxy = await start_proxy()
    reader, writer = await asyncio.open_connection(proxy.server.host, proxy.server.port)
    start = time.perf_counter()
    writer.write(HEAD[:20])
    await writer.drain()
    await asyncio.sleep(0.05)
    held = time.perf_counter() - start  # the first byte was written no later than start
    writer.write(HEAD[20:] + BODY)
    assert b" 200 " in (await read_response(reader)).split(b"\r\n", 1)[0]
    writer.close()
    await proxy.settle()

    tax = figure(proxy, "latency_tax_seconds")
    # The first byte reaches the proxy a little after it was written, and the rest is
    # parsed after it arrived: measured, the ingress is the gap plus 0.37-0.52 ms.
    # 1 ms of room below the gap, for a first byte read late.
    assert part(proxy, "ingress") >= held - 0.001, (part(proxy, "ingress"), held)
    assert tax >= held - 0.001, (tax, held)
    # And what is not ingress is this small request's usual tax: measured 1.1-1.4 ms,
    # 5 ms once, beside three other test runs.
    assert tax - part(proxy, "ingress") < 0.01, tax


async def test_an_idle_keep_alive_connection_starts_no_clock(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy()
    reader, writer = await asyncio.open_connection(proxy.server.host, proxy.server.port)
    for _ in range(2):
        writer.write(HEAD + BODY)
        await read_response(reader)
        await asyncio.sleep(0.2)  # the connection waits for the client's next request
    writer.close()

    assert proxy.value("taxmeter_request_duration_seconds_count", **ROUTE) == 2
    assert figure(proxy, "request_duration_seconds") < 0.15  # not the 200 ms of idling
    assert part(proxy, "ingress") < 0.05


async def test_the_parts_add_up_to_the_overhead(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy(
        {"filters": [{"name": "pii", "type": "pii", "stages": ["input", "output"]}]}
    )
    for _ in range(20):
        status, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
        assert status == 200
    parts = sum(part(proxy, name) for name in OVERHEAD_PARTS)
    overhead = figure(proxy, "proxy_overhead_seconds")
    assert overhead > 0
    assert abs(parts - overhead) < 20e-6, (parts, overhead)


async def test_waiting_for_a_pooled_connection_is_overhead_not_upstream(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy({"upstream": {"max_connections": 1}})
    slow = {"x-mock-ttft-ms": "100"}
    results = await asyncio.gather(
        *(post_json(f"{proxy.url}/v1/chat/completions", CHAT, slow) for _ in range(2))
    )
    assert [status for status, _, _ in results] == [200, 200]

    # One request waited ~100 ms for the only connection: that is the proxy's
    # queue, and the model's own time stays ~100 ms per request.
    assert part(proxy, "upstream_connect") >= 0.08
    assert figure(proxy, "upstream_duration_seconds") < 0.28


def hog_config() -> dict[str, object]:
    hog = {"name": "hog", "type": "synthetic", "stages": ["input"], "params": {"cpu_ms": 100}}
    return {
        "filters": [hog],
        "variants": {"plain": {"weight": 1, "disable": ["hog"]}, "hog": {"weight": 0}},
        **CHOOSABLE,
    }


async def timed_post(session: aiohttp.ClientSession, url: str, variant: str) -> None:
    headers = variant_headers(variant)
    async with session.post(f"{url}/v1/chat/completions", json=CHAT, headers=headers) as response:
        await response.read()
        assert response.status == 200


async def plain_traffic(proxy: RunningProxy, hogs: int) -> tuple[float, float]:
    """Mean latency that four plain clients in another process see, and the mean overhead
    the proxy reports for them, while ``hogs`` requests each block the loop for 100 ms."""
    client = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.server.load_client", proxy.url, "plain", "4", "1.2",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert client.stdin is not None
    assert client.stdout is not None
    assert await asyncio.wait_for(client.stdout.readline(), 30) == b"ready\n"
    before = figure(proxy, "proxy_overhead_seconds", "plain")
    count_before = figure(proxy, "proxy_overhead_seconds", "plain", "count")
    client.stdin.write(b"go\n")
    async with aiohttp.ClientSession() as session:
        for _ in range(hogs):
            await asyncio.sleep(0.05)
            await timed_post(session, proxy.url, "hog")
    seen = orjson.loads(await asyncio.wait_for(client.stdout.readline(), 30))
    assert await client.wait() == 0
    count = figure(proxy, "proxy_overhead_seconds", "plain", "count") - count_before
    assert count == seen["count"]
    overhead = figure(proxy, "proxy_overhead_seconds", "plain") - before
    return seen["mean_s"], overhead / count


# The share of what the plain clients saw that the proxy may miss or add. Measured
# on a 2-core host beside three other test runs (load 3-7), |reported - seen| / seen
# over fourteen attempts: 0.2-41%, seven under 16%, eleven under 25%; each miss the proxy
# seeing less than the client process, which the host delayed too. On a host with
# nothing else running this could be tightened; it was not measured there.
AGREEMENT = 0.25


async def test_a_filter_blocking_the_loop_raises_the_overhead_of_other_requests(
    start_proxy: ProxyFactory, record_property: Callable[[str, object], None]
) -> None:
    proxy = await start_proxy(hog_config())
    # The plain requests never ran the filter, yet their clients waited longer:
    # the proxy reports that wait as its overhead, about as much as they saw.
    # One retry, recorded (the test's "retries" property, and its output): other
    # work on a small host delays the client process too, which its clock sees
    # and the proxy's cannot. A second miss is a regression, not bad luck.
    attempts = []
    for _ in range(2):
        calm_latency, calm_overhead = await plain_traffic(proxy, hogs=0)
        hogged_latency, hogged_overhead = await plain_traffic(proxy, hogs=8)
        seen = hogged_latency - calm_latency
        reported = hogged_overhead - calm_overhead
        assert seen > 0.01, seen  # the stalls did delay them
        attempts.append((reported, seen))
        if abs(reported - seen) <= AGREEMENT * seen:
            break
    retries = len(attempts) - 1
    record_property("retries", retries)
    print(f"retries: {retries}; reported vs seen (s): {attempts}")
    reported, seen = attempts[-1]
    assert abs(reported - seen) <= AGREEMENT * seen, f"not within {AGREEMENT:.0%}: {attempts}"
