"""Anthropic's Messages API on the simulated model server, streamed or not.

``POST /v1/messages`` (and ``/messages``) answers with a Message: one
``text`` content block, ``stop_reason`` ``end_turn`` (``max_tokens`` when
the request's ``max_tokens`` is below the default length and cuts the
answer) and ``usage``. ``model``, ``max_tokens`` and ``messages`` are
required, as Anthropic requires them. ``system`` (a string or text blocks)
and each message's content (a string or blocks) are read as a conversation,
so the same turns get the same text as on chat completions, and a last user
message starting with ``echo:`` is echoed.

``stream: true`` sends ``message_start``, ``content_block_start``, ``ping``,
one ``content_block_delta`` (``text_delta``) per token,
``content_block_stop``, ``message_delta`` (the stop reason and
``usage.output_tokens``) and ``message_stop``, each an SSE event named by its
type. Every error on these paths is in Anthropic's shape
(:func:`anthropic_error`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from proxy.sim.fields import MockAPIError, invalid, missing
from proxy.sim.request import GenerationJob, content_text, conversation, one_answer
from proxy.sim.send import generate
from proxy.sim.wire import named_event

PATHS = ("/v1/messages", "/messages")

# Anthropic's error type for each status; any other 4xx is an invalid request.
_ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def add_routes(app: web.Application) -> None:
    for path in PATHS:
        app.router.add_post(path, create_message)


def is_messages_path(path: str) -> bool:
    """Whether errors at ``path`` are the Messages API's (in Anthropic's shape)."""
    return any(path == p or path.startswith(p + "/") for p in PATHS)


def anthropic_error(error: MockAPIError) -> dict[str, Any]:
    """``{"type": "error", "error": {"type": ..., "message": ...}, "request_id": ...}``."""
    fallback = "api_error" if error.status >= 500 else "invalid_request_error"
    kind = _ERROR_TYPES.get(error.status, fallback)
    return {
        "type": "error",
        "error": {"type": kind, "message": error.message},
        "request_id": "req_" + uuid.uuid4().hex,
    }


async def create_message(request: web.Request) -> web.StreamResponse:
    return await generate(request, parse_messages, message_body, message_events)


def parse_messages(body: dict[str, Any], model: str, default_length: int) -> GenerationJob:
    for name in ("model", "max_tokens", "messages"):
        if body.get(name) is None:
            raise missing(name)
    requested_model = body["model"]
    if not isinstance(requested_model, str) or not requested_model:
        raise invalid("model", "a model name")
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        raise invalid("messages", "a non-empty array of messages")
    turns: list[tuple[object, str]] = []
    if body.get("system") is not None:
        turns.append(("system", content_text(body["system"], "system")))
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise invalid("messages", "messages whose role is 'user' or 'assistant'")
        turns.append((message["role"], content_text(message.get("content"), "messages")))
    prompt = conversation(turns)
    return one_answer(
        body, prompt, "max_tokens", model=requested_model, default_length=default_length
    )


def message_body(job: GenerationJob) -> dict[str, Any]:
    """A whole non-streamed Message."""
    content = [{"type": "text", "text": "".join(job.choices[0].tokens)}]
    return _message(job, content, _stop_reason(job), job.completion_tokens)


def message_events(job: GenerationJob) -> Iterator[tuple[int, bytes]]:
    """(token step, SSE event) pairs in the order they are sent."""
    # Anthropic counts the first token in message_start's usage.
    started = _message(job, [], None, min(1, job.completion_tokens))
    yield 0, named_event({"type": "message_start", "message": started})
    block = {"type": "text", "text": ""}
    yield 0, named_event({"type": "content_block_start", "index": 0, "content_block": block})
    yield 0, named_event({"type": "ping"})
    for step, token in enumerate(job.choices[0].tokens):
        delta = {"type": "text_delta", "text": token}
        yield step, named_event({"type": "content_block_delta", "index": 0, "delta": delta})
    last = job.last_step
    yield last, named_event({"type": "content_block_stop", "index": 0})
    stop = {"stop_reason": _stop_reason(job), "stop_sequence": None}
    usage = {"output_tokens": job.completion_tokens}
    yield last, named_event({"type": "message_delta", "delta": stop, "usage": usage})
    yield last, named_event({"type": "message_stop"})


def _message(
    job: GenerationJob, content: list[dict[str, Any]], stop_reason: str | None, output_tokens: int
) -> dict[str, Any]:
    return {
        "id": "msg_" + uuid.uuid4().hex,
        "type": "message",
        "role": "assistant",
        "model": job.model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": job.prompt_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": output_tokens,
        },
    }


def _stop_reason(job: GenerationJob) -> str:
    return "max_tokens" if job.choices[0].finish_reason == "length" else "end_turn"
