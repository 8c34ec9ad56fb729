"""A model server that frames requests the way uvicorn does, and records each one.

vLLM and SGLang run on uvicorn, which parses requests with httptools (llhttp)
and does not inflate request bodies: what the proxy writes is what it reads,
byte for byte, and every request it parses on a connection is answered in
turn. aiohttp's own server would inflate and hide a framing fault, so this
one is built on the same parser uvicorn uses. Each answer is a chat
completion that names the request it answers (``answer to request N``), so
a test can tell whose answer a client got.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import cast

import httptools
import orjson


@dataclass
class Seen:
    """One request as the upstream parsed it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    connection: int  # which connection it came on, in order of opening


@dataclass
class RecordingUpstream:
    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    transports: list[asyncio.Transport] = field(default_factory=list)

    def prompts(self) -> list[str]:
        """The last user message of every chat request seen (a body that parses)."""
        found = []
        for request in self.seen:
            with contextlib.suppress(ValueError, KeyError, TypeError, IndexError):
                found.append(orjson.loads(request.body)["messages"][-1]["content"])
        return found


def answer(text: str) -> bytes:
    message = {"role": "assistant", "content": text}
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    body = orjson.dumps({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                         "choices": [choice]})  # fmt: skip
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%b" % (
        len(body),
        body,
    )


class _Connection(asyncio.Protocol):
    def __init__(self, upstream: RecordingUpstream) -> None:
        self.upstream = upstream
        upstream.connections += 1
        self.number = upstream.connections
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not registered as asyncio.Transport subclasses.
        self.transport = cast(asyncio.Transport, transport)
        self.upstream.transports.append(self.transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            self.transport.close()

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        assert self.transport is not None
        method = self.parser.get_method().decode()
        seen = Seen(method, self.url.decode(), self.headers, bytes(self.body), self.number)
        self.upstream.seen.append(seen)
        self.transport.write(answer(f"answer to request {len(self.upstream.seen)}"))
        self._reset()


@contextlib.asynccontextmanager
async def recording_upstream() -> AsyncIterator[RecordingUpstream]:
    upstream = RecordingUpstream()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(upstream), "127.0.0.1", 0)
    upstream.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield upstream
    finally:
        server.close()
        # The proxy's pool may still hold connections: close them, or waiting hangs.
        for transport in upstream.transports:
            transport.abort()
        await server.wait_closed()
