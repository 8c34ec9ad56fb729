"""A simulated OpenAI-compatible model server, so taxmeter can be tried without a GPU.

``taxmeter serve`` starts it when no real upstream is configured, and
``taxmeter mock-upstream`` runs it alone. It answers like vLLM closely enough
for the official ``openai`` client to work against it unchanged:

- ``POST /v1/chat/completions`` and ``POST /v1/completions``, streamed (SSE)
  or not, honouring ``n``, ``max_tokens`` / ``max_completion_tokens`` and
  ``stream_options.include_usage``. Token ``k`` of a completion is due
  ``ttft + k / tokens_per_s`` after the request arrived; a non-streamed answer
  is sent when its last token would have been.
- ``POST /v1/embeddings`` (float or base64), ``GET /v1/models``, ``GET /health``.
- ``POST /v1/moderations``, and a Llama Guard judge on chat completions (see
  :mod:`proxy.mock_moderation`), for the ``moderation`` filter.

The text is deterministic pseudo-prose seeded by the prompt, except that a
prompt (or, for chat, the last user message) starting with ``echo:`` is
answered with exactly the text after it. Headers ``x-mock-ttft-ms`` and
``x-mock-tokens-per-s`` override the pacing of one request. Errors use
OpenAI's ``{"error": {...}}`` shape. Stream counts live in
``app[MOCK_STATS]`` so tests can see that a disconnect stopped generation.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import uvloop
from aiohttp import web
from aiohttp.typedefs import Handler

from proxy.mock_moderation import moderations, parse_chat_or_judge
from proxy.mock_request import (
    GenerationJob,
    MockAPIError,
    header_float,
    parse_completions,
    parse_embeddings,
    parse_json_object,
)
from proxy.mock_text import unit_vector
from proxy.mock_wire import base64_floats, completion_body, response_head, stream_events
from proxy.parent import stop_when_parent_ends

TTFT_HEADER = "x-mock-ttft-ms"
TOKENS_PER_S_HEADER = "x-mock-tokens-per-s"

# Embeddings are one forward pass with no decode loop: a small fixed cost plus
# a little per input character.
_EMBED_BASE_S = 0.005
_EMBED_PER_CHAR_S = 0.00001

_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
_STARTED_AT = int(time.time())


@dataclass(frozen=True, slots=True)
class MockSettings:
    """How the simulated model behaves. Raises ValueError naming a bad field."""

    ttft_ms: float = 150.0  # time to first token (like a 7B model on one GPU)
    tokens_per_s: float = 50.0  # decode speed after the first token
    max_tokens: int = 64  # default completion length when the request sets none
    model: str = "mock-model"
    embedding_dim: int = 384

    def __post_init__(self) -> None:
        if not self.ttft_ms >= 0:
            raise ValueError(f"ttft_ms must be >= 0, got {self.ttft_ms}")
        if not self.tokens_per_s > 0:
            raise ValueError(f"tokens_per_s must be > 0, got {self.tokens_per_s}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {self.embedding_dim}")
        if not self.model:
            raise ValueError("model must not be empty")


@dataclass(slots=True)
class MockStats:
    """Stream counters; ``active_streams`` returns to 0 once every stream has stopped."""

    active_streams: int = 0
    streams_started: int = 0
    streams_finished: int = 0
    streams_cancelled: int = 0


MOCK_SETTINGS = web.AppKey("mock_settings", MockSettings)
MOCK_STATS = web.AppKey("mock_stats", MockStats)

_Parser = Callable[[dict[str, Any], str, int], GenerationJob]


def make_mock_app(settings: MockSettings = MockSettings()) -> web.Application:
    """A fresh mock server app with its own ``MOCK_STATS``."""
    # Prompts for filter tests can be long; the 1 MiB aiohttp default is not.
    app = web.Application(middlewares=[_openai_errors], client_max_size=64 * 1024 * 1024)
    app[MOCK_SETTINGS] = settings
    app[MOCK_STATS] = MockStats()
    app.router.add_post("/v1/chat/completions", _chat_completions)
    app.router.add_post("/v1/completions", _completions)
    app.router.add_post("/v1/embeddings", _embeddings)
    app.router.add_post("/v1/moderations", moderations)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/health", _health)
    return app


async def serve_mock(host: str, port: int, settings: MockSettings) -> web.AppRunner:
    """Start the mock on ``host:port`` (0 picks a free port; see ``runner.addresses``).

    The caller owns the returned runner and must ``await runner.cleanup()``.
    """
    # handler_cancellation makes a client disconnect cancel the handler at once,
    # even while it sleeps before the first token.
    runner = web.AppRunner(make_mock_app(settings), handler_cancellation=True)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def main_mock(host: str, port: int, settings: MockSettings, with_parent: bool = False) -> None:
    """Run the mock under uvloop until SIGINT or SIGTERM.

    Prints one line once listening; its last word is the server URL (no ``/v1``).
    ``with_parent``: also stop at the end of stdin, a pipe from the process that
    started it, so the mock never outlives it, however it ends (even SIGKILL).
    """
    uvloop.run(_serve_until_signalled(host, port, settings, with_parent))


async def _serve_until_signalled(
    host: str, port: int, settings: MockSettings, with_parent: bool
) -> None:
    runner = await serve_mock(host, port, settings)
    try:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if with_parent:
            stop_when_parent_ends(stop)
        bound_host, bound_port = runner.addresses[0][:2]
        if ":" in bound_host:
            bound_host = f"[{bound_host}]"
        url = f"http://{bound_host}:{bound_port}"
        # The URL is the line's last word, without /v1: `taxmeter serve` reads it
        # from a child process and prefixes request paths with it.
        print(
            f"taxmeter mock upstream (model {settings.model}, ttft {settings.ttft_ms:g} ms, "
            f"{settings.tokens_per_s:g} tokens/s; OpenAI base_url {url}/v1) listening on {url}",
            flush=True,
        )
        await stop.wait()
    finally:
        await runner.cleanup()


@web.middleware
async def _openai_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except MockAPIError as exc:
        return _json(exc.payload(), status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            error = MockAPIError(
                404, f"Unknown request URL: {request.method} {request.path}.", code="unknown_url"
            )
        else:
            error = MockAPIError(exc.status, exc.reason)
        return _json(error.payload(), status=exc.status)


async def _chat_completions(request: web.Request) -> web.StreamResponse:
    return await _generate(request, parse_chat_or_judge)


async def _completions(request: web.Request) -> web.StreamResponse:
    return await _generate(request, parse_completions)


async def _generate(request: web.Request, parse: _Parser) -> web.StreamResponse:
    arrived = asyncio.get_running_loop().time()
    settings = request.app[MOCK_SETTINGS]
    ttft_s = header_float(request.headers, TTFT_HEADER, settings.ttft_ms, zero_ok=True) / 1000
    per_token_s = 1 / header_float(
        request.headers, TOKENS_PER_S_HEADER, settings.tokens_per_s, zero_ok=False
    )
    job = parse(parse_json_object(await request.read()), settings.model, settings.max_tokens)

    def due(step: int) -> float:
        # An absolute schedule from arrival: a late wake-up never delays later tokens.
        return arrived + ttft_s + step * per_token_s

    head = response_head(job)
    if job.stream:
        return await _stream(request, stream_events(job, head), due)
    await _sleep_until(due(max(job.longest - 1, 0)))
    return _json(completion_body(job, head))


async def _stream(
    request: web.Request, events: Iterator[tuple[int, bytes]], due: Callable[[int], float]
) -> web.StreamResponse:
    stats = request.app[MOCK_STATS]
    # No compression: it would buffer events that must reach the client one by one.
    response = web.StreamResponse(headers=_SSE_HEADERS)
    stats.streams_started += 1
    stats.active_streams += 1
    try:
        await response.prepare(request)
        for step, event in events:
            await _sleep_until(due(step))
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


async def _embeddings(request: web.Request) -> web.Response:
    arrived = asyncio.get_running_loop().time()
    settings = request.app[MOCK_SETTINGS]
    job = parse_embeddings(
        parse_json_object(await request.read()), settings.model, settings.embedding_dim
    )
    data: list[dict[str, Any]] = []
    for i, item in enumerate(job.inputs):
        vector = unit_vector(item.key, job.dim)
        embedding = base64_floats(vector) if job.base64 else vector
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    chars = sum(item.chars for item in job.inputs)
    await _sleep_until(arrived + _EMBED_BASE_S + chars * _EMBED_PER_CHAR_S)
    tokens = sum(item.tokens for item in job.inputs)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return _json({"object": "list", "data": data, "model": job.model, "usage": usage})


async def _models(request: web.Request) -> web.Response:
    model = request.app[MOCK_SETTINGS].model
    entry = {"id": model, "object": "model", "created": _STARTED_AT, "owned_by": "taxmeter"}
    return _json({"object": "list", "data": [entry]})


async def _health(request: web.Request) -> web.Response:
    return web.Response()


async def _sleep_until(deadline: float) -> None:
    # Always yield, even when late, so a burst of overdue tokens cannot starve the loop.
    await asyncio.sleep(max(0.0, deadline - asyncio.get_running_loop().time()))


def _json(obj: dict[str, Any], *, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json")
