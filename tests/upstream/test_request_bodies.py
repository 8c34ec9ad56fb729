"""Every kind of request body the pool sends reaches the upstream whole, however slowly it reads.

A body is sent one of four ways (proxy.upstream.pool): small bytes with the
head, large bytes in slices, a re-encoded document in pieces, or a body
streamed as the client sends it. Here the upstream reads nothing for a while,
so the kernel's buffers fill and the writes pause (``pause_writing``) and
resume; the answer is compressed, and each way must still ask for it to be
read inflated when the proxy reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
from collections.abc import AsyncIterator, Callable

import pytest
from multidict import CIMultiDict

from proxy.formats.json_pieces import EncodedDocument
from proxy.upstream.pool import UpstreamPool, _declared_length
from tests.upstream.raw_upstream import RawServer, get, pool_serving, response

# Past what loopback's socket buffers hold (a few MiB each way), so the
# writer has to wait for the reader.
LARGE = 24 * 1024 * 1024
ANSWER = b'{"text": "' + b"an answer " * 500 + b'"}'


async def gzipped(head: bytes, writer: asyncio.StreamWriter) -> bool:
    writer.write(response("200 OK", gzip.compress(ANSWER), "Content-Encoding: gzip"))
    return True


@contextlib.asynccontextmanager
async def slow_reader(
    wait_s: float = 0.3, reading: Callable[[], None] = lambda: None
) -> AsyncIterator[tuple[RawServer, UpstreamPool]]:
    """An upstream that reads nothing for ``wait_s`` after each connect, then (after
    calling ``reading``) reads all."""
    state = RawServer(gzipped)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(wait_s)
        reading()
        await state.serve(reader, writer)

    async with pool_serving(serve) as pool:
        yield state, pool


class Chunks:
    """A body streamed in 1 MiB chunks, counting what the pool has taken of it."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.taken = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.data), 1024 * 1024):
            await asyncio.sleep(0)
            chunk = self.data[start : start + 1024 * 1024]
            self.taken += len(chunk)
            yield chunk


def sent_body(request: bytes) -> bytes:
    return request.split(b"\r\n\r\n", 1)[1]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()  # 24 MiB compared without a 24 MiB diff


