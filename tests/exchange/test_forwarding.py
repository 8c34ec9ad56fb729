"""Forwarding: methods, paths, headers and bodies cross the proxy as they should."""

from __future__ import annotations

import asyncio
import gzip
import re
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
import uvloop
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from tests.loopback import (
    ProxyFactory,
    RawServer,
    ServerFactory,
    echoed_body,
    echoed_headers,
    post_json,
    read_request_head,
)

RawFactory = Callable[..., Awaitable[RawServer]]
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}

# Echo-server tests judge the prompt only: an echo is not a completion to judge.
PII_INPUT = {"filters": [{"name": "pii", "type": "pii", "stages": ["input"]}]}


async def test_tests_run_on_uvloop() -> None:
    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)


async def test_a_judged_body_goes_upstream_as_the_encoding_of_what_was_judged(
    start_proxy: ProxyFactory, echo_server: TestServer
) -> None:
    proxy = await start_proxy(PII_INPUT, upstream=str(echo_server.make_url("")))
    # Odd spacing a re-encoding drops; key order and numbers it keeps.
    raw = b'{ "model":"m",  "messages": [ {"content": "hi", "role":"user"} ] ,"x":1.50}'
    status, _, body = await post_json(f"{proxy.url}/v1/chat/completions", raw)
    assert status == 200
    forwarded = echoed_body(orjson.loads(body))
    assert forwarded == orjson.dumps(orjson.loads(raw))
    assert forwarded == b'{"model":"m","messages":[{"content":"hi","role":"user"}],"x":1.5}'


async def test_a_duplicate_key_cannot_mean_one_thing_to_the_filters_and_another_upstream(
    start_proxy: ProxyFactory, echo_server: TestServer
) -> None:
    # The filters read the last "messages"; a server whose parser keeps the
    # first would, given the client's bytes, read a prompt no filter saw.
    proxy = await start_proxy(PII_INPUT, upstream=str(echo_server.make_url("")))
    raw = (
        b'{"model":"m","messages":[{"role":"user","content":"mail jane@example.com"}],'
        b'"messages":[{"role":"user","content":"hi"}]}'
    )
    status, _, body = await post_json(f"{proxy.url}/v1/chat/completions", raw)
    assert status == 200
    forwarded = echoed_body(orjson.loads(body))
    assert forwarded.count(b'"messages"') == 1
    assert b"jane@example.com" not in forwarded
    assert orjson.loads(forwarded)["messages"] == [{"role": "user", "content": "hi"}]


async def test_redacted_body_is_rewritten_in_the_right_messages(
    start_proxy: ProxyFactory, echo_server: TestServer
) -> None:
    proxy = await start_proxy(PII_INPUT, upstream=str(echo_server.make_url("")))
    request = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "my card 4111 1111 1111 1111"},
                {"type": "image_url", "image_url": {"url": "http://x/y.png"}},
                {"type": "text", "text": "and mail a@b.org\n\nthanks"},
            ]},
            {"role": "assistant", "content": "ok"},
        ],
    }  # fmt: skip
    status, _, body = await post_json(f"{proxy.url}/v1/chat/completions", request)
    assert status == 200
    forwarded = orjson.loads(echoed_body(orjson.loads(body)))
    messages = forwarded["messages"]
    assert messages[0]["content"] == "Be brief."
    assert messages[1]["content"][0]["text"] == "my card [CREDIT_CARD]"
    assert messages[1]["content"][1] == request["messages"][1]["content"][1]  # type: ignore[index]
    assert messages[1]["content"][2]["text"] == "and mail [EMAIL]\n\nthanks"
    assert messages[2]["content"] == "ok"


async def test_completions_prompt_list_is_redacted_per_item(
    start_proxy: ProxyFactory, echo_server: TestServer
) -> None:
    proxy = await start_proxy(PII_INPUT, upstream=str(echo_server.make_url("")))
    request = {"model": "m", "prompt": ["call 10.1.2.3", "nothing", "ssn 123-45-6789"]}
    _, _, body = await post_json(f"{proxy.url}/v1/completions", request)
    forwarded = orjson.loads(echoed_body(orjson.loads(body)))
    assert forwarded["prompt"] == ["call [IPV4]", "nothing", "ssn [SSN]"]


