"""Limits: concurrent requests, body size, and a client that reads slowly."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from multidict import CIMultiDict

from proxy.config.schema import ConfigError, parse_config
from tests.fresh_serve import fresh_serve, peak_rss_bytes
from tests.loopback import ProxyFactory, RunningProxy, ServerFactory, post_json

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
SLOW = {"x-mock-ttft-ms": "1000"}
Answer = tuple[int, CIMultiDict[str], bytes]


async def hold_slots(proxy: RunningProxy, n: int) -> list[asyncio.Task[Answer]]:
    """n slow chat requests, returned once the proxy counts all n in flight."""
    url = f"{proxy.url}/v1/chat/completions"
    slow = [asyncio.create_task(post_json(url, CHAT, SLOW)) for _ in range(n)]
    async with asyncio.timeout(5):
        while proxy.value("taxmeter_inflight_requests") < n:  # noqa: ASYNC110 - another server
            await asyncio.sleep(0.01)
    return slow


async def test_beyond_the_concurrency_limit_a_clear_429_with_retry_after(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy({"max_concurrent_requests": 2})
    url = f"{proxy.url}/v1/chat/completions"
    slow = await hold_slots(proxy, 2)
    status, headers, body = await post_json(url, CHAT)
    assert status == 429
    assert headers["Retry-After"] == "1"
    message = "taxmeter is serving its maximum of 2 concurrent requests; retry shortly"
    assert orjson.loads(body) == {"error": {  # the SDKs' RateLimitError reads the type
        "message": message, "type": "rate_limit_error", "code": "concurrency_limit", "param": None,
    }}  # fmt: skip
    assert proxy.value("taxmeter_rejected_requests_total", reason="concurrency") == 1
    assert [s for s, _, _ in await asyncio.gather(*slow)] == [200, 200]
    status, _, _ = await post_json(url, CHAT)  # slots free again
    assert status == 200
    # Every slot given back once, no more: the limit holds as it did at first.
    slow = await hold_slots(proxy, 2)
    status, _, _ = await post_json(url, CHAT)
    assert status == 429
    assert [s for s, _, _ in await asyncio.gather(*slow)] == [200, 200]


async def test_a_429_on_a_path_of_no_api_is_in_openai_s_error_shape(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy({"max_concurrent_requests": 1})
    (slow,) = await hold_slots(proxy, 1)
    status, headers, body = await post_json(f"{proxy.url}/anything", {"x": 1})
    assert status == 429
    assert headers["Content-Type"] == "application/json"
    assert headers["Retry-After"] == "1"
    message = "taxmeter is serving its maximum of 1 concurrent requests; retry shortly"
    assert orjson.loads(body) == {"error": {
        "message": message, "type": "rate_limit_error", "code": "concurrency_limit", "param": None,
    }}  # fmt: skip
    assert (await slow)[0] == 200


async def test_without_a_limit_nothing_is_turned_away(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy({"max_concurrent_requests": None})
    url = f"{proxy.url}/v1/chat/completions"
    answers = await asyncio.gather(*(post_json(url, CHAT, SLOW) for _ in range(6)))
    assert [status for status, _, _ in answers] == [200] * 6


@pytest.mark.parametrize("value", [0, -1, "many", 1.5])
def test_a_bad_limit_is_a_config_error_naming_the_key(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"^max_concurrent_requests: "):
        parse_config({"max_concurrent_requests": value})


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/embeddings", "/anything"])
@pytest.mark.parametrize("chunked", [False, True])
async def test_a_body_over_max_body_bytes_is_413_and_never_reaches_the_model(
    start_proxy: ProxyFactory, aiohttp_server: ServerFactory, path: str, chunked: bool
) -> None:
    whole_bodies = 0

    async def counting(request: web.Request) -> web.Response:
        nonlocal whole_bodies
        await request.read()  # a cut-off upload raises here
        whole_bodies += 1
        return web.json_response({})

    app = web.Application(client_max_size=1 << 30)
    app.router.add_route("*", "/{tail:.*}", counting)
    upstream = await aiohttp_server(app)
    proxy = await start_proxy(
        {"max_body_bytes": 100_000, "filters": [{"name": "pii", "type": "pii"}]},
        upstream=str(upstream.make_url("")),
    )

    async def body() -> Any:
        for _ in range(20):
            yield b" " * 10_000

    data: Any = body() if chunked else b" " * 200_000
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{proxy.url}{path}", data=data) as response,
    ):
        assert response.status == 413
        error = orjson.loads(await response.read())["error"]
    assert error["code"] == "body_too_large"
    assert "max_body_bytes" in error["message"]
    assert whole_bodies == 0
    route = {"/v1/chat/completions": "chat_completions", "/v1/embeddings": "embeddings"}
    labels = {"route": route.get(path, "other"), "variant": "default", "outcome": "client_error"}
    assert proxy.value("taxmeter_requests_total", **labels) == 1
    status, _, _ = await post_json(f"{proxy.url}/v1/files", b"{}")
    assert (status, whole_bodies) == (200, 1)  # the proxy kept serving


async def test_a_client_that_does_not_read_holds_the_model_back_not_memory(
    aiohttp_server: ServerFactory,
) -> None:
    piece = b"z" * (1024 * 1024)
    sent = 0

    async def endless(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        for _ in range(512):  # up to 512 MB, if nothing held it back
            await response.write(piece)  # waits while the proxy does not read
            sent += len(piece)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/big", endless)
    upstream = await aiohttp_server(app)
    # A process of its own: its peak RSS (VmHWM) is this test's alone.
    async with fresh_serve(str(upstream.make_url("")).rstrip("/")) as (pid, url):
        rss_before = peak_rss_bytes(pid)
        async with aiohttp.ClientSession() as session:
            response = await session.get(f"{url}/big")
            first = await response.content.read(1024)
            assert first == b"z" * 1024
            await asyncio.sleep(1.5)  # the client stops reading
            held_back_at = sent
            response.close()
        grown = peak_rss_bytes(pid) - rss_before
    # Socket buffers on loopback hold some megabytes; everything else waited.
    assert held_back_at < 64 * 1024 * 1024, held_back_at
    # Measured over five runs: the peak grew 1.5-1.9 MB over the idle process's, the
    # model held back after 8-23 MB. A proxy that read ahead of its client would
    # hold what the model sent, up to 512 MB.
    assert grown < 16 * 1024 * 1024, grown
