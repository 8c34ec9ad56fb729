"""Reading an event stream whose events are named (the Responses and Messages APIs), timed."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp.test_utils import TestServer


@dataclass(frozen=True)
class NamedEvent:
    name: str | None
    data: dict[str, Any]
    at: float  # perf_counter() when its last line arrived


async def read_named_events(response: aiohttp.ClientResponse) -> list[NamedEvent]:
    """Every event of the stream, in order; fails on a line that is not SSE."""
    events: list[NamedEvent] = []
    name: str | None = None
    data: list[bytes] = []
    async for line in response.content:
        line = line.rstrip(b"\r\n")
        if not line:
            if data:
                events.append(NamedEvent(name, orjson.loads(b"\n".join(data)), time.perf_counter()))
            name, data = None, []
        elif line.startswith(b"event: "):
            name = line.removeprefix(b"event: ").decode()
        elif line.startswith(b"data: "):
            data.append(line.removeprefix(b"data: "))
        else:
            raise AssertionError(f"not an SSE line: {line!r}")
    assert not data, "the stream ended inside an event"
    return events


async def post_stream(server: TestServer, path: str, body: dict[str, Any]) -> list[NamedEvent]:
    """POST ``body`` with ``stream: true``; the event stream that answers it."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.make_url(path), json={**body, "stream": True}) as response,
    ):
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        return await read_named_events(response)