async def test_headers_hop_by_hop_forwarded_for_and_request_id(
    start_proxy: ProxyFactory, echo_server: TestServer
) -> None:
    proxy = await start_proxy(upstream=str(echo_server.make_url("")))
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            URL(f"{proxy.url}/v1/other/thing?a=1&b=%2F", encoded=True),
            data=b"payload",
            headers={
                "Connection": "keep-alive, X-Drop-Me",
                "X-Drop-Me": "1",
                "Keep-Alive": "timeout=5",
                "Proxy-Authorization": "Basic abc",
                "Authorization": "Bearer sk-keep",
                "X-Forwarded-For": "203.0.113.9",
                "X-Request-Id": "req-123",
                "TE": "trailers",
            },
        ) as response,
    ):
        payload: dict[str, Any] = await response.json()
        response_headers = response.headers
    seen = echoed_headers(payload)
    assert payload["method"] == "POST"
    assert payload["path_qs"] == "/v1/other/thing?a=1&b=%2F"
    assert echoed_body(payload) == b"payload"
    for hop in ("x-drop-me", "keep-alive", "proxy-authorization", "te"):
        assert hop not in seen, hop
    assert seen["authorization"] == "Bearer sk-keep"
    assert seen["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-request-id"] == "req-123"
    assert seen["host"] == f"127.0.0.1:{echo_server.port}"
    # The upstream's own hop-by-hop headers do not reach the client.
    assert "X-Secret-Hop" not in response_headers
    assert response_headers["X-Echo"] == "yes"
    assert response_headers["X-Request-Id"] == "req-123"
    assert "total-until-headers;" in response_headers["Server-Timing"]


async def test_request_id_generated_when_absent_or_unfit(
    start_proxy: ProxyFactory, echo_server: TestServer
) -> None:
    proxy = await start_proxy(upstream=str(echo_server.make_url("")))
    ids = []
    for given in (None, "x" * 500):
        headers = {"X-Request-Id": given} if given else {}
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{proxy.url}/v1/models", headers=headers) as response,
        ):
            payload = await response.json()
            ids.append(response.headers["X-Request-Id"])
            assert echoed_headers(payload)["x-request-id"] == ids[-1]
            # No X-Forwarded-For from the client: the proxy's is its address alone.
            assert echoed_headers(payload)["x-forwarded-for"] == "127.0.0.1"
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert ids[0] != ids[1]


async def test_large_body_is_streamed_through(
    start_proxy: ProxyFactory, echo_server: TestServer
) -> None:
    proxy = await start_proxy(upstream=str(echo_server.make_url("")))
    big = bytes(range(256)) * 4096  # 1 MiB, past the read-whole threshold
    async with (
        aiohttp.ClientSession() as session,
        session.put(f"{proxy.url}/files/upload", data=big) as response,
    ):
        payload = await response.json()
    assert payload["method"] == "PUT"
    assert echoed_body(payload) == big


