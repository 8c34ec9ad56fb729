"""A compression bomb from the model server costs a real ``taxmeter serve`` a bounded step.

300 KB of gzip that inflates to 300 MiB, as a judged JSON answer and as a
judged stream, from a raw-socket upstream. Each case gets a fresh process,
whose peak resident memory (``VmHWM`` in /proc/PID/status) is read after the
answer: it stays under 300 MB, the client gets ``upstream_response_too_large``
and the next request is served (docs/reliability.md, "Bounded upstream answers").
"""

from __future__ import annotations

import asyncio
import re
import zlib
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from tests.fresh_serve import fresh_serve, peak_rss_bytes
from tests.reliability.fault_upstream import chunked, completion
from tests.upstream.raw_upstream import raw_server, response

INFLATED_BYTES = 300 * 1024 * 1024
PEAK_RSS_LIMIT = 300 * 1000 * 1000
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}


def gzip_of(prefix: bytes, filler: bytes, suffix: bytes) -> bytes:
    """``prefix + filler * n + suffix`` of INFLATED_BYTES, gzipped a MiB at a time."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [packer.compress(prefix)]
    block = filler * (1024 * 1024 // len(filler))
    for _ in range(INFLATED_BYTES // len(block)):
        parts.append(packer.compress(block))
    parts += [packer.compress(suffix), packer.flush()]
    return b"".join(parts)


@pytest.fixture(scope="module")
def json_bomb() -> bytes:
    head, tail = completion("@").split(b"@")
    return gzip_of(head, b"a", tail)


@pytest.fixture(scope="module")
def sse_bomb() -> bytes:
    return gzip_of(b'data: {"choices": [{"index": 0, "delta": {"content": "', b"a", b'"}}]}\n\n')


async def upstream_answer(
    head: bytes, writer: asyncio.StreamWriter, bombs: dict[str, bytes]
) -> bool:
    """A bomb when the request's X-Answer names one (the proxy forwards it), else a completion."""
    asked = re.search(rb"(?i)\r\nx-answer: (\w+)", head)
    kind = asked.group(1).decode().lower() if asked else ""
    if kind == "json":
        writer.write(
            response(
                "200 OK", bombs[kind], "Content-Type: application/json", "Content-Encoding: gzip"
            )
        )
    elif kind == "sse":
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Encoding: gzip\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        writer.write(chunked(bombs[kind]) + b"0\r\n\r\n")  # read as fast as the proxy can
    else:
        writer.write(response("200 OK", completion("fine"), "Content-Type: application/json"))
    await writer.drain()
    return True


@pytest.fixture
async def served(json_bomb: bytes, sse_bomb: bytes) -> AsyncIterator[tuple[int, str]]:
    """A fresh `taxmeter serve` (default filters) in front of the bombing upstream: pid, URL."""
    bombs = {"json": json_bomb, "sse": sse_bomb}

    async def answer(head: bytes, writer: asyncio.StreamWriter) -> bool:
        return await upstream_answer(head, writer, bombs)

    async with raw_server(answer) as (_, upstream), fresh_serve(upstream) as served:
        yield served


async def chat(url: str, answer: str = "", stream: bool = False) -> tuple[int, bytes]:
    timeout = aiohttp.ClientTimeout(total=300)  # before the bound, the bomb took minutes
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.post(
            f"{url}/v1/chat/completions",
            json={**CHAT, "stream": stream},
            headers={"X-Answer": answer} if answer else {},
        ) as got,
    ):
        return got.status, await got.read()


async def assert_served_next(url: str) -> None:
    status, body = await chat(url)
    assert status == 200, body
    assert orjson.loads(body)["choices"][0]["message"]["content"] == "fine"


async def test_a_gzip_bomb_as_a_json_answer_is_cut_in_bounded_memory(
    served: tuple[int, str], json_bomb: bytes
) -> None:
    pid, url = served
    assert len(json_bomb) < 400 * 1024
    await assert_served_next(url)
    status, body = await chat(url, "json")
    peak = peak_rss_bytes(pid)
    print(f"peak RSS {peak / 1e6:.0f} MB")  # the figure docs/reliability.md quotes; see it with -s
    assert peak < PEAK_RSS_LIMIT, f"peak RSS {peak / 1e6:.0f} MB"
    assert status == 502, body[:200]
    assert orjson.loads(body)["error"]["code"] == "upstream_response_too_large"
    await assert_served_next(url)


async def test_a_gzip_bomb_as_a_stream_is_cut_in_bounded_memory(
    served: tuple[int, str], sse_bomb: bytes
) -> None:
    pid, url = served
    assert len(sse_bomb) < 400 * 1024
    await assert_served_next(url)
    status, body = await chat(url, "sse", stream=True)
    peak = peak_rss_bytes(pid)
    print(f"peak RSS {peak / 1e6:.0f} MB")  # the figure docs/reliability.md quotes; see it with -s
    assert peak < PEAK_RSS_LIMIT, f"peak RSS {peak / 1e6:.0f} MB"
    if status == 502:  # cut before the stream started
        error = orjson.loads(body)["error"]
    else:
        assert status == 200, body[:200]
        last = body.rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
        error = orjson.loads(last.removeprefix(b"data: "))["error"]
    assert error["code"] == "upstream_response_too_large"
    await assert_served_next(url)
