"""A client that goes away is counted as client_disconnect, and nothing is left behind."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
from aiohttp.test_utils import TestServer

from proxy.sim.model_server import MOCK_STATS
from tests.loopback import ProxyFactory, RunningProxy

CHAT_PATH = "/v1/chat/completions"


async def wait_for(predicate: Callable[[], bool]) -> None:
    """Poll until the predicate holds; fail after two seconds."""
    async with asyncio.timeout(2):
        while not predicate():  # noqa: ASYNC110 - the state lives in another server
            await asyncio.sleep(0.01)


def disconnects(proxy: RunningProxy) -> float:
    return proxy.value("taxmeter_requests_total", route="chat_completions", variant="default",
                       outcome="client_disconnect")  # fmt: skip


async def test_disconnect_while_waiting_for_the_model(
    start_proxy: ProxyFactory, model: TestServer
) -> None:
    proxy = await start_proxy({"filters": [{"name": "pii", "type": "pii"}]})
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession() as session:
        with_timeout = aiohttp.ClientTimeout(total=0.1)
        try:
            async with session.post(
                f"{proxy.url}{CHAT_PATH}", json=body, timeout=with_timeout,
                headers={"x-mock-ttft-ms": "2000"},
            ) as response:  # fmt: skip
                await response.read()
        except TimeoutError:
            pass
    await wait_for(lambda: disconnects(proxy) == 1)
    assert proxy.value("taxmeter_inflight_requests") == 0


async def test_disconnect_mid_stream_stops_the_upstream_stream(
    start_proxy: ProxyFactory, model: TestServer
) -> None:
    proxy = await start_proxy()
    stats = model.app[MOCK_STATS]
    body = {"model": "m", "stream": True, "max_tokens": 500,
            "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            f"{proxy.url}{CHAT_PATH}", json=body, headers={"x-mock-tokens-per-s": "100"}
        )
        assert response.status == 200
        await response.content.readline()  # the stream is under way
        assert stats.active_streams == 1
        response.close()  # the client goes away mid-stream
        left_at = asyncio.get_running_loop().time()
    await wait_for(lambda: stats.active_streams == 0)
    # The model server stopped generating within 100 ms.
    assert asyncio.get_running_loop().time() - left_at < 0.1
    assert stats.streams_cancelled == 1
    await wait_for(lambda: disconnects(proxy) == 1)
    assert proxy.value("taxmeter_inflight_requests") == 0
