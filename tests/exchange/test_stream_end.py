"""What follows a stream's terminal event is read off the request's path, within bounds.

The client has its whole answer at ``[DONE]``; the upstream's own end of the
body (the last chunk of a chunked answer) may come later. The proxy reads it
in the background (``UpstreamResponse.finish_in_background``) so that the
connection serves the next request, but for at most 64 KiB and one second:
an upstream that goes on, or never ends, has its connection closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import orjson
import pytest

from tests.loopback import ProxyFactory, RawServer

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
FILTERS = {"filters": [{"name": "pii", "type": "pii", "stages": ["input", "output", "stream"]}]}
DELTA = {"id": "c", "object": "chat.completion.chunk", "model": "m"}


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def event(choice: dict[str, object]) -> bytes:
    return b"data: " + orjson.dumps({**DELTA, "choices": [choice]}) + b"\n\n"


ANSWER = (
    event({"index": 0, "delta": {"role": "assistant", "content": "hello"}, "finish_reason": None})
    + event({"index": 0, "delta": {}, "finish_reason": "stop"})
    + b"data: [DONE]\n\n"
)


class Upstream:
    """Answers each request with ANSWER, then does ``after`` before the body's last chunk."""

    def __init__(
        self, after: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
    ) -> None:
        self.after = after
        self.done_sent_at: list[float] = []
        self.closed_at: list[float] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length:")
                )
                await reader.readexactly(length)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n" + chunk(ANSWER)
                )
                await writer.drain()
                self.done_sent_at.append(loop.time())
                await self.after(reader, writer)
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed_at.append(loop.time())


def whole(streamed: bytes) -> bool:
    """The answer as the proxy writes it (its own encoding of each event), to its end."""
    return b'"content":"hello"' in streamed and streamed.endswith(b"data: [DONE]\n\n")


async def stream_twice(proxy_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(2):
            await asyncio.sleep(0.3)  # the first answer's end has come and been read
            async with session.post(f"{proxy_url}/v1/chat/completions", json=CHAT) as response:
                assert response.status == 200
                assert whole(await response.read())


async def until(condition: Callable[[], bool], within_s: float) -> None:
    async with asyncio.timeout(within_s):
        while not condition():  # noqa: ASYNC110 - state of a test server
            await asyncio.sleep(0.01)


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, object]]]:
    """What reached the loop's exception handler: a background task that failed unseen."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    yield errors
    loop.set_exception_handler(None)


async def test_an_end_that_comes_soon_after_done_is_read_and_the_connection_reused(
    start_proxy: ProxyFactory,
    raw_server: Callable[..., Awaitable[RawServer]],
    loop_errors: list[dict[str, object]],
) -> None:
    async def a_moment(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.1)

    upstream = Upstream(a_moment)
    server = await raw_server(upstream.serve)
    proxy = await start_proxy(FILTERS, upstream=server.url)
    await stream_twice(proxy.url)
    assert server.connections == 1
    assert upstream.closed_at == []
    assert loop_errors == []


@pytest.mark.parametrize("after", ["never ends", "goes on past 64 KiB"])
async def test_an_upstream_that_does_not_end_soon_after_done_has_its_connection_closed(
    start_proxy: ProxyFactory, raw_server: Callable[..., Awaitable[RawServer]], after: str
) -> None:
    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the proxy closes the connection
        raise ConnectionResetError

    async def goes_on(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(40):  # comment lines, 80 KiB in all, then the end
            if writer.is_closing():  # uvloop's write on a closed transport raises RuntimeError
                raise ConnectionResetError
            writer.write(chunk(b": " + b"x" * 2046 + b"\n\n"))
            await writer.drain()
            await asyncio.sleep(0.001)

    upstream = Upstream(never if after == "never ends" else goes_on)
    server = await raw_server(upstream.serve)
    proxy = await start_proxy(FILTERS, upstream=server.url)
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{proxy.url}/v1/chat/completions", json=CHAT) as response:
            # The client has all of it at once, whatever the upstream does next.
            assert whole(await asyncio.wait_for(response.read(), 0.9))
        # Closed within a second of the answer's end, as the drain's bound says
        # (loaded hosts have run it 0.3 s late; 2.5 s leaves room for worse).
        await until(lambda: bool(upstream.closed_at), 2.5)
        async with session.post(f"{proxy.url}/v1/chat/completions", json=CHAT) as response:
            assert (response.status, whole(await response.read())) == (200, True)
    assert upstream.closed_at[0] - upstream.done_sent_at[0] < 2.5
    assert server.connections == 2
