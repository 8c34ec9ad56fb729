"""max_body_bytes at its edge: exactly the limit passes, one byte over is 413 at once.

One byte over is declared in the Content-Length and the body is never sent:
only the pre-check on the declared length can answer before the body
timeout, and the model server must see no connection at all. A judged route
(read whole) and an unjudged one (a body over 64 KiB, passed on as it
arrives) each have their own pre-check.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest

from tests.loopback import ProxyFactory
from tests.reliability.recording_upstream import recording_upstream

LIMIT = 100_000  # over the 64 KiB an unjudged body is read whole below
CHAT = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
PATHS = ["/v1/chat/completions", "/v1/files"]  # judged, unjudged


def head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


async def answer_status(port: int, data: bytes) -> tuple[int, bytes]:
    """Write ``data`` and read the answer's status and body, within 3 s."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        async with asyncio.timeout(3):  # far below the body timeout: only a pre-check answers
            answer_head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in answer_head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            body = await reader.readexactly(length)
    finally:
        writer.close()
    return int(answer_head.split(b" ", 2)[1]), body


CONFIG = {
    "max_body_bytes": LIMIT,
    "client_body_timeout_s": 10,
    "filters": [{"name": "pii", "type": "pii"}],
}


@pytest.mark.parametrize("path", PATHS)
async def test_one_byte_over_declared_is_413_and_the_model_sees_no_connection(
    start_proxy: ProxyFactory, path: str
) -> None:
    async with recording_upstream() as upstream:
        proxy = await start_proxy(CONFIG, upstream=upstream.url)
        # The head alone: the proxy must answer from the declared length.
        status, body = await answer_status(proxy.server.port, head(path, LIMIT + 1))
        assert status == 413, body
        assert orjson.loads(body)["error"]["code"] == "body_too_large"
        assert upstream.connections == 0
        assert upstream.seen == []


@pytest.mark.parametrize("path", PATHS)
async def test_exactly_the_limit_passes_whole(start_proxy: ProxyFactory, path: str) -> None:
    data = CHAT + b" " * (LIMIT - len(CHAT))  # valid JSON, exactly LIMIT bytes
    async with recording_upstream() as upstream:
        proxy = await start_proxy(CONFIG, upstream=upstream.url)
        status, body = await answer_status(proxy.server.port, head(path, LIMIT) + data)
        assert status == 200, body
        (seen,) = upstream.seen
    # Unjudged, the bytes go on as sent; judged, the same prompt (re-encoded or not).
    if path == "/v1/files":
        assert seen.body == data
    else:
        assert orjson.loads(seen.body) == orjson.loads(CHAT)
