"""The OpenAI Responses API: ``POST /v1/responses`` (and a stored Response read back).

The prompt is every text the model reads: ``instructions`` and ``input``
(a string, or a list of items: see :mod:`proxy.surfaces.responses_items`),
every tool's description and every string of its schemas, those of the
``text.format`` JSON schema, and the string values of ``prompt.variables``.
``previous_response_id``, ``conversation`` and ``item_reference`` items name
content stored by the model server: not text in this request.

The answer is a Response object, judged one output item at a time and
independent of the request, so a Response read back from storage is judged
the same way. A withheld item is emptied and the Response marked
``status: "incomplete"`` with ``incomplete_details.reason: "content_filter"``,
as OpenAI ends a response its filter stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from proxy.surfaces.base import (
    PROMPT_DEFINED,
    PROMPT_NOT_TEXT,
    AnswerPart,
    Opaque,
    Prompt,
    StreamCodec,
    Surface,
    TextRef,
    Usage,
    usage_of,
    written_out,
)
from proxy.surfaces.openai_text import part_texts
from proxy.surfaces.responses_items import (
    RESPONSE_KEYS,
    RESPONSES_OPAQUE,
    annotation_places,
    drop_tokens,
    empty_item,
    finish_reason,
    forget_written,
    items_texts,
    mark_filtered,
    output_places,
    unescape_arguments,
)
from proxy.surfaces.responses_stream import ResponsesStream
from proxy.surfaces.unheard_of import drop_unheard_of, unheard_of


class Responses(Surface):
    label = "responses"
    needs = "input"
    answer_opaque = RESPONSES_OPAQUE
    prompt_swept = ("instructions", "input")
    # An image, audio or file given inline (counted as uninspected by the reading).
    prompt_opaque = Opaque(by_type={
        "input_image": frozenset({"image_url"}), "input_file": frozenset({"file_data", "file_url"}),
        "input_audio": frozenset({"input_audio"}), "computer_call_output": frozenset({"output"}),
        "image_generation_call": frozenset({"result"}),
    }, not_text=PROMPT_NOT_TEXT, defined=PROMPT_DEFINED)  # fmt: skip

    def prompt(self, body: Any) -> Prompt | None:
        if not isinstance(body, dict):
            return None
        prompt = Prompt()
        for key in ("instructions", "input"):
            value = body.get(key)
            if isinstance(value, str):
                prompt.texts.append(TextRef(body, key))
            elif isinstance(value, list):
                if not items_texts(value, prompt):
                    return None
            elif value is not None:
                return None
        # Every tool whole, every string and key: vLLM hands a model with no
        # tool format of its own every tool, a hosted one's settings and all
        # (an MCP server's), for its chat template to write out.
        written_out(_list(body.get("tools")), prompt)
        # vLLM (gpt-oss): the conversation so far, given back as the model's messages.
        written_out(body.get("previous_input_messages"), prompt)
        text = body.get("text")
        if isinstance(text, dict):
            written_out(text.get("format"), prompt)  # its name, description and schema
        written_out(body.get("tool_choice"), prompt)  # the tool to call, by name
        # vLLM's template variables, merged over tools: text it renders.
        written_out(body.get("chat_template_kwargs"), prompt)
        template = body.get("prompt")
        variables = template.get("variables") if isinstance(template, dict) else None
        if isinstance(variables, dict):
            for key, value in variables.items():
                if isinstance(value, str):
                    prompt.texts.append(TextRef(variables, key))
                elif value is not None:
                    part_texts(value, prompt)  # input_text, or an image or a file
        return prompt

    def answer(self, body: Any) -> list[AnswerPart] | None:
        output = body.get("output") if isinstance(body, dict) else None
        if not isinstance(output, list):
            return None
        parts: list[AnswerPart] = []
        for item in output:
            if not isinstance(item, dict):
                return None
            unescape_arguments(item)
            places = output_places(item) + annotation_places(item)
            texts = [TextRef(holder, key) for _, _, holder, key in places]
            parts.append(AnswerPart(texts, _withhold(body, item), _dropper(body, item)))
        written = Prompt()
        written_out(body.get("output_messages"), written)  # vLLM: the answer as written
        if written.texts:
            parts.append(AnswerPart(written.texts, lambda: forget_written(body)))
        rest = Prompt()
        unheard_of(body, RESPONSE_KEYS, rest)
        if rest.texts:  # the Response's own, beside its items: left out if blocked
            parts.append(AnswerPart(rest.texts, lambda: drop_unheard_of(body, RESPONSE_KEYS)))
        return parts

    def stream(self, request_body: Any) -> StreamCodec:
        return ResponsesStream()

    def usage(self, body: Any) -> Usage | None:
        return usage_of(body.get("usage"), "input_tokens", "output_tokens")

    def finish_reasons(self, body: Any) -> list[str]:
        reason = finish_reason(body)
        return [reason] if reason is not None else []

    def input_messages(self, body: Any) -> Any:
        if not isinstance(body, dict):
            return None
        messages: list[Any] = []
        for key, role in (("instructions", "developer"), ("input", "user")):
            value = body.get(key)
            if isinstance(value, str):
                messages.append({"role": role, "content": value})
            elif isinstance(value, list):
                messages += value
        return messages

    def output_messages(self, body: Any) -> Any:
        return body.get("output") if isinstance(body, dict) else None


def _withhold(response: dict[str, Any], item: dict[str, Any]) -> Callable[[], None]:
    def withhold() -> None:
        empty_item(item)
        mark_filtered(response, "content_filter")

    return withhold


def _dropper(response: dict[str, Any], item: dict[str, Any]) -> Callable[[], None]:
    return lambda: drop_tokens(response, item)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
