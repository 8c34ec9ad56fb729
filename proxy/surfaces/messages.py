"""Anthropic's Messages API: ``POST /v1/messages`` (served by vLLM and LiteLLM too).

The prompt is ``system`` (a string or text blocks), every message's content
whatever its role (a string or blocks, read by :mod:`proxy.surfaces.anthropic_text`),
every tool's ``description``, every string of its ``input_schema`` and
its ``input_examples``, and every string of an ``output_config`` schema.

The answer is one message, judged as one part: its blocks are one reply,
Anthropic refuses a message (not a block) with ``stop_reason: "refusal"``,
and a phrase split across two blocks is still one text to the filters. A
blocked answer keeps its usage and loses its content: ``content: []``,
``stop_reason: "refusal"``. A blocked request is a 400
``invalid_request_error``, as the API answers a request it will not serve.

Errors the proxy itself answers on this route are in Anthropic's shape,
``{"type": "error", "error": {"type": ..., "message": ...}}``, the type from
the HTTP status, and taxmeter's own code leading the message
(``"content_filter: the request was blocked ..."``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from proxy.formats.errors import STATUS
from proxy.surfaces.anthropic_text import block_texts, content_texts
from proxy.surfaces.base import (
    PROMPT_DEFINED,
    PROMPT_NOT_TEXT,
    AnswerPart,
    Opaque,
    Prompt,
    StreamCodec,
    Surface,
    Usage,
    encode_sse,
    usage_of,
    written_out,
)
from proxy.surfaces.messages_stream import (
    BLOCK_KEYS,
    MESSAGE_KEYS,
    OPAQUE,
    REFUSAL_DETAILS,
    MessagesStream,
)
from proxy.surfaces.unheard_of import drop_unheard_of, unheard_of

# Anthropic's error type for each HTTP status the proxy answers with.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


class Messages(Surface):
    label = "messages"
    needs = "messages"
    answer_opaque = OPAQUE
    prompt_swept = ("messages", "system")
    # Base64 sources (counted as uninspected by the reading), sealed thinking.
    prompt_opaque = Opaque(
        by_type={"base64": frozenset({"data"}), "redacted_thinking": frozenset({"data"})},
        anywhere=frozenset({"encrypted_content", "encrypted_index"}),
        not_text=PROMPT_NOT_TEXT,
        defined=PROMPT_DEFINED,
    )

    def prompt(self, body: Any) -> Prompt | None:
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return None
        prompt = Prompt()
        content_texts(body, "system", prompt)
        for message in body["messages"]:
            if not isinstance(message, dict):
                return None
            content_texts(message, "content", prompt)
        tools = body.get("tools")
        # A tool's whole definition: every string and key (its examples too).
        written_out(tools if isinstance(tools, list) else [], prompt)
        config = body.get("output_config")
        # The format's schema, and the beta's (structured-outputs-2025-11-13) before it.
        formats = [config.get("format") if isinstance(config, dict) else None,
                   body.get("output_format")]  # fmt: skip
        for output_format in formats:
            if isinstance(output_format, dict):
                written_out(output_format.get("schema"), prompt)
        written_out(body.get("tool_choice"), prompt)  # the tool to call, by name
        # vLLM's template variables (its Messages route renders a chat template).
        written_out(body.get("chat_template_kwargs"), prompt)
        return prompt

    def answer(self, body: Any) -> list[AnswerPart] | None:
        content = body.get("content") if isinstance(body, dict) else None
        if not isinstance(content, list):
            return None
        found = Prompt()
        for block in content:
            if not isinstance(block, dict):
                return None
            block_texts(block, found)
            kind = block.get("type")  # any JSON value: a list cannot be looked up
            heard_of = BLOCK_KEYS.get(kind) if isinstance(kind, str) else None
            if heard_of is not None:
                unheard_of(block, heard_of, found)
        unheard_of(body, MESSAGE_KEYS, found)
        return [AnswerPart(found.texts, _withhold(body))]

    def stream(self, request_body: Any) -> StreamCodec:
        return MessagesStream()

    def usage(self, body: Any) -> Usage | None:
        return usage_of(body.get("usage"), "input_tokens", "output_tokens")

    def finish_reasons(self, body: Any) -> list[str]:
        reason = body.get("stop_reason") if isinstance(body, dict) else None
        return [reason] if isinstance(reason, str) else []

    def input_messages(self, body: Any) -> Any:
        if not isinstance(body, dict):
            return None
        messages = body.get("messages")
        system = body.get("system")
        if system is None:
            return messages
        return [{"role": "system", "content": system}, *(messages or ())]

    def output_messages(self, body: Any) -> Any:
        if not isinstance(body, dict) or "content" not in body:
            return None
        return [{"role": body.get("role", "assistant"), "content": body["content"]}]

    def error_body(
        self, message: str, code: str, error_type: str | None = None, status: int | None = None
    ) -> bytes:
        return orjson.dumps({"type": "error", "error": anthropic_error(message, code, status)})

    def error_event(self, message: str, code: str, status: int) -> bytes:
        return encode_sse(self.error_body(message, code, status=status), "error")


def anthropic_error(message: str, code: str, status: int | None) -> dict[str, str]:
    """The error object; the type from the status (the code's own when none is given)."""
    if status is None:
        status = STATUS.get(code, 500)
    kind = ERROR_TYPES.get(status)
    if kind is None:
        kind = "api_error" if status >= 500 else "invalid_request_error"
    # taxmeter's code leads the message: Anthropic's error object has no place for it.
    return {"type": kind, "message": f"{code}: {message}"}


def _withhold(message: dict[str, Any]) -> Callable[[], None]:
    def withhold() -> None:
        # As Anthropic ends a message its classifiers stopped; the usage stays true.
        drop_unheard_of(message, MESSAGE_KEYS)
        message["content"] = []
        message["stop_reason"] = "refusal"
        message["stop_sequence"] = None
        message["stop_details"] = dict(REFUSAL_DETAILS)

    return withhold
