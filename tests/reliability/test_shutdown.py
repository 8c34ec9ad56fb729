"""Graceful shutdown of a real `taxmeter serve` process on SIGTERM.

Readiness turns false, the proxy port stops accepting, the requests and
streams already under way finish, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp
import pytest

from tests.server.test_serve_cli import served

__all__ = ["served"]  # the fixture: a real `taxmeter serve` with the embedded model

Served = tuple[asyncio.subprocess.Process, dict[str, str]]
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


async def inflight(session: aiohttp.ClientSession, metrics: str) -> float:
    async with session.get(metrics) as response:
        for line in (await response.text()).splitlines():
            if line.startswith("taxmeter_inflight_requests "):
                return float(line.split()[1])
    return 0.0


async def test_sigterm_drains_in_flight_work_then_exits_0(served: Served) -> None:
    process, where = served
    proxy, metrics = where["proxy"], where["metrics"]
    health = metrics.removesuffix("/metrics")
    async with aiohttp.ClientSession() as session:
        slow = {"x-mock-ttft-ms": "1500"}
        slow_json = asyncio.ensure_future(
            session.post(f"{proxy}/v1/chat/completions", json=CHAT, headers=slow)
        )
        stream = await session.post(
            f"{proxy}/v1/chat/completions", json={**CHAT, "stream": True, "max_tokens": 20},
            headers={"x-mock-tokens-per-s": "10"},
        )  # fmt: skip
        assert stream.status == 200
        async with asyncio.timeout(10):
            while await inflight(session, metrics) < 2:  # noqa: ASYNC110 - another process
                await asyncio.sleep(0.02)

        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        async with asyncio.timeout(5):
            while True:  # readiness turns false while the work drains
                async with session.get(f"{health}/readyz") as ready:
                    if ready.status == 503:
                        break
                await asyncio.sleep(0.02)
        with pytest.raises(aiohttp.ClientConnectorError):
            async with aiohttp.ClientSession() as fresh:
                await fresh.post(f"{proxy}/v1/chat/completions", json=CHAT)

        answer = await slow_json
        assert answer.status == 200
        assert (await answer.json())["choices"][0]["message"]["content"]
        body = await stream.read()
        assert body.rstrip().endswith(b"data: [DONE]")
        assert body.count(b'"content"') >= 10  # every token came, none was cut off
    assert await asyncio.wait_for(process.wait(), timeout=20) == 0
    assert time.monotonic() - signalled < 20  # well within the grace period


async def test_an_idle_proxy_exits_0_at_once(served: Served) -> None:
    process, _ = served
    process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert await asyncio.wait_for(process.wait(), timeout=20) == 0
    assert time.monotonic() - started < 10
