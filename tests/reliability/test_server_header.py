"""The Server header: the model server's passes through; the proxy adds none of its own.

aiohttp would add ``Server: Python/3.x aiohttp/3.x.y`` to every answer that has
none (proxy/server/server_header.py, docs/reliability.md "The Server header").
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE
from aiohttp.test_utils import TestServer

from proxy.config.schema import HostPort
from proxy.server.sites import bound_url, start_site
from tests.loopback import ProxyFactory, ServerFactory
from tests.reliability.test_slow_clients import HALF_HEAD, REQUEST, read_answer

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
COMPLETION = orjson.dumps(
    {
        "id": "c",
        "object": "chat.completion",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hello"},
                "finish_reason": "stop",
            }
        ],
    }
)
CHUNK = {
    "id": "c",
    "object": "chat.completion.chunk",
    "choices": [{"index": 0, "delta": {"content": "hello"}, "finish_reason": "stop"}],
}
SSE = b"data: " + orjson.dumps(CHUNK) + b"\n\ndata: [DONE]\n\n"


async def _answer_without_server(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """A model server that sends no Server header (aiohttp's always would)."""
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        while True:
            head = (await reader.readuntil(b"\r\n\r\n")).lower()
            length = 0
            for line in head.split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length)
            if b'"stream": true' in body or b'"stream":true' in body:
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(SSE), SSE)
                )
            else:
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(COMPLETION), COMPLETION)
                )
            await writer.drain()
    writer.close()


@pytest.fixture
async def anonymous_model() -> AsyncIterator[str]:
    server = await asyncio.start_server(_answer_without_server, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    server.close()
    await server.wait_closed()


async def post(
    url: str, body: object, headers: dict[str, str] | None = None
) -> aiohttp.ClientResponse:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=body, headers=headers) as response,
    ):
        await response.read()
        return response


async def test_the_model_servers_server_header_passes_through(
    start_proxy: ProxyFactory, aiohttp_server: ServerFactory
) -> None:
    async def named(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=COMPLETION, content_type="application/json",
                            headers={"Server": "model-server/1.0"})  # fmt: skip

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", named)
    upstream = await aiohttp_server(app)
    proxy = await start_proxy({"filters": [{"name": "pii", "type": "pii"}]},
                              upstream=str(upstream.make_url("")))  # fmt: skip
    for path in ("/v1/chat/completions", "/v1/anything"):  # judged, and passed through
        response = await post(f"{proxy.url}{path}", CHAT)
        assert response.status == 200
        assert response.headers.getall("Server") == ["model-server/1.0"]


async def test_a_model_server_on_aiohttp_keeps_its_own_header(
    start_proxy: ProxyFactory, model: TestServer
) -> None:
    # The same string as the proxy's aiohttp would add, but the model server's: it stays.
    proxy = await start_proxy()
    response = await post(f"{proxy.url}/v1/chat/completions", CHAT)
    assert response.status == 200
    assert response.headers.getall("Server") == [SERVER_SOFTWARE]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_model_server_without_one_gets_none_added(
    start_proxy: ProxyFactory, anonymous_model: str, stream: bool
) -> None:
    proxy = await start_proxy({"filters": [{"name": "pii", "type": "pii"}]},
                              upstream=anonymous_model)  # fmt: skip
    response = await post(f"{proxy.url}/v1/chat/completions", {**CHAT, "stream": stream})
    assert response.status == 200
    assert "Server" not in response.headers


async def _via(proxy_url: str, raw: bytes) -> tuple[int, dict[str, str]]:
    host, port = proxy_url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(raw)
    status, headers, _ = await read_answer(reader)
    writer.close()
    return status, headers


def _post(body: bytes, extra: bytes = b"") -> bytes:
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: p\r\nContent-Type: application/json\r\n"
            b"%sContent-Length: %d\r\n\r\n%s" % (extra, len(body), body))  # fmt: skip


@pytest.mark.parametrize(
    ("status", "request_bytes"),
    [
        (400, _post(b"{not json")),  # invalid_json
        (413, _post(b" " * 5000)),  # body_too_large
        (400, _post(b"{}", b"Content-Length: 2\r\n")),  # invalid_http_request, from the parser
        (408, HALF_HEAD),  # client_header_timeout
    ],
)
async def test_the_proxys_own_errors_carry_no_server_header(
    start_proxy: ProxyFactory, anonymous_model: str, status: int, request_bytes: bytes
) -> None:
    proxy = await start_proxy(
        {"max_body_bytes": 1000, "client_header_timeout_s": 0.3,
         "filters": [{"name": "pii", "type": "pii"}]},
        upstream=anonymous_model,
    )  # fmt: skip
    got, headers = await _via(proxy.url, request_bytes)
    assert got == status
    assert "server" not in headers


async def test_a_502_carries_no_server_header(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy(upstream="http://127.0.0.1:9")  # nothing listens there
    got, headers = await _via(proxy.url, REQUEST)
    assert got == 502
    assert "server" not in headers


async def test_beyond_the_concurrency_limit_the_429_carries_no_server_header(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy({"max_concurrent_requests": 1})
    url = f"{proxy.url}/v1/chat/completions"
    slow = asyncio.ensure_future(post(url, CHAT, {"x-mock-ttft-ms": "1000"}))
    async with asyncio.timeout(5):
        while proxy.value("taxmeter_inflight_requests") < 1:  # noqa: ASYNC110 - another server
            await asyncio.sleep(0.01)
    response = await post(url, CHAT)
    assert response.status == 429
    assert "Server" not in response.headers
    assert (await slow).status == 200


async def test_the_metrics_listener_sends_none_either(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy()
    runner = await start_site(proxy.apps.metrics, HostPort("127.0.0.1", 0))
    try:
        async with aiohttp.ClientSession() as session:
            for path in ("/metrics", "/healthz", "/nowhere"):
                async with session.get(f"{bound_url(runner)}{path}") as response:
                    assert "Server" not in response.headers, path
    finally:
        await runner.cleanup()