def body_of_kind(kind: str) -> tuple[bytes | EncodedDocument, bytes]:
    """What the pool is given, and the bytes the upstream must receive."""
    if kind == "small bytes":
        return b'{"a": 1}', b'{"a": 1}'
    if kind == "large bytes":
        large = bytes(range(256)) * (LARGE // 256)
        return large, large
    encoded = EncodedDocument({"messages": [{"role": "user", "content": "z" * LARGE}]})
    return encoded, b"".join(encoded)


@pytest.mark.parametrize("kind", ["small bytes", "large bytes", "re-encoded document"])
async def test_a_body_reaches_a_slow_upstream_whole_and_its_answer_is_inflated(kind: str) -> None:
    body, expected = body_of_kind(kind)
    async with slow_reader() as (server, pool):
        answer = await get(pool, method="POST", body=body, decode=True)
        assert (answer.status, await answer.read()) == (200, ANSWER)
        answer.close()
        assert digest(sent_body(server.requests[0])) == digest(expected)
        assert f"Content-Length: {len(expected)}\r\n".encode() in server.requests[0]


@pytest.mark.parametrize("declared", [True, False], ids=["with its length", "chunked"])
async def test_a_streamed_body_reaches_a_slow_upstream_whole_and_its_answer_is_inflated(
    declared: bool,
) -> None:
    data = bytes(range(256)) * (LARGE // 256)
    headers = CIMultiDict([("Content-Length", str(len(data)))] if declared else [])
    body = Chunks(data)
    taken_unread: list[int] = []
    async with slow_reader(reading=lambda: taken_unread.append(body.taken)) as (server, pool):
        answer = await get(pool, method="POST", body=body, headers=headers, decode=True)
        assert (answer.status, await answer.read()) == (200, ANSWER)
        answer.close()
        # The raw server reassembles chunks: what it kept is the body itself.
        assert digest(sent_body(server.requests[0])) == digest(data)
    # Held back while nobody read: no more taken than the socket buffers hold
    # (5 MiB of the 24 on a 2-core host), not the whole body into the proxy's memory.
    assert taken_unread[0] < LARGE // 2


async def test_an_empty_streamed_body_of_length_zero_is_sent_as_such() -> None:
    async def nothing() -> AsyncIterator[bytes]:
        for piece in (b"",):
            yield piece

    async with slow_reader(wait_s=0) as (server, pool):
        headers = CIMultiDict([("Content-Length", "0")])
        answer = await get(pool, method="POST", body=nothing(), headers=headers, decode=True)
        assert (answer.status, await answer.read()) == (200, ANSWER)
        answer.close()
        assert server.requests[0].endswith(b"Content-Length: 0\r\n\r\n")


@pytest.mark.parametrize("change", ["grew", "shrank"])
async def test_a_document_that_changed_after_it_was_counted_is_not_sent(change: str) -> None:
    """A bug of ours, not the client's: the upstream must not read a body of a wrong length."""
    document = {"messages": [{"role": "user", "content": "z" * LARGE}]}
    encoded = EncodedDocument(document)
    document["messages"][0]["content"] = "z" * (LARGE + 1 if change == "grew" else LARGE - 1)
    async with slow_reader(wait_s=0) as (server, pool):
        with pytest.raises(RuntimeError, match=r"a re-encoded body was \d+ bytes, not \d+"):
            await get(pool, method="POST", body=encoded)
        await asyncio.sleep(0.1)
        assert server.requests == []  # the connection closed before the body was whole


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], None),
        (["0"], 0),
        (["1234"], 1234),
        (["12", "12"], ValueError),  # two lengths, even equal ones
        (["١٢"], ValueError),  # digits, but not ASCII ones (int() would take them)
        (["12a"], ValueError),
        ([" 12"], ValueError),
        (["-1"], ValueError),
    ],
)
def test_a_streamed_body_s_length_is_one_ascii_number(
    values: list[str], expected: int | type[ValueError] | None
) -> None:
    headers = CIMultiDict([("Content-Length", value) for value in values])
    if expected is ValueError:
        with pytest.raises(ValueError, match="is not one number"):
            _declared_length(headers)
    else:
        assert _declared_length(headers) == expected


@pytest.mark.parametrize("kind", ["large bytes", "re-encoded document", "streamed"])
async def test_a_body_the_upstream_never_reads_fails_at_the_total_timeout(kind: str) -> None:
    body: bytes | EncodedDocument | Chunks = (
        Chunks(bytes(LARGE)) if kind == "streamed" else body_of_kind(kind)[0]
    )

    # The upstream reads nothing for 30 s; the exchange's deadline is 0.3 s away.
    async def stuck(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    async with pool_serving(stuck, total_timeout_s=0.3) as pool:
        async with asyncio.timeout(5):  # a missing deadline fails here, not in 30 s
            with pytest.raises(TimeoutError):
                await get(pool, method="POST", body=body)


@pytest.mark.parametrize(
    ("method", "length"), [("POST", "0"), ("PUT", "0"), ("PATCH", "0"), ("GET", None)]
)
async def test_a_request_without_a_body_states_a_length_only_where_one_is_due(
    method: str, length: str | None
) -> None:
    """A method with a body by definition says ``Content-Length: 0``, as aiohttp's client did."""
    async with slow_reader(wait_s=0) as (server, pool):
        answer = await get(pool, method=method)
        await answer.read()
        answer.close()
        head = server.requests[0].decode()
        stated = [line for line in head.split("\r\n") if line.startswith("Content-Length:")]
        assert stated == ([f"Content-Length: {length}"] if length else [])
