"""A request body streamed upstream with a Content-Length is exactly that long, or not sent.

A body longer than its length would put the excess on the connection as the
start of a second request (request smuggling, and the second answer would be
the next client's); a shorter one leaves the upstream waiting for bytes that
never come, and its request would take the next one's first bytes. The
recording server below keeps every byte it received, on each connection
(docs/reliability.md, "Request bodies framed exactly").
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from multidict import CIMultiDict

from proxy.measure.timeline import Timeline
from proxy.upstream.call import classify_failure
from proxy.upstream.pool import BodyLengthMismatch, UpstreamPool
from tests.upstream.raw_upstream import pool_serving

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: upstream\r\n\r\n"


@dataclass
class Recorder:
    """Keeps all it read per connection; answers each request once its declared body is in."""

    received: list[bytearray] = field(default_factory=list)
    ended: int = 0  # connections the proxy closed

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got = bytearray()
        self.received.append(got)
        pending = bytearray()
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                got += chunk
                pending += chunk
                while (end := pending.find(b"\r\n\r\n")) >= 0:
                    length = _length(bytes(pending[:end]))
                    if len(pending) < end + 4 + length:
                        break
                    del pending[: end + 4 + length]
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        self.ended += 1
        writer.close()


def _length(head: bytes) -> int:
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


@contextlib.asynccontextmanager
async def recording() -> AsyncIterator[tuple[Recorder, UpstreamPool]]:
    recorder = Recorder()
    async with pool_serving(recorder.serve, read_timeout_s=2) as pool:
        yield recorder, pool


async def pieces(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        await asyncio.sleep(0.01)  # each its own write
        yield part


async def post(pool: UpstreamPool, length: int, body: AsyncIterator[bytes]) -> tuple[int, bytes]:
    headers = CIMultiDict([("Content-Length", str(length))])
    answer = await pool.request("POST", "/v1/x", headers, body, Timeline(None), decode=False)
    try:
        return answer.status, await answer.read()
    finally:
        answer.close()


def body_of(received: bytearray) -> bytes:
    return bytes(received[received.index(b"\r\n\r\n") + 4 :])


@pytest.mark.parametrize(
    "parts",
    [
        (b"hel", b"lo", SMUGGLED),  # the excess in a piece of its own
        (b"hel", b"lo" + SMUGGLED),  # the excess in the piece that completes the length
        (b"hello", b"", SMUGGLED),
    ],
)
async def test_a_body_longer_than_its_length_never_reaches_the_upstream_whole(
    parts: tuple[bytes, ...],
) -> None:
    async with recording() as (recorder, pool):
        with pytest.raises(BodyLengthMismatch, match="longer"):
            await post(pool, 5, pieces(*parts))
        assert pool.open_connections == 0
        await asyncio.sleep(0.05)
        assert recorder.ended == 1
        received = body_of(recorder.received[0])
        assert b"smuggled" not in received
        assert len(received) < 5  # not even a whole request: the upstream answers nothing
        assert await post(pool, 5, pieces(b"hel", b"lo")) == (200, b"ok")
        assert len(recorder.received) == 2


async def test_a_body_shorter_than_its_length_is_not_left_waiting() -> None:
    async with recording() as (recorder, pool):
        async with asyncio.timeout(1):  # not the read timeout's wait for an answer
            with pytest.raises(BodyLengthMismatch, match="shorter"):
                await post(pool, 20, pieces(b"hel", b"lo"))
        assert pool.open_connections == 0
        await asyncio.sleep(0.05)
        assert recorder.ended == 1
        assert body_of(recorder.received[0]) == b"hello"
        assert await post(pool, 5, pieces(b"hello")) == (200, b"ok")
        assert len(recorder.received) == 2


async def test_a_body_of_its_length_goes_whole_on_a_reused_connection() -> None:
    async with recording() as (recorder, pool):
        for _ in range(2):
            assert await post(pool, 11, pieces(b"hello", b"", b" world")) == (200, b"ok")
        assert len(recorder.received) == 1
        assert recorder.received[0].count(b"hello world") == 2


def test_a_body_that_is_not_its_length_is_the_clients_fault() -> None:
    failure = classify_failure(BodyLengthMismatch("the request body is shorter"))
    assert (failure.status, failure.code, failure.outcome) == (400, "invalid_body", "client_error")
