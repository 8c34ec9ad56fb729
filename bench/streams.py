"""Streamed completions: time to the first content of each of many concurrent streams.

One aiohttp session; each stream's lines are only parsed (orjson) while no
content has arrived: a line is looked at only if it carries a "content" key,
and the first one whose delta content is non-empty stops the clock. The rest
of the stream is drained in chunks without parsing.

Two shapes of 64 concurrent streams:

- burst: all 64 requests start at the same instant (a wave);
- steady: 64 streams are kept open, their starts staggered over one stream's
  length and each replaced as it ends, for a fixed time.

A burst can also be made on another API surface (``surface``: completions,
responses, messages; see stream_ttft.SURFACES): its first text is found by
that surface's own event shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import orjson
from stream_ttft import SURFACES

STREAM_TIMEOUT_S = 60.0
FIRST_CONTENT_GRACE_S = 10.0  # after a steady run, how long started streams may take


@dataclass
class StreamsResult:
    ttft_ms: list[float] = field(default_factory=list)
    failed: int = 0  # bad status, no content, or timed out
    started: int = 0
    cpu_s: float = 0.0  # this process's CPU time during the run


def _body(tokens: int) -> bytes:
    return orjson.dumps(
        {
            "model": "mock-model",
            "stream": True,
            "max_tokens": tokens,
            "messages": [{"role": "user", "content": "Tell me a story."}],
        }
    )


def _has_content(line: bytes, surface: str = "chat") -> bool:
    if surface != "chat":
        return _has_text(line, surface)
    if not line.startswith(b"data:") or b'"content"' not in line:
        return False
    try:
        event = orjson.loads(line[5:])
    except orjson.JSONDecodeError:
        return False
    for choice in event.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content") or choice.get("text"):
            return True
    return False


def _has_text(line: bytes, surface: str) -> bool:
    if not line.startswith(b"data:"):
        return False
    try:
        event = orjson.loads(line[5:])
    except orjson.JSONDecodeError:
        return False
    return isinstance(event, dict) and SURFACES[surface][2](event)


async def one_stream(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    on_first: asyncio.Future[float] | None = None,
    surface: str = "chat",
) -> float | None:
    """Milliseconds to the first content (None if none came); the stream is read to its end."""
    started = time.perf_counter()
    first: float | None = None
    async with session.post(url, data=body, headers=headers) as response:
        if response.status != 200:
            await response.read()
            return None
        async for line in response.content:
            if _has_content(line, surface):
                first = (time.perf_counter() - started) * 1000
                if on_first is not None and not on_first.done():
                    on_first.set_result(first)
                break
        async for _ in response.content.iter_any():
            pass
    return first


def session(streams: int) -> aiohttp.ClientSession:
    """The client: keep-alive connections, as many as there are streams."""
    connector = aiohttp.TCPConnector(limit=streams, keepalive_timeout=120)
    timeout = aiohttp.ClientTimeout(total=STREAM_TIMEOUT_S)
    return aiohttp.ClientSession(connector=connector, timeout=timeout)


async def burst(
    client: aiohttp.ClientSession,
    base: str,
    streams: int,
    tokens: int,
    headers: dict[str, str],
    cpu_ns: Callable[[], int],
    surface: str = "chat",
) -> StreamsResult:
    """``streams`` streams started together; returns when all have ended."""
    url, body = f"{base}/v1/chat/completions", _body(tokens)
    if surface != "chat":
        path, request, _ = SURFACES[surface]
        url, body = f"{base}{path}", orjson.dumps(request(tokens))
    result = StreamsResult(started=streams)
    before = cpu_ns()
    outcomes = await asyncio.gather(
        *(one_stream(client, url, body, headers, None, surface) for _ in range(streams)),
        return_exceptions=True,
    )
    result.cpu_s = (cpu_ns() - before) / 1e9
    for outcome in outcomes:
        if isinstance(outcome, float):
            result.ttft_ms.append(outcome)
        else:
            result.failed += 1
    return result


async def steady(
    client: aiohttp.ClientSession,
    base: str,
    streams: int,
    tokens: int,
    headers: dict[str, str],
    stream_s: float,
    duration_s: float,
    cpu_ns: Callable[[], int],
) -> StreamsResult:
    """``streams`` streams kept open for ``duration_s``; starts staggered over ``stream_s``."""
    url, body = f"{base}/v1/chat/completions", _body(tokens)
    result = StreamsResult()
    firsts: list[asyncio.Future[float]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration_s

    async def worker(index: int, session: aiohttp.ClientSession) -> None:
        await asyncio.sleep(index * stream_s / streams)
        while loop.time() < deadline:
            first: asyncio.Future[float] = loop.create_future()
            firsts.append(first)
            result.started += 1
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                await one_stream(session, url, body, headers, first)
            if not first.done():
                first.cancel()

    before = cpu_ns()
    workers = [loop.create_task(worker(i, client)) for i in range(streams)]
    await asyncio.sleep(duration_s)
    # No new streams now; the ones started get a grace period to show content.
    pending = [f for f in firsts if not f.done()]
    if pending:
        await asyncio.wait(pending, timeout=FIRST_CONTENT_GRACE_S)
    result.cpu_s = (cpu_ns() - before) / 1e9
    for task in workers:
        task.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    for first in firsts:
        if first.done() and not first.cancelled():
            result.ttft_ms.append(first.result())
        else:
            result.failed += 1
    return result
