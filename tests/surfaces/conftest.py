"""An upstream that answers with what a test scripts, and records what it was sent."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.loopback import ServerFactory

# A float in a script is a pause, in seconds; bytes are written as they are.
Script = list[bytes | float]


@dataclass
class Scripted:
    """The answer to give (JSON, a stream script, or raw bytes) and what came in."""

    url: str = ""
    status: int = 200
    content_type: str = "application/json"
    answer: Any = None  # a JSON document, or bytes as they are
    script: Script | None = None  # an event stream
    bodies: list[bytes] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    def json_bodies(self) -> list[Any]:
        return [orjson.loads(b) for b in self.bodies]


@pytest.fixture
async def scripted(aiohttp_server: ServerFactory) -> Scripted:
    state = Scripted()

    async def answer(request: web.Request) -> web.StreamResponse:
        state.bodies.append(await request.read())
        if state.script is not None:
            response = web.StreamResponse(
                status=state.status, headers={"Content-Type": "text/event-stream"}
            )
            await response.prepare(request)
            for step in state.script:
                if isinstance(step, float):
                    await asyncio.sleep(step)
                else:
                    await response.write(step)
            await response.write_eof()
            state.ended.set()
            return response
        body = state.answer if isinstance(state.answer, bytes) else orjson.dumps(state.answer)
        return web.Response(
            status=state.status, body=body, headers={"Content-Type": state.content_type}
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    server = await aiohttp_server(app)
    state.url = str(server.make_url("")).rstrip("/")
    return state


def sse(document: Any, event: str | None = None) -> bytes:
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + orjson.dumps(document) + b"\n\n"