async def test_server_timing_reports_filters_upstream_and_tax(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy({"filters": [{"name": "pii", "type": "pii"}]})
    status, headers, _ = await post_json(
        f"{proxy.url}/v1/chat/completions",
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert status == 200
    timing = headers["Server-Timing"]
    for entry in ("filter-pii;desc=input;dur=", "filter-pii;desc=output;dur=",
                  "upstream;dur=", "tax-until-headers;", "total-until-headers;"):  # fmt: skip
        assert entry in timing, timing


async def test_compressed_response_passes_through_untouched(
    start_proxy: ProxyFactory, aiohttp_server: ServerFactory
) -> None:
    original = b'{"data": "' + b"z" * 5000 + b'"}'

    async def gz(request: web.Request) -> web.Response:
        assert request.headers.get("Accept-Encoding") == "gzip"
        return web.Response(
            body=gzip.compress(original),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )

    app = web.Application()
    app.router.add_get("/v1/models", gz)
    upstream = await aiohttp_server(app)
    proxy = await start_proxy(upstream=str(upstream.make_url("")))
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.get(f"{proxy.url}/v1/models", headers={"Accept-Encoding": "gzip"}) as response,
    ):
        raw = await response.read()
        assert response.headers["Content-Encoding"] == "gzip"
        assert response.headers["Content-Length"] == str(len(raw))
    assert gzip.decompress(raw) == original


async def test_judged_response_is_asked_for_uncompressed(
    start_proxy: ProxyFactory, aiohttp_server: ServerFactory
) -> None:
    seen: list[str | None] = []

    async def completion(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Accept-Encoding"))
        return web.json_response(
            {"choices": [{"index": 0, "text": "fine", "finish_reason": "stop"}]}
        )

    app = web.Application()
    app.router.add_post("/v1/completions", completion)
    upstream = await aiohttp_server(app)
    proxy = await start_proxy(
        {"filters": [{"name": "pii", "type": "pii"}]}, upstream=str(upstream.make_url(""))
    )
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{proxy.url}/v1/completions",
            json={"model": "m", "prompt": "x"},
            headers={"Accept-Encoding": "gzip, br"},
        ) as response,
    ):
        payload = await response.json()
    assert payload["choices"][0]["text"] == "fine"
    assert seen == [None]


@pytest.mark.parametrize(
    "filters",
    [[{"name": "pii", "type": "pii"}], [{"name": "pii", "type": "pii", "stages": ["input"]}]],
    ids=["judged-whole", "relayed"],
)
async def test_an_answer_compressed_anyway_is_labelled_as_it_reaches_the_client(
    start_proxy: ProxyFactory, aiohttp_server: ServerFactory, filters: list[dict[str, Any]]
) -> None:
    # A model server that compresses though it was not asked to: what the
    # client is told of the encoding must be true of the bytes it gets.
    answer = {"choices": [{"index": 0, "text": "fine", "finish_reason": "stop"}]}

    async def completion(request: web.Request) -> web.Response:
        return web.Response(
            body=gzip.compress(orjson.dumps(answer)),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )

    app = web.Application()
    app.router.add_post("/v1/completions", completion)
    upstream = await aiohttp_server(app)
    proxy = await start_proxy({"filters": filters}, upstream=str(upstream.make_url("")))
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.post(f"{proxy.url}/v1/completions", json={"model": "m", "prompt": "x"}) as response,
    ):
        raw = await response.read()
        assert response.status == 200
        encoding = response.headers.get("Content-Encoding")
    # Read whole to judge it: inflated and unlabelled. Relayed: as it came, labelled.
    if len(filters[0].get("stages", ())) == 1:
        assert encoding == "gzip"
        raw = gzip.decompress(raw)
    else:
        assert encoding is None
    assert orjson.loads(raw) == answer


