"""A raw-socket model server for the upstream client's tests, and the pool calls they make.

The server reads each request as bytes and answers with bytes a test chose,
so framing the proxy's own server would never produce (100 Continue, a body
that ends with the connection, broken status lines, bytes after the end) can
be sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from multidict import CIMultiDict

from proxy.config.schema import UpstreamConfig
from proxy.formats.json_pieces import EncodedDocument
from proxy.measure.timeline import Timeline
from proxy.upstream.pool import UpstreamPool
from proxy.upstream.response import UpstreamResponse

Answer = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]  # False: close the connection


@dataclass
class RawServer:
    """Counts connections, keeps every request head and body it read."""

    answer: Answer
    connections: int = 0
    open_now: int = 0
    most_open: int = 0
    requests: list[bytes] = field(default_factory=list)
    closed: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                body = await _read_body(reader, head)
                self.requests.append(head + body)
                try:
                    if not await self.answer(head, writer):
                        return
                except ConnectionError:
                    return  # the proxy hung up mid-answer, as some tests want
        finally:
            self.open_now -= 1
            self.closed += 1
            writer.close()


async def _read_body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return body
            body += chunk[:-2]
    for line in lower.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return await reader.readexactly(int(line.split(b":")[1]))
    return b""


def response(status: str, body: bytes, *extra: str) -> bytes:
    headers = "".join(f"{h}\r\n" for h in extra)
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode() + body


async def ok(head: bytes, writer: asyncio.StreamWriter) -> bool:
    writer.write(response("200 OK", b"hello"))
    return True


@contextlib.asynccontextmanager
async def raw_server(
    answer: Answer, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[RawServer, str]]:
    state = RawServer(answer)
    server = await asyncio.start_server(state.serve, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    try:
        yield state, f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def pool_serving(
    serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    **config: float,
) -> AsyncIterator[UpstreamPool]:
    """A pool to a loopback server that runs ``serve`` on each connection; both closed after."""
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    pool = pool_for(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", **config)
    try:
        yield pool
    finally:
        await pool.close()
        server.close()
        await server.wait_closed()


def pool_for(url: str, **config: float) -> UpstreamPool:
    return UpstreamPool(url, UpstreamConfig(url=url, **config))  # type: ignore[arg-type]


async def get(
    pool: UpstreamPool,
    target: str = "/v1/models",
    method: str = "GET",
    body: bytes | EncodedDocument | AsyncIterable[bytes] | None = None,
    headers: CIMultiDict[str] | None = None,
    decode: bool = False,
) -> UpstreamResponse:
    return await pool.request(
        method, target, headers or CIMultiDict(), body, Timeline(None), decode=decode
    )


async def read_all(pool: UpstreamPool, **kwargs: object) -> tuple[int, bytes]:
    answer = await get(pool, **kwargs)  # type: ignore[arg-type]
    try:
        return answer.status, await answer.read()
    finally:
        answer.close()
