"""A pooled connection serves the next request only when its answer ended exactly.

For each way an HTTP/1.1 answer can end, the connection is reused when
nothing else was sent, and closed when anything was: a second answer in the
same write, the start of one, stray bytes, or bytes arriving while the
answer is still being read. Otherwise what is left over would be read as
the next request's answer (docs/reliability.md, "Upstream connection hygiene").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import orjson
import pytest

from tests.loopback import ProxyFactory
from tests.reliability.fault_upstream import completion
from tests.upstream.raw_upstream import Answer, get, pool_for, raw_server, read_all, response


@dataclass(frozen=True)
class Ending:
    """One way an answer ends: how it is framed, and whether its connection may serve again."""

    name: str
    frame: Callable[[bytes], bytes]
    reusable: bool
    method: str = "GET"
    status: int = 200
    has_body: bool = True  # False: the answer carries no body, whatever its headers say


def _chunked(body: bytes, trailers: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"%x\r\n%b\r\n0\r\n%b\r\n" % (
        len(body),
        body,
        trailers,
    )


ENDINGS = [
    Ending("content-length", lambda body: response("200 OK", body), reusable=True),
    Ending("chunked", _chunked, reusable=True),
    Ending("chunked with trailers", lambda body: _chunked(body, b"X-Done: 1\r\n"), reusable=True),
    Ending(
        "1xx before the answer",
        lambda body: (
            b"HTTP/1.1 100 Continue\r\n\r\n"
            + b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
            + response("200 OK", body)
        ),
        reusable=True,
    ),
    Ending(
        "204 with a length",  # forbidden: a body may follow it after all
        lambda body: b"HTTP/1.1 204 No Content\r\nContent-Length: 40\r\n\r\n",
        reusable=False,
        status=204,
        has_body=False,
    ),
    Ending(
        "304 said chunked",
        lambda body: b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
        reusable=True,
        status=304,
        has_body=False,
    ),
    Ending(
        "HEAD",
        lambda body: b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
        reusable=True,
        method="HEAD",
        has_body=False,
    ),
    Ending(
        "HTTP/1.0 keep-alive",
        lambda body: (
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: %d\r\n\r\n%b"
            % (len(body), body)
        ),
        reusable=True,
    ),
    Ending("close-delimited", lambda body: b"HTTP/1.1 200 OK\r\n\r\n" + body, reusable=False),
    Ending(
        "Connection: close",
        lambda body: response("200 OK", body, "Connection: close"),
        reusable=False,
    ),
    Ending(
        "HTTP/1.0",
        lambda body: b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body),
        reusable=False,
    ),
]

LEFTOVERS = {
    "a second answer": response("200 OK", b"appended"),
    "a second head": b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n",
    "part of a head": b"HTTP/1.1 200 OK\r\nX-Pad: ",
    "part of a body": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nappe",
    "a large second answer": response("200 OK", b"a" * (512 * 1024)),
    "stray bytes": b"xyz",
}


def _numbered(ending: Ending, leftover: bytes = b"") -> Answer:
    """An answer function: answer N to the Nth request, ``leftover`` after the first."""
    count = 0

    async def answer(head: bytes, writer: asyncio.StreamWriter) -> bool:
        nonlocal count
        count += 1
        writer.write(ending.frame(b"answer %d" % count) + (leftover if count == 1 else b""))
        await writer.drain()
        # False: the end of the connection is the end of the body.
        return ending.name != "close-delimited"

    return answer


def _expected(ending: Ending, n: int) -> tuple[int, bytes]:
    return ending.status, b"answer %d" % n if ending.has_body else b""


@pytest.mark.parametrize("ending", ENDINGS, ids=lambda ending: ending.name)
async def test_a_connection_is_reused_exactly_when_its_answer_ended_cleanly(
    ending: Ending,
) -> None:
    async with raw_server(_numbered(ending)) as (server, url):
        pool = pool_for(url, read_timeout_s=2)  # a regression waits for a body, then fails
        for n in (1, 2):
            assert await read_all(pool, method=ending.method) == _expected(ending, n)
            assert pool.idle_connections == (1 if ending.reusable else 0)
        assert server.connections == (1 if ending.reusable else 2)
        await pool.close()


@pytest.mark.parametrize("leftover", LEFTOVERS.values(), ids=LEFTOVERS.keys())
@pytest.mark.parametrize(
    "ending", [e for e in ENDINGS if e.reusable], ids=lambda ending: ending.name
)
async def test_bytes_after_the_end_of_an_answer_close_its_connection(
    ending: Ending, leftover: bytes
) -> None:
    async with raw_server(_numbered(ending, leftover)) as (server, url):
        pool = pool_for(url, read_timeout_s=2)
        assert await read_all(pool, method=ending.method) == _expected(ending, 1)
        assert pool.idle_connections == 0
        assert await read_all(pool, method=ending.method) == _expected(ending, 2)
        assert server.connections == 2
        await pool.close()


async def test_bytes_arriving_while_the_answer_is_still_read_close_its_connection() -> None:
    count = 0

    async def late_extra(head: bytes, writer: asyncio.StreamWriter) -> bool:
        nonlocal count
        count += 1
        writer.write(response("200 OK", b"answer %d" % count))
        if count == 1:
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"HTTP/1.1 200 OK\r\n")  # the start of an answer to nothing
        return True

    async with raw_server(late_extra) as (server, url):
        pool = pool_for(url, read_timeout_s=2)
        answer = await get(pool)
        assert await answer.read() == b"answer 1"
        await asyncio.sleep(0.15)  # the caller still holds the answer (a filter runs)
        answer.close()
        assert pool.idle_connections == 0
        assert await read_all(pool) == (200, b"answer 2")
        assert server.connections == 2
        await pool.close()


async def test_bytes_waiting_unread_when_the_answer_is_done_close_its_connection() -> None:
    """The answer's end fills the read buffer, reading stops, and the extra bytes stay in
    the kernel until after the answer was handed back: still never the next one's answer."""
    count = 0

    async def extra_later(head: bytes, writer: asyncio.StreamWriter) -> bool:
        nonlocal count
        count += 1
        writer.write(response("200 OK", b"%d" % count + b"." * (300 * 1024)))
        if count == 1:
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(response("200 OK", b"appended"))
        return True

    async with raw_server(extra_later) as (server, url):
        pool = pool_for(url, read_timeout_s=2)
        answer = await get(pool)
        await asyncio.sleep(0.2)  # over the buffer mark: the connection stopped reading
        assert (await answer.read())[:1] == b"1"
        answer.close()
        status, body = await read_all(pool)  # at once, before the loop reads again
        assert (status, body[:1]) == (200, b"2")
        assert server.connections == 2
        await pool.close()


