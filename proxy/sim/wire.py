"""OpenAI's completion shapes for the mock upstream: completion bodies and SSE chunks.

Pure functions of a parsed job; the server decides when each piece is sent.
The SSE framing (:func:`sse_event`, :func:`named_event`) serves every API.
"""

from __future__ import annotations

import base64
import struct
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson

from proxy.sim.request import GenerationJob

DONE_EVENT = b"data: [DONE]\n\n"


def response_head(job: GenerationJob) -> dict[str, Any]:
    """The fields every body or chunk of one response shares."""
    prefix, obj = ("chatcmpl-", "chat.completion") if job.chat else ("cmpl-", "text_completion")
    if job.chat and job.stream:
        obj = "chat.completion.chunk"
    return {
        "id": prefix + uuid.uuid4().hex,
        "object": obj,
        "created": int(time.time()),
        "model": job.model,
    }


def completion_body(job: GenerationJob, head: dict[str, Any]) -> dict[str, Any]:
    """A whole non-streamed chat or text completion."""
    choices = []
    for i, choice in enumerate(job.choices):
        text = "".join(choice.tokens)
        payload = (
            {"message": {"role": "assistant", "content": text}} if job.chat else {"text": text}
        )
        choices.append(
            {"index": i, **payload, "logprobs": None, "finish_reason": choice.finish_reason}
        )
    return {**head, "choices": choices, "usage": usage(job)}


def stream_events(job: GenerationJob, head: dict[str, Any]) -> Iterator[tuple[int, bytes]]:
    """(token step, SSE event) pairs in the order they are sent.

    Step ``k`` is when token ``k`` is due. A choice's closing chunk goes right
    after its last token; the usage chunk and ``[DONE]`` after the last choice's.
    """
    if job.include_usage:
        # OpenAI sends "usage": null on every chunk but the usage chunk.
        head = {**head, "usage": None}
    last = job.last_step
    for step in range(last + 1):
        for i, choice in enumerate(job.choices):
            if step == 0 and job.chat:
                yield step, _chunk(head, i, {"delta": {"role": "assistant", "content": ""}}, None)
            if step < len(choice.tokens):
                yield step, _chunk(head, i, _piece(job.chat, choice.tokens[step]), None)
            if step == max(len(choice.tokens) - 1, 0):
                yield step, _chunk(head, i, _piece(job.chat, None), choice.finish_reason)
    if job.include_usage:
        yield last, sse_event({**head, "choices": [], "usage": usage(job)})
    yield last, DONE_EVENT


def usage(job: GenerationJob) -> dict[str, int]:
    completion = job.completion_tokens
    return {
        "prompt_tokens": job.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": job.prompt_tokens + completion,
    }


def sse_event(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def named_event(obj: dict[str, Any]) -> bytes:
    """An event named by its ``type``, as the Responses and Messages APIs send them.

    Anthropic's SDK skips an event with no ``event:`` line.
    """
    kind: str = obj["type"]
    return b"event: " + kind.encode() + b"\n" + sse_event(obj)


def base64_floats(vector: list[float]) -> str:
    """OpenAI's base64 embedding format: the raw little-endian float32 array."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def _piece(chat: bool, token: str | None) -> dict[str, Any]:
    # None is the closing chunk: an empty delta, or empty text for completions.
    if not chat:
        return {"text": token or ""}
    return {"delta": {} if token is None else {"content": token}}


def _chunk(head: dict[str, Any], index: int, piece: dict[str, Any], finish: str | None) -> bytes:
    choice = {"index": index, **piece, "logprobs": None, "finish_reason": finish}
    return sse_event({**head, "choices": [choice]})
