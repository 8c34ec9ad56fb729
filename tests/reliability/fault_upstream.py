"""A model server on loopback that misbehaves on request, at the socket level.

The client picks the fault per request with the ``x-fault`` header, which the
proxy forwards like any other; without it the server answers like a model
(a chat completion, or a stream when the body asks for one). Raw sockets,
because aiohttp's server cannot reset a connection half-way or send broken
framing on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson

Fault = Callable[[asyncio.StreamWriter, bool], Awaitable[None]]


def completion(text: str) -> bytes:
    message = {"role": "assistant", "content": text}
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    return orjson.dumps(
        {"id": "c", "object": "chat.completion", "created": 1, "model": "m", "choices": [choice]}
    )


COMPLETION = completion("fine")
HUGE_TEXT_BYTES = 8 * 1024 * 1024


def sse_chunk(content: str | None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    event = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
    return b"data: " + orjson.dumps(event) + b"\n\n"


def chunked(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def head(status: str, content_type: str, length: int | None = None) -> bytes:
    framing = "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}"
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n{framing}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN: linger on, timeout zero."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def normal(writer: asyncio.StreamWriter, stream: bool) -> None:
    if stream:
        writer.write(head("200 OK", "text/event-stream"))
        for piece in ("all ", "is ", "well"):
            writer.write(chunked(sse_chunk(piece)))
        writer.write(chunked(sse_chunk(None, "stop")) + chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n")
    else:
        writer.write(head("200 OK", "application/json", len(COMPLETION)) + COMPLETION)
    await writer.drain()


async def long_stream(writer: asyncio.StreamWriter, stream: bool) -> None:
    """A generation that takes a while: 40 tokens, 5 ms apart."""
    writer.write(head("200 OK", "text/event-stream"))
    for _ in range(40):
        writer.write(chunked(sse_chunk("token ")))
        await writer.drain()
        await asyncio.sleep(0.005)
    writer.write(chunked(sse_chunk(None, "stop")) + chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n")
    await writer.drain()


async def reset_before_headers(writer: asyncio.StreamWriter, stream: bool) -> None:
    reset(writer)


async def reset_mid_body(writer: asyncio.StreamWriter, stream: bool) -> None:
    writer.write(head("200 OK", "application/json", len(COMPLETION)) + COMPLETION[:20])
    await writer.drain()
    await asyncio.sleep(0.02)
    reset(writer)


async def reset_mid_stream(writer: asyncio.StreamWriter, stream: bool) -> None:
    writer.write(head("200 OK", "text/event-stream") + chunked(sse_chunk("partial")))
    await writer.drain()
    await asyncio.sleep(0.02)
    reset(writer)


async def server_error(writer: asyncio.StreamWriter, stream: bool) -> None:
    body = b'{"error": {"message": "busy", "type": "server_error", "code": "overloaded"}}'
    writer.write(head("503 Service Unavailable", "application/json", len(body)) + body)
    await writer.drain()


async def malformed_json(writer: asyncio.StreamWriter, stream: bool) -> None:
    body = b'{"choices": [{"message": '
    writer.write(head("200 OK", "application/json", len(body)) + body)
    await writer.drain()


async def malformed_sse(writer: asyncio.StreamWriter, stream: bool) -> None:
    writer.write(head("200 OK", "text/event-stream") + chunked(sse_chunk("partial")))
    writer.write(chunked(b"data: {this is not json\n\n"))
    await writer.drain()
    await asyncio.sleep(5)


async def silent_stream(writer: asyncio.StreamWriter, stream: bool) -> None:
    writer.write(head("200 OK", "text/event-stream") + chunked(sse_chunk("partial")))
    await writer.drain()
    await asyncio.sleep(5)


async def hang(writer: asyncio.StreamWriter, stream: bool) -> None:
    await asyncio.sleep(5)


async def slow_trickle(writer: asyncio.StreamWriter, stream: bool) -> None:
    """A slow but live answer: every gap is under the read timeout."""
    data = head("200 OK", "application/json", len(COMPLETION)) + COMPLETION
    for i in range(0, len(data), len(data) // 8):
        writer.write(data[i : i + len(data) // 8])
        await writer.drain()
        await asyncio.sleep(0.03)


async def huge(writer: asyncio.StreamWriter, stream: bool) -> None:
    body = completion("x" * HUGE_TEXT_BYTES)
    writer.write(head("200 OK", "application/json", len(body)))
    for i in range(0, len(body), 256 * 1024):
        writer.write(body[i : i + 256 * 1024])
        await writer.drain()


_ALL = (
    normal, long_stream, reset_before_headers, reset_mid_body, reset_mid_stream, server_error,
    malformed_json, malformed_sse, silent_stream, hang, slow_trickle, huge,
)  # fmt: skip
FAULTS: dict[str, Fault] = {f.__name__: f for f in _ALL}


async def _read_request(reader: asyncio.StreamReader) -> tuple[dict[str, str], bytes]:
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")[1:]
    headers = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return headers, body


@contextlib.asynccontextmanager
async def fault_upstream() -> AsyncIterator[str]:
    """Serve on an ephemeral loopback port; yields the base URL."""

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The proxy going away mid-fault, or the test ending, is how faults stop.
        with contextlib.suppress(ConnectionError, asyncio.CancelledError, EOFError):
            headers, body = await _read_request(reader)
            fault = FAULTS[headers.get("x-fault", "normal")]
            stream = b'"stream":true' in body.replace(b" ", b"")
            acting = asyncio.ensure_future(fault(writer, stream))
            # A hang ends when the proxy gives up and closes: nothing outlives the request.
            peer_gone = asyncio.ensure_future(reader.read())
            await asyncio.wait([acting, peer_gone], return_when=asyncio.FIRST_COMPLETED)
            for task in (acting, peer_gone):
                task.cancel()
            await asyncio.wait([acting, peer_gone])
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()
