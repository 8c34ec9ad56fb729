"""Anthropic Messages API bodies and events for the surface's tests, as the API sends them."""

from __future__ import annotations

from typing import Any

import anthropic

from tests.loopback import RunningProxy
from tests.surfaces.conftest import sse

EMAIL = "jane.doe@example.com"
PHRASE = "open sesame"
FILTERS = {
    "filters": [
        {"name": "denylist", "type": "denylist", "params": {"words": [PHRASE]},
         "stages": ["input", "output", "stream"], "stream": {"holdback_chars": 32}},
        {"name": "pii", "type": "pii", "stages": ["input", "output", "stream"],
         "stream": {"holdback_chars": 32}},
    ]
}  # fmt: skip
ROUTE = {"route": "messages", "variant": "default"}


def client(proxy: RunningProxy) -> anthropic.AsyncAnthropic:
    """The official client, unchanged but for where it sends its requests."""
    return anthropic.AsyncAnthropic(base_url=proxy.url, api_key="sk-ant-test", max_retries=0)


def message(*content: dict[str, Any], stop_reason: str = "end_turn") -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": list(content),
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 7},
    }


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def event(document: dict[str, Any]) -> bytes:
    """One stream event as Anthropic sends it: named by its type."""
    return sse(document, document["type"])


def start(input_tokens: int = 5) -> bytes:
    opening = {**message(), "content": [], "stop_reason": None}
    opening["usage"] = {"input_tokens": input_tokens, "output_tokens": 1}
    return event({"type": "message_start", "message": opening})


def block_start(index: int, block: dict[str, Any]) -> bytes:
    return event({"type": "content_block_start", "index": index, "content_block": block})


def delta(index: int, kind: str, value: str) -> bytes:
    key = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial_json"}
    body = {"type": kind, key[kind]: value}
    return event({"type": "content_block_delta", "index": index, "delta": body})


def block_stop(index: int) -> bytes:
    return event({"type": "content_block_stop", "index": index})


def end(stop_reason: str = "end_turn", output_tokens: int = 7) -> list[bytes]:
    return [
        event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            }
        ),
        event({"type": "message_stop"}),
    ]


def text_stream(*pieces: str) -> list[bytes | float]:
    """A message of one text block streamed in ``pieces``, with a ping among them."""
    script: list[bytes | float] = [start(), block_start(0, text("")), event({"type": "ping"})]
    for piece in pieces:
        script += [delta(0, "text_delta", piece), 0.005]
    return [*script, block_stop(0), *end()]