APPENDED = {
    "whole": response("200 OK", completion("appended"), "Content-Type: application/json"),
    "cut short": response("200 OK", completion("appended"), "Content-Type: application/json")[:-10],
}


@pytest.mark.parametrize("appended", APPENDED.values(), ids=APPENDED.keys())
@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/v1/chat/completions"), ("GET", "/v1/models")]
)
async def test_an_answer_appended_to_another_never_reaches_the_next_client(
    start_proxy: ProxyFactory, appended: bytes, method: str, path: str
) -> None:
    """Through the proxy, judged (chat) and passed through (models)."""
    count = 0

    async def answer(head: bytes, writer: asyncio.StreamWriter) -> bool:
        nonlocal count
        count += 1
        own = response("200 OK", completion(f"answer {count}"), "Content-Type: application/json")
        writer.write(own + (appended if count == 1 else b""))
        await writer.drain()
        return True

    async with raw_server(answer) as (server, url):
        proxy = await start_proxy(upstream=url)
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        contents = []
        async with aiohttp.ClientSession() as session:
            for _ in range(3):
                async with session.request(method, proxy.url + path, json=body) as got:
                    assert got.status == 200, await got.text()
                    answer_json = orjson.loads(await got.read())
                    contents.append(answer_json["choices"][0]["message"]["content"])
        assert contents == ["answer 1", "answer 2", "answer 3"]
        assert server.connections == 2  # the one with bytes left over was closed
