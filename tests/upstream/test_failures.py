"""Upstream failures: the right status, error body and outcome, and the proxy keeps serving."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import aiohttp
import orjson
import pytest
from aiohttp import web

from proxy.upstream.call import classify_failure
from proxy.upstream.pool import BodyLengthMismatch
from proxy.upstream.response import (
    UpstreamError,
    UpstreamMalformed,
    UpstreamReset,
    UpstreamTooLarge,
    UpstreamUnreachable,
)
from tests.loopback import (
    ProxyFactory,
    RawServer,
    RunningProxy,
    ServerFactory,
    post_json,
    read_request_head,
)

RawFactory = Callable[..., Awaitable[RawServer]]
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def assert_error(
    proxy: RunningProxy, status: int, code: str, outcome: str, route_path: str = "chat/completions"
) -> str:
    """Checks the error's status, shape, request id and outcome; returns its message."""
    got_status, headers, body = await post_json(f"{proxy.url}/v1/{route_path}", CHAT)
    assert got_status == status, body
    assert headers["Content-Type"].startswith("application/json")
    error = orjson.loads(body)["error"]
    assert error["code"] == code
    assert error["message"]
    assert "X-Request-Id" in headers
    route = "chat_completions" if route_path == "chat/completions" else "other"
    assert proxy.value("taxmeter_requests_total", route=route, variant="default",
                       outcome=outcome) == 1  # fmt: skip
    message: str = error["message"]
    return message


async def test_refused_is_502_upstream_unreachable(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy(upstream=f"http://127.0.0.1:{free_port()}")
    await assert_error(proxy, 502, "upstream_unreachable", "upstream_error")
    await assert_error(proxy, 502, "upstream_unreachable", "upstream_error", "models")


@pytest.mark.parametrize("filters", [[], [{"name": "pii", "type": "pii"}]])
async def test_reset_before_headers_is_502_upstream_reset(
    start_proxy: ProxyFactory, raw_server: RawFactory, filters: list[object]
) -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    server = await raw_server(reset)
    proxy = await start_proxy({"filters": filters}, upstream=server.url)
    await assert_error(proxy, 502, "upstream_reset", "upstream_error")


async def test_garbage_response_is_502_upstream_malformed(
    start_proxy: ProxyFactory, raw_server: RawFactory
) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(b"this is not HTTP at all\r\n\r\n")
        await writer.drain()

    server = await raw_server(garbage)
    proxy = await start_proxy(upstream=server.url)
    await assert_error(proxy, 502, "upstream_malformed", "upstream_error")


async def test_non_openai_json_on_a_judged_route_is_502_upstream_malformed(
    start_proxy: ProxyFactory, aiohttp_server: ServerFactory
) -> None:
    async def odd(request: web.Request) -> web.Response:
        return web.Response(body=b"{broken", content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", odd)
    upstream = await aiohttp_server(app)
    proxy = await start_proxy(
        {"filters": [{"name": "pii", "type": "pii"}]}, upstream=str(upstream.make_url(""))
    )
    await assert_error(proxy, 502, "upstream_malformed", "upstream_error")


async def test_hang_is_504_upstream_timeout(
    start_proxy: ProxyFactory, raw_server: RawFactory
) -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        await asyncio.sleep(5)

    server = await raw_server(hang)
    proxy = await start_proxy({"upstream": {"read_timeout_s": 0.2}}, upstream=server.url)
    started = asyncio.get_running_loop().time()
    message = await assert_error(proxy, 504, "upstream_timeout", "timeout")
    assert message == "the model server timed out"
    assert asyncio.get_running_loop().time() - started < 2


async def test_total_timeout_is_504(start_proxy: ProxyFactory, raw_server: RawFactory) -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        )
        for _ in range(50):
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.05)

    server = await raw_server(trickle)
    proxy = await start_proxy(
        {"upstream": {"total_timeout_s": 0.3}, "filters": [{"name": "pii", "type": "pii"}]},
        upstream=server.url,
    )
    await assert_error(proxy, 504, "upstream_timeout", "timeout")


