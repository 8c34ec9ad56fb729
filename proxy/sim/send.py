"""How the simulated model server sends a generated answer: on one clock, for every API.

Token ``k`` of an answer is due ``ttft + k / tokens_per_s`` after the request
arrived (:class:`Pacing`); a non-streamed answer is sent when its last token
would have been, a stream sends each event when its token is due. Chat
completions, completions, the Responses API and Anthropic's Messages API all
go through :func:`generate`, so they share the pacing, the per-request
override headers and the stream counters; each API only parses its request
and shapes its answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from proxy.sim.fields import header_float, parse_json_object
from proxy.sim.request import GenerationJob
from proxy.sim.settings import MOCK_SETTINGS, MOCK_STATS

TTFT_HEADER = "x-mock-ttft-ms"
TOKENS_PER_S_HEADER = "x-mock-tokens-per-s"

# The step of an event sent as soon as the request is read, before the first
# token (the Responses API announces a response before the model has started).
AT_ONCE = -1

_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}

Parser = Callable[[dict[str, Any], str, int], GenerationJob]
Body = Callable[[GenerationJob], dict[str, Any]]
Events = Callable[[GenerationJob], Iterable[tuple[int, bytes]]]


@dataclass(frozen=True, slots=True)
class Pacing:
    """When each token of one request's answer is due, on the event loop's clock."""

    arrived: float
    ttft_s: float
    per_token_s: float

    def due(self, step: int) -> float:
        # An absolute schedule from arrival: a late wake-up never delays later tokens.
        if step == AT_ONCE:
            return self.arrived
        return self.arrived + self.ttft_s + step * self.per_token_s


def pacing(request: web.Request) -> Pacing:
    """The server's pacing, or the request's override headers (a 400 if malformed)."""
    arrived = asyncio.get_running_loop().time()
    settings = request.app[MOCK_SETTINGS]
    ttft_s = header_float(request.headers, TTFT_HEADER, settings.ttft_ms, zero_ok=True) / 1000
    per_token_s = 1 / header_float(
        request.headers, TOKENS_PER_S_HEADER, settings.tokens_per_s, zero_ok=False
    )
    return Pacing(arrived, ttft_s, per_token_s)


async def generate(
    request: web.Request, parse: Parser, body: Body, events: Events
) -> web.StreamResponse:
    """Parse the request, then send ``body(job)`` or ``events(job)`` when they are due."""
    pace = pacing(request)
    settings = request.app[MOCK_SETTINGS]
    job = parse(parse_json_object(await request.read()), settings.model, settings.max_tokens)
    if job.stream:
        return await send_stream(request, events(job), pace)
    await sleep_until(pace.due(job.last_step))
    return json_response(body(job))


async def send_stream(
    request: web.Request, events: Iterable[tuple[int, bytes]], pace: Pacing
) -> web.StreamResponse:
    """Send each (token step, SSE event) when its step is due; counted in ``MOCK_STATS``."""
    stats = request.app[MOCK_STATS]
    # No compression: it would buffer events that must reach the client one by one.
    response = web.StreamResponse(headers=_SSE_HEADERS)
    stats.streams_started += 1
    stats.active_streams += 1
    try:
        await response.prepare(request)
        for step, event in events:
            await sleep_until(pace.due(step))
            # aiohttp hands each write straight to the transport, so every
            # event leaves as its own chunk without an explicit flush.
            await response.write(event)
    except ConnectionError:
        # The client went away (aiohttp raises ClientConnectionResetError, a
        # ConnectionResetError); aiohttp ignores the failed write_eof that follows.
        stats.streams_cancelled += 1
    except asyncio.CancelledError:
        stats.streams_cancelled += 1
        raise
    else:
        stats.streams_finished += 1
    finally:
        stats.active_streams -= 1
    return response


async def sleep_until(deadline: float) -> None:
    # Always yield, even when late, so a burst of overdue tokens cannot starve the loop.
    await asyncio.sleep(max(0.0, deadline - asyncio.get_running_loop().time()))


def json_response(obj: dict[str, Any], *, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json")