async def test_upstream_status_and_error_bodies_pass_through(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy({"filters": [{"name": "pii", "type": "pii"}]})
    status, _, body = await post_json(f"{proxy.url}/v1/chat/completions", {"model": "m"})
    assert status == 400  # the model server's own error for a missing field
    assert orjson.loads(body)["error"]["type"] == "invalid_request_error"
    assert proxy.value("taxmeter_requests_total", route="chat_completions",
                       variant="default", outcome="client_error") == 1  # fmt: skip


@pytest.mark.parametrize(
    ("status", "encoding"), [(300, None), (304, None), (404, None), (404, "gzip")]
)
async def test_an_answer_outside_2xx_is_relayed_as_it_came_on_a_judged_route(
    start_proxy: ProxyFactory, aiohttp_server: ServerFactory, status: int, encoding: str | None
) -> None:
    """Only a 2xx is an answer to judge; 3xx and the rest are the model server's own
    (inflated, when compressed, as any answer the proxy reads, and labelled so)."""
    document = {"error": {"message": f"answered {status}", "type": "upstream"}}

    async def answer(request: web.Request) -> web.Response:
        if status == 304:
            return web.Response(status=304)
        body = orjson.dumps(document)
        headers = {"Content-Encoding": encoding} if encoding else {}
        return web.Response(
            body=gzip.compress(body) if encoding else body,
            status=status,
            content_type="application/json",
            headers=headers,
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    upstream = await aiohttp_server(app)
    proxy = await start_proxy(
        {"filters": [{"name": "pii", "type": "pii"}]}, upstream=str(upstream.make_url(""))
    )
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    got, _, body = await post_json(f"{proxy.url}/v1/chat/completions", chat)
    assert got == status
    assert body == (b"" if status == 304 else orjson.dumps(document))


ANSWER = b'{"id":"c","object":"chat.completion","choices":[]}'


def raw_answer(
    head: str,
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """A model server answering every request with ``head`` and ANSWER."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                request = await read_request_head(reader)
            except asyncio.IncompleteReadError:
                return  # the proxy closed the connection
            length = re.search(rb"(?i)content-length: *(\d+)", request)
            await reader.readexactly(int(length.group(1)) if length else 0)
            writer.write(f"{head}\r\nContent-Length: {len(ANSWER)}\r\n\r\n".encode() + ANSWER)
            await writer.drain()

    return answer


@pytest.mark.parametrize(
    "filters",
    [[], PII_INPUT["filters"], [{"name": "pii", "type": "pii"}]],
    ids=["relayed", "judged on the way in", "judged both ways"],
)
async def test_the_model_server_s_reason_phrase_reaches_the_client(
    start_proxy: ProxyFactory, raw_server: RawFactory, filters: list[object]
) -> None:
    server = await raw_server(
        raw_answer("HTTP/1.1 200 Fine By Me\r\nContent-Type: application/json")
    )
    proxy = await start_proxy({"filters": filters}, upstream=server.url)
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{proxy.url}/v1/chat/completions", json=CHAT) as response,
    ):
        assert (response.status, response.reason) == (200, "Fine By Me")


async def test_an_answer_without_a_content_type_is_relayed_when_no_output_filter_reads_it(
    start_proxy: ProxyFactory, raw_server: RawFactory
) -> None:
    server = await raw_server(raw_answer("HTTP/1.1 200 OK"))
    proxy = await start_proxy(PII_INPUT, upstream=server.url)
    status, _, body = await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
    assert (status, body) == (200, ANSWER)


async def test_invalid_json_to_a_judged_route_is_a_clear_400(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy({"filters": [{"name": "pii", "type": "pii"}]})
    for raw, code in ((b"{not json", "invalid_json"), (b'{"messages": "hi"}', "invalid_body")):
        status, headers, body = await post_json(f"{proxy.url}/v1/chat/completions", raw)
        assert status == 400
        assert headers["Content-Type"].startswith("application/json")
        error = orjson.loads(body)["error"]
        assert error["code"] == code
        assert error["type"] == "invalid_request_error"
        assert error["param"] is None
    # And the proxy keeps serving.
    status, _, _ = await post_json(
        f"{proxy.url}/v1/chat/completions",
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert status == 200


async def test_the_proxy_adds_no_default_headers_of_its_own(
    start_proxy: ProxyFactory, echo_server: TestServer
) -> None:
    proxy = await start_proxy(upstream=str(echo_server.make_url("")))
    reader, writer = await asyncio.open_connection(proxy.server.host, proxy.server.port)
    writer.write(b"POST /v1/other HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                 b"Connection: close\r\n\r\nhi")  # fmt: skip
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    payload = orjson.loads(raw.partition(b"\r\n\r\n")[2])
    seen = echoed_headers(payload)
    for added in ("user-agent", "accept", "accept-encoding", "content-type"):
        assert added not in seen, (added, seen)
    assert echoed_body(payload) == b"hi"
