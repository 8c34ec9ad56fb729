"""An answer the proxy reads is bounded by ``upstream.max_response_bytes``, once inflated.

The pool against a raw-socket server (tests/upstream/raw_upstream.py), then the
proxy: a judged JSON answer over the limit is a 502
``upstream_response_too_large``, a judged stream ends with that error event,
an answer passed through is never capped (docs/reliability.md, "Bounded
upstream answers"). The memory a gzip bomb costs a real ``taxmeter serve`` is
tests/reliability/test_upstream_bounds.py.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import random
import zlib
from collections.abc import Callable

import aiohttp
import orjson
import pytest

from proxy.upstream.response import UpstreamTooLarge
from tests.loopback import ProxyFactory
from tests.reliability.fault_upstream import chunked, completion, sse_chunk
from tests.upstream.raw_upstream import get, pool_for, raw_server, read_all, response

CAP = 64 * 1024


def chunked_head(content_type: str, *extra: str) -> bytes:
    lines = "".join(f"{line}\r\n" for line in extra)
    return (
        f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n"
        f"Transfer-Encoding: chunked\r\n{lines}\r\n"
    ).encode()


async def test_a_length_over_the_cap_fails_before_the_body_is_read() -> None:
    async def promises_much(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {CAP + 1}\r\n\r\n".encode())
        await writer.drain()
        await asyncio.sleep(5)  # the body never comes: it must not be waited for
        return False

    async with raw_server(promises_much) as (_, url):
        pool = pool_for(url, max_response_bytes=CAP)
        async with asyncio.timeout(2):
            with pytest.raises(UpstreamTooLarge, match="max_response_bytes"):
                await get(pool, decode=True)
        assert pool.open_connections == 0
        await pool.close()


@pytest.mark.parametrize(
    ("method", "status", "connections"),
    # A 204 may not declare a body (RFC 9110): one that does is not trusted again.
    [("HEAD", "200 OK", 1), ("GET", "204 No Content", 2), ("GET", "304 Not Modified", 1)],
)
async def test_the_length_of_an_answer_without_a_body_is_not_its_own(
    method: str, status: str, connections: int
) -> None:
    async def describes_much(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(f"HTTP/1.1 {status}\r\nContent-Length: {10 * CAP}\r\n\r\n".encode())
        return True

    async with raw_server(describes_much) as (server, url):
        pool = pool_for(url, max_response_bytes=CAP)
        for _ in range(2):
            assert await read_all(pool, method=method, decode=True) == (int(status[:3]), b"")
        assert server.connections == connections
        await pool.close()


async def test_an_answer_of_exactly_the_cap_is_read() -> None:
    body = b"x" * CAP

    async def at_the_cap(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(response("200 OK", body))
        return True

    async with raw_server(at_the_cap) as (_, url):
        pool = pool_for(url, max_response_bytes=CAP)
        assert await read_all(pool, decode=True) == (200, body)
        await pool.close()


async def test_a_body_without_length_is_counted_as_it_arrives() -> None:
    sent = 0

    async def endless(head: bytes, writer: asyncio.StreamWriter) -> bool:
        nonlocal sent
        writer.write(chunked_head("application/json"))
        while sent < 64 * CAP:  # unless the proxy hangs up first
            writer.write(chunked(b"y" * 4096))
            await writer.drain()
            sent += 4096
            await asyncio.sleep(0.001)
        writer.write(b"0\r\n\r\n")
        return True

    async with raw_server(endless) as (server, url):
        pool = pool_for(url, max_response_bytes=CAP)
        answer = await get(pool, decode=True)
        with pytest.raises(UpstreamTooLarge):
            await answer.read()
        answer.close()
        await asyncio.sleep(0.1)
        assert server.closed == 1  # the proxy closed the connection
        assert sent < 4 * CAP
        await pool.close()


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [("gzip", gzip.compress), ("deflate", lambda data: zlib.compress(data)[2:-4])],
)
async def test_the_cap_counts_inflated_bytes(
    encoding: str, encode: Callable[[bytes], bytes]
) -> None:
    # Two bits a byte inflate ~3.5 times: under the ratio bound, over the cap once inflated.
    text = bytes(random.Random(1).choices(b"abcd", k=2 * CAP))
    body = encode(text)
    assert len(body) < CAP

    async def compressed(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(response("200 OK", body, f"Content-Encoding: {encoding}"))
        return True

    async with raw_server(compressed) as (_, url):
        pool = pool_for(url, max_response_bytes=CAP)
        answer = await get(pool, decode=True)
        with pytest.raises(UpstreamTooLarge):
            await answer.read()
        answer.close()
        assert pool.open_connections == 0
        await pool.close()


async def test_a_gzip_bomb_stops_at_its_ratio_not_the_cap() -> None:
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))  # ~64 KB inflating 1,000 times

    async def bombing(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(response("200 OK", bomb, "Content-Encoding: gzip"))
        return True

    async with raw_server(bombing) as (_, url):
        pool = pool_for(url)  # the default cap, 64 MiB: the ratio bound stops it first
        answer = await get(pool, decode=True)
        most = 0

        async def read_on() -> None:
            nonlocal most
            while chunk := await answer.read_chunk():
                most = max(most, len(chunk))  # what was inflated ahead of the reader

        with pytest.raises(UpstreamTooLarge, match="times"):
            await read_on()
        assert most < 4 * 1024 * 1024
        answer.close()
        await pool.close()


async def test_an_answer_not_decoded_is_neither_inflated_nor_capped() -> None:
    body = gzip.compress(os.urandom(4 * CAP))

    async def large(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(response("200 OK", body, "Content-Encoding: gzip"))
        return True

    async with raw_server(large) as (server, url):
        pool = pool_for(url, max_response_bytes=CAP)
        for _ in range(2):
            assert await read_all(pool, decode=False) == (200, body)
        assert server.connections == 1
        await pool.close()


# -- through the proxy ----------------------------------------------------------
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
BIG = completion("z" * (2 * CAP))
# An output filter: the answer is read whole to be judged, so the cap holds it.
OUTPUT_FILTER = {"name": "deny", "type": "denylist", "stages": ["output"],
                 "params": {"words": ["never said"]}}  # fmt: skip


def big_json(framing: str) -> bytes:
    if framing == "content-length":
        return response("200 OK", BIG, "Content-Type: application/json")
    return chunked_head("application/json") + chunked(BIG) + b"0\r\n\r\n"


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_json_answer_over_max_response_bytes_is_a_502(
    start_proxy: ProxyFactory, framing: str
) -> None:
    count = 0

    async def big_first(head: bytes, writer: asyncio.StreamWriter) -> bool:
        nonlocal count
        count += 1
        own = response("200 OK", completion("fine"), "Content-Type: application/json")
        writer.write(big_json(framing) if count == 1 else own)
        await writer.drain()
        return True

    async with raw_server(big_first) as (server, url):
        config = {"upstream": {"max_response_bytes": CAP}, "filters": [OUTPUT_FILTER]}
        proxy = await start_proxy(config, upstream=url)
        async with aiohttp.ClientSession() as session:
            chat = f"{proxy.url}/v1/chat/completions"
            async with session.post(chat, json=CHAT) as got:
                assert got.status == 502
                error = orjson.loads(await got.read())["error"]
                assert error["code"] == "upstream_response_too_large"
                assert "max_response_bytes" in error["message"]
            async with session.post(chat, json=CHAT) as got:
                assert got.status == 200
                assert orjson.loads(await got.read())["choices"][0]["message"]["content"] == "fine"
        assert server.connections == 2  # the one the answer was cut on was closed
        await proxy.settle()
        assert (
            proxy.value(
                "taxmeter_requests_total",
                route="chat_completions",
                variant="default",
                outcome="upstream_error",
            )
            == 1
        )


async def test_a_judged_stream_over_the_cap_ends_with_an_error_event(
    start_proxy: ProxyFactory,
) -> None:
    async def streams_on(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(chunked_head("text/event-stream") + chunked(sse_chunk("hello ")))
        await writer.drain()
        for _ in range(4 * CAP // 1000):  # ~150 bytes an event
            writer.write(chunked(sse_chunk("token ") * 8))
            await writer.drain()
            await asyncio.sleep(0)
        writer.write(chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        return True

    async with raw_server(streams_on) as (server, url):
        proxy = await start_proxy({"upstream": {"max_response_bytes": CAP}}, upstream=url)
        async with aiohttp.ClientSession() as session:
            chat = f"{proxy.url}/v1/chat/completions"
            async with session.post(chat, json={**CHAT, "stream": True}) as got:
                assert got.status == 200
                text = (await got.read()).decode()
        events = [event for event in text.split("\n\n") if event]
        assert '"hello "' in events[0]
        last = orjson.loads(events[-1].removeprefix("data: "))
        assert last["error"]["code"] == "upstream_response_too_large"
        assert isinstance(last["error"]["message"], str)  # says what happened, in words
        assert "[DONE]" not in text
        await asyncio.sleep(0.05)
        assert server.closed == 1  # the proxy hung up on the upstream


async def test_an_answer_passed_through_is_not_capped(start_proxy: ProxyFactory) -> None:
    async def models(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(response("200 OK", BIG, "Content-Type: application/json"))
        return True

    async with raw_server(models) as (_, url):
        proxy = await start_proxy({"upstream": {"max_response_bytes": CAP}}, upstream=url)
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{proxy.url}/v1/models") as got,
        ):
            assert (got.status, await got.read()) == (200, BIG)


async def test_an_answer_no_output_filter_reads_is_relayed_past_the_cap(
    start_proxy: ProxyFactory,
) -> None:
    # With no output filter the answer is not read, so neither buffered nor capped:
    # it goes to the client as it came, like an unjudged route's.
    async def big(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(big_json("chunked"))
        await writer.drain()
        return True

    async with raw_server(big) as (_, url):
        proxy = await start_proxy({"upstream": {"max_response_bytes": CAP}}, upstream=url)
        async with aiohttp.ClientSession() as session:
            chat = f"{proxy.url}/v1/chat/completions"
            async with session.post(chat, json=CHAT) as got:
                assert got.status == 200
                assert await got.read() == BIG
