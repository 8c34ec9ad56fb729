"""Text in shapes and places the readings did not know, found after the sweep.

A custom role (vLLM takes any, and templates print it), a tool call's
arguments given as an object (vLLM and Mistral take one; its keys are text
too), LiteLLM's prompt variables, Responses instructions given as items, a
completions prompt of nested lists (llama.cpp tokenizes the strings in them),
vLLM's `input_messages` (earlier turns as stored), an object under a key that
holds a string, escaped arguments first seen whole in a Responses stream, and
what a blocked stream repeats of an event it had not judged yet.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.loopback import ProxyFactory, post_json
from tests.security.conftest import EMAIL, FILTERS, streamed
from tests.security.test_fields_not_heard_of import CHAT, RESPONSES, SAID, chat, response
from tests.security.test_prompt_fields import CHAT_ANSWER, RESPONSE, USER
from tests.security.test_stream_fields_not_heard_of import (
    DENIED,
    ROUTES,
    chunks,
    messages_events,
    put,
    responses_events,
)
from tests.surfaces.conftest import Script, Scripted, sse

C = "/v1/chat/completions"
COMPLETION = {
    "id": "c",
    "object": "text_completion",
    "model": "m",
    "choices": [{"index": 0, "text": "ok", "finish_reason": "stop"}],
}


def call(arguments: Any) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "t", "type": "function", "function": {"name": "f", "arguments": arguments}}
        ],
    }


PROMPTS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "chat: a role (vLLM takes any)": (C, {"model": "m", "messages": [
        {"role": f"user {EMAIL}", "content": "hi"}]}, CHAT_ANSWER),
    "chat: arguments as an object, a key": (C, {"model": "m", "messages": [
        *USER, call({f"to {EMAIL}": 1})]}, CHAT_ANSWER),
    "chat: arguments as an object, under id": (C, {"model": "m", "messages": [
        *USER, call({"id": EMAIL})]}, CHAT_ANSWER),
    "chat: LiteLLM prompt_variables": (C, {"model": "m", "messages": USER,
        "prompt_id": "p", "prompt_variables": {"who": EMAIL}}, CHAT_ANSWER),
    "responses: instructions as items": ("/v1/responses", {"model": "m", "input": "hi",
        "instructions": [{"type": "message", "role": "developer", "content": "x",
                          "note": EMAIL}]}, RESPONSE),
    "completions: llama.cpp's nested mixed prompt": ("/v1/completions", {"model": "m",
        "prompt": [[1, f"mail {EMAIL}"]]}, COMPLETION),
}  # fmt: skip


@pytest.mark.parametrize("case", PROMPTS)
async def test_prompt(start_proxy: ProxyFactory, scripted: Scripted, case: str) -> None:
    path, body, scripted.answer = PROMPTS[case]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, got = await post_json(f"{proxy.url}{path}", body)
    assert status == 200, got
    assert EMAIL.encode() not in scripted.bodies[0]


def fn(arguments: Any) -> dict[str, Any]:
    return {
        "content": None,
        "tool_calls": [
            {"id": "t", "type": "function", "function": {"name": "f", "arguments": arguments}}
        ],
    }


ANSWERS: dict[str, tuple[tuple[str, dict[str, Any]], dict[str, Any]]] = {
    "chat: arguments object, 'data' (Mistral)": (CHAT, chat(fn({"data": SAID}))),
    "chat: arguments object, a key": (CHAT, chat(fn({SAID: 1}))),
    "chat: an object under finish_reason": (CHAT, chat(choice={"finish_reason": {"x": SAID}})),
    "responses: vLLM's input_messages": (RESPONSES, response(
        input_messages=[{"role": "assistant", "content": SAID}])),
}  # fmt: skip


@pytest.mark.parametrize("case", ANSWERS)
async def test_answer(start_proxy: ProxyFactory, scripted: Scripted, case: str) -> None:
    (path, request), scripted.answer = ANSWERS[case]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    _, _, body = await post_json(f"{proxy.url}{path}", request)
    assert EMAIL.encode() not in body


ESCAPED = '{"to": "' + EMAIL.replace("@", "\\u0040") + '"}'


def call_events(in_added: bool) -> Script:
    added = {
        "type": "function_call",
        "id": "fc",
        "call_id": "c",
        "name": "f",
        "status": "in_progress",
        "arguments": ESCAPED if in_added else "",
    }
    done = {**added, "status": "completed", "arguments": ESCAPED}
    events: list[dict[str, Any]] = [
        {"type": "response.output_item.added", "output_index": 0, "item": added},
        {"type": "response.function_call_arguments.done", "item_id": "fc",
         "output_index": 0, "arguments": ESCAPED},
        {"type": "response.output_item.done", "output_index": 0, "item": done},
        {"type": "response.completed",
         "response": {"id": "r", "object": "response", "status": "completed", "output": [done]}},
    ]  # fmt: skip
    return [sse({**e, "sequence_number": n}, e["type"]) for n, e in enumerate(events)]


def added_blocked(events: list[dict[str, Any]]) -> None:
    events[1]["item"].update(phase=SAID, content=[{"type": "output_text", "text": DENIED}])


STREAMS: dict[str, tuple[str, Script]] = {
    "responses: arguments only whole, escaped": ("responses", call_events(False)),
    "responses: arguments in the added item, escaped": ("responses", call_events(True)),
    "responses: blocked in an added item, its phase": ("responses",
        responses_events(added_blocked)),
    "responses: an object under item_id": ("responses",
        responses_events(put(4, item_id={"x": SAID}))),
    "chat: streamed arguments as an object, a key": ("chat", chunks({"tool_calls": [
        {"index": 0, "id": "t", "type": "function",
         "function": {"name": "f", "arguments": {f"to {EMAIL}": 1}}}]})),
    "chat: streamed arguments as an object, under an opaque key": ("chat", chunks({
        "tool_calls": [{"index": 0, "id": "t", "type": "function",
                        "function": {"name": "f", "arguments": {"data": EMAIL}}}]})),
    "chat: blocked, the chunk's template": ("chat", chunks({"content": DENIED}, created=SAID)),
    "messages: blocked in message_start": ("messages", messages_events(
        put(0, "message", stop_sequence=SAID, note=DENIED))),
}  # fmt: skip


@pytest.mark.parametrize("case", STREAMS)
async def test_stream(start_proxy: ProxyFactory, scripted: Scripted, case: str) -> None:
    route, scripted.script = STREAMS[case]
    path, request = ROUTES[route]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}{path}", {**request, "stream": True})
    assert EMAIL.encode() not in raw.replace(b"\\\\u0040", b"@")