async def test_5xx_passes_through_as_upstream_error(
    start_proxy: ProxyFactory, aiohttp_server: ServerFactory
) -> None:
    async def overloaded(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "busy"}}, status=503)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", overloaded)
    upstream = await aiohttp_server(app)
    proxy = await start_proxy(upstream=str(upstream.make_url("")))
    status, _, body = await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
    assert status == 503
    assert orjson.loads(body) == {"error": {"message": "busy"}}
    assert proxy.value("taxmeter_requests_total", route="chat_completions", variant="default",
                       outcome="upstream_error") == 1  # fmt: skip


async def test_reset_mid_body_aborts_the_client_response(
    start_proxy: ProxyFactory, raw_server: RawFactory
) -> None:
    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"a" * 100)
        await writer.drain()

    server = await raw_server(half)
    proxy = await start_proxy(upstream=server.url)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientPayloadError):
            async with session.get(f"{proxy.url}/v1/models") as response:
                await response.read()
    await asyncio.sleep(0.05)
    assert proxy.value("taxmeter_requests_total", route="other", variant="default",
                       outcome="upstream_error") == 1  # fmt: skip


async def test_proxy_keeps_serving_after_failures(
    start_proxy: ProxyFactory, raw_server: RawFactory
) -> None:
    calls = 0

    async def flaky(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal calls
        calls += 1
        await read_request_head(reader)
        if calls % 2:
            writer.write(b"garbage\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()

    server = await raw_server(flaky)
    proxy = await start_proxy(upstream=server.url)
    statuses = []
    for _ in range(6):
        status, _, _ = await post_json(f"{proxy.url}/v1/models", b"")
        statuses.append(status)
    assert statuses == [502, 200] * 3
    assert proxy.value("taxmeter_inflight_requests") == 0


async def test_connect_timeout_is_504(start_proxy: ProxyFactory) -> None:
    # A listener that never accepts, with its backlog filled: further SYNs go unanswered.
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler.connect(listener.getsockname())
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        proxy = await start_proxy({"upstream": {"connect_timeout_s": 0.2}}, upstream=url)
        started = asyncio.get_running_loop().time()
        await assert_error(proxy, 504, "upstream_timeout", "timeout")
        assert asyncio.get_running_loop().time() - started < 2


TOO_LARGE = (
    "the model server's response is too large, or inflates like a compression bomb"
    " (upstream.max_response_bytes)"
)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (TimeoutError(), (504, "upstream_timeout", "timeout", "the model server timed out")),
        (
            UpstreamUnreachable("refused"),
            (502, "upstream_unreachable", "upstream_error", "cannot connect to the model server"),
        ),
        (
            UpstreamReset("reset"),
            (502, "upstream_reset", "upstream_error", "the model server closed the connection"),
        ),
        (
            UpstreamMalformed("junk"),
            (
                502,
                "upstream_malformed",
                "upstream_error",
                "the model server sent a malformed response",
            ),
        ),
        (
            BodyLengthMismatch("short"),
            (
                400,
                "invalid_body",
                "client_error",
                "the request body does not match its Content-Length",
            ),
        ),
        (
            UpstreamTooLarge("big"),
            (502, "upstream_response_too_large", "upstream_error", TOO_LARGE),
        ),
        # Any other failure of the call, ours included, is the model server's 502
        # with nothing of the exception's text (that goes to the log).
        (
            UpstreamError("odd"),
            (502, "upstream_error", "upstream_error", "the model server failed"),
        ),
        (
            RuntimeError("a re-encoded body was 3 bytes, not 2"),
            (502, "upstream_error", "upstream_error", "the model server failed"),
        ),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else "",
)
def test_each_failure_of_an_upstream_call_is_one_status_code_outcome_and_message(
    error: BaseException, expected: tuple[int, str, str, str]
) -> None:
    failure = classify_failure(error)
    assert (failure.status, failure.code, failure.outcome, failure.message) == expected
