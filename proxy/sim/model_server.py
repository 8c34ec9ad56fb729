"""A simulated model server, so taxmeter can be tried without a GPU.

``taxmeter serve`` starts it when no real upstream is configured, and
``taxmeter mock-upstream`` runs it alone. It answers like vLLM, OpenAI and
Anthropic closely enough for the official ``openai`` and ``anthropic``
clients to work against it unchanged:

- ``POST /v1/chat/completions`` and ``POST /v1/completions``, streamed (SSE)
  or not, honouring ``n``, ``max_tokens`` / ``max_completion_tokens`` and
  ``stream_options.include_usage``.
- ``POST /v1/responses`` (streamed or not) and ``GET /v1/responses/{id}``,
  OpenAI's Responses API (see :mod:`proxy.sim.responses`).
- ``POST /v1/messages`` (streamed or not), Anthropic's Messages API (see
  :mod:`proxy.sim.messages`).
- ``POST /v1/embeddings`` (float or base64), ``GET /v1/models``, ``GET /health``.
- ``POST /v1/moderations``, and a Llama Guard judge on chat completions (see
  :mod:`proxy.sim.moderation`), for the ``moderation`` filter.

Every generating API keeps one clock (:mod:`proxy.sim.send`): token ``k``
of an answer is due ``ttft + k / tokens_per_s`` after the request arrived; a
non-streamed answer is sent when its last token would have been. The text is
deterministic pseudo-prose seeded by the prompt, except that a prompt (or,
for a conversation, the last user message) starting with ``echo:`` is
answered with exactly the text after it. Headers ``x-mock-ttft-ms`` and
``x-mock-tokens-per-s`` override the pacing of one request. Errors use
OpenAI's ``{"error": {...}}`` shape, and Anthropic's on the Messages API.
Stream counts live in ``app[MOCK_STATS]`` so tests can see that a
disconnect stopped generation.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from typing import Any

import uvloop
from aiohttp import web
from aiohttp.typedefs import Handler

from proxy.config.schema import HostPort
from proxy.server.parent import stop_when_parent_ends
from proxy.server.sites import start_tcp_site
from proxy.sim import messages, responses
from proxy.sim.fields import MockAPIError, parse_json_object
from proxy.sim.messages import anthropic_error, is_messages_path
from proxy.sim.moderation import moderations, parse_chat_or_judge
from proxy.sim.request import GenerationJob, parse_completions, parse_embeddings
from proxy.sim.send import (
    TOKENS_PER_S_HEADER,
    TTFT_HEADER,
    generate,
    json_response,
    sleep_until,
)
from proxy.sim.settings import MOCK_SETTINGS, MOCK_STATS, MockSettings, MockStats
from proxy.sim.text import unit_vector
from proxy.sim.wire import base64_floats, completion_body, response_head, stream_events

__all__ = [
    "MOCK_SETTINGS",
    "MOCK_STATS",
    "TOKENS_PER_S_HEADER",
    "TTFT_HEADER",
    "MockSettings",
    "MockStats",
    "main_mock",
    "make_mock_app",
    "serve_mock",
]

# Embeddings are one forward pass with no decode loop: a small fixed cost plus
# a little per input character.
_EMBED_BASE_S = 0.005
_EMBED_PER_CHAR_S = 0.00001

_STARTED_AT = int(time.time())
_DEFAULTS = MockSettings()


def make_mock_app(settings: MockSettings = _DEFAULTS) -> web.Application:
    """A fresh mock server app with its own ``MOCK_STATS``."""
    # Prompts for filter tests can be long; the 1 MiB aiohttp default is not.
    app = web.Application(middlewares=[_errors], client_max_size=64 * 1024 * 1024)
    app[MOCK_SETTINGS] = settings
    app[MOCK_STATS] = MockStats()
    app.router.add_post("/v1/chat/completions", _chat_completions)
    app.router.add_post("/v1/completions", _completions)
    responses.add_routes(app)
    messages.add_routes(app)
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
        await start_tcp_site(web.TCPSite(runner, host, port), HostPort(host, port))
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
            f"{settings.tokens_per_s:g} tokens/s; as upstream.url, with no /v1) "
            f"listening on {url}",
            flush=True,
        )
        await stop.wait()
    finally:
        await runner.cleanup()


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except MockAPIError as exc:
        error = exc
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            error = MockAPIError(
                404, f"Unknown request URL: {request.method} {request.path}.", code="unknown_url"
            )
        else:
            error = MockAPIError(exc.status, exc.reason)
    payload = anthropic_error(error) if is_messages_path(request.path) else error.payload()
    return json_response(payload, status=error.status)


async def _chat_completions(request: web.Request) -> web.StreamResponse:
    return await generate(request, parse_chat_or_judge, _completion_body, _completion_events)


async def _completions(request: web.Request) -> web.StreamResponse:
    return await generate(request, parse_completions, _completion_body, _completion_events)


def _completion_body(job: GenerationJob) -> dict[str, Any]:
    return completion_body(job, response_head(job))


def _completion_events(job: GenerationJob) -> Iterator[tuple[int, bytes]]:
    return stream_events(job, response_head(job))


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
    await sleep_until(arrived + _EMBED_BASE_S + chars * _EMBED_PER_CHAR_S)
    tokens = sum(item.tokens for item in job.inputs)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return json_response({"object": "list", "data": data, "model": job.model, "usage": usage})


async def _models(request: web.Request) -> web.Response:
    model = request.app[MOCK_SETTINGS].model
    entry = {"id": model, "object": "model", "created": _STARTED_AT, "owned_by": "taxmeter"}
    return json_response({"object": "list", "data": [entry]})


async def _health(request: web.Request) -> web.Response:
    return web.Response()
