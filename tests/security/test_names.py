"""A name is text: the name of the tool a model calls, in its answer and in a stream.

A client runs the tool it is named (and shows the name to its user); the
next request writes the name out for the model again. The prompt side's
names (a speaker's, a call's in the history) are rows of
``test_prompt_fields.CASES``.
"""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.loopback import ProxyFactory, post_json
from tests.security.conftest import EMAIL, FILTERS, data_events, streamed
from tests.surfaces.conftest import Scripted, sse

NAME = f"to:{EMAIL}"
RESPONSE = {"id": "resp_1", "object": "response", "created_at": 1, "model": "m",
            "status": "completed", "usage": None}  # fmt: skip
CALL_ITEM = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": NAME,
             "arguments": "{}", "status": "completed"}  # fmt: skip
MESSAGE = {"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
           "stop_reason": "tool_use", "usage": {"input_tokens": 1, "output_tokens": 1}}  # fmt: skip
TOOL_USE = {"type": "tool_use", "id": "tu_1", "name": NAME, "input": {}}

# (path, request, answer): a called tool's name in an answer that is not streamed.
ANSWERS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "chat: a tool call": (
        "/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        {"id": "c", "object": "chat.completion", "model": "m", "choices": [
            {"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": None, "tool_calls": [
                    {"id": "t", "type": "function",
                     "function": {"name": NAME, "arguments": "{}"}}]}}]}),
    "responses: a function_call item": (
        "/v1/responses", {"model": "m", "input": "hi"}, {**RESPONSE, "output": [CALL_ITEM]}),
    "chat: a custom tool call": (
        "/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        {"id": "c", "object": "chat.completion", "model": "m", "choices": [
            {"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": None, "tool_calls": [
                    {"id": "t", "type": "custom",
                     "custom": {"name": NAME, "input": f"to:{EMAIL}"}}]}}]}),
    "messages: a tool_use block": (
        "/v1/messages",
        {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
        {**MESSAGE, "content": [TOOL_USE]}),
}  # fmt: skip


@pytest.mark.parametrize("case", ANSWERS)
async def test_a_called_tools_name_reaches_the_client_redacted(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    path, request, scripted.answer = ANSWERS[case]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, answer = await post_json(f"{proxy.url}{path}", request)
    assert status == 200
    assert EMAIL.encode() not in answer
    assert b"to:[EMAIL]" in answer


def chat_stream() -> list[bytes | float]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return sse({"id": "c", "object": "chat.completion.chunk", "model": "m",
                    "choices": [choice]})  # fmt: skip

    call = {"index": 0, "id": "t", "type": "function", "function": {"name": NAME, "arguments": ""}}
    return [
        chunk({"role": "assistant", "tool_calls": [call]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
        chunk({}, "tool_calls"),
        b"data: [DONE]\n\n",
    ]


def responses_stream() -> list[bytes | float]:
    added = {**CALL_ITEM, "arguments": "", "status": "in_progress"}
    where = {"item_id": "fc_1", "output_index": 0}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {**RESPONSE, "status": "in_progress",
                                                  "output": []}},
        {"type": "response.output_item.added", "output_index": 0, "item": added},
        {"type": "response.function_call_arguments.delta", **where, "delta": "{}"},
        # OpenAI's schema repeats the call's name here.
        {"type": "response.function_call_arguments.done", **where, "name": NAME,
         "arguments": "{}"},
        {"type": "response.output_item.done", "output_index": 0, "item": CALL_ITEM},
        {"type": "response.completed", "response": {**RESPONSE, "output": [CALL_ITEM]}},
    ]  # fmt: skip
    return [sse({**e, "sequence_number": n}, e["type"]) for n, e in enumerate(events)]


def messages_stream() -> list[bytes | float]:
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {**MESSAGE, "content": [], "stop_reason": None}},
        {"type": "content_block_start", "index": 0, "content_block": TOOL_USE},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "input_json_delta", "partial_json": "{}"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
         "usage": {"output_tokens": 3}},
        {"type": "message_stop"},
    ]  # fmt: skip
    return [sse(e, e["type"]) for e in events]


STREAMS = {
    "chat": ("/v1/chat/completions", chat_stream,
             {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}),
    "responses": ("/v1/responses", responses_stream, {"model": "m", "input": "hi", "stream": True}),
    "messages": ("/v1/messages", messages_stream,
                 {"model": "m", "max_tokens": 8, "stream": True,
                  "messages": [{"role": "user", "content": "hi"}]}),
}  # fmt: skip


@pytest.mark.parametrize("surface", STREAMS)
async def test_a_streamed_tool_calls_name_reaches_the_client_redacted(
    start_proxy: ProxyFactory, scripted: Scripted, surface: str
) -> None:
    path, script, request = STREAMS[surface]
    scripted.script = script()
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}{path}", request)
    assert EMAIL.encode() not in raw
    if surface == "chat":
        # A name is judged as its pieces come, joined; what is held of it goes out
        # before the call's arguments begin.
        calls = [
            c for e in data_events(raw) for c in e["choices"][0]["delta"].get("tool_calls", [])
        ]
        named = [c["function"].get("name", "") for c in calls]
        arguments = [bool(c["function"].get("arguments")) for c in calls]
        assert "".join(named[: arguments.index(True)]) == "to:[EMAIL]"
        assert raw.endswith(b"data: [DONE]\n\n")
    else:
        assert b"to:[EMAIL]" in raw
        assert data_events(raw)[-1]["type"] in ("response.completed", "message_stop")
        # Judged whole where it arrives, and sent there: the call is announced named.
        first = next(
            e for e in data_events(raw)
            if e["type"] in ("response.output_item.added", "content_block_start")
        )  # fmt: skip
        assert (first.get("item") or first.get("content_block"))["name"] == "to:[EMAIL]"


async def test_a_denylisted_name_in_a_stream_ends_it(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """A name judged whole as it arrives: the call is never announced to the client."""
    scripted.script = [
        part.replace(NAME.encode(), b"open sesame") if isinstance(part, bytes) else part
        for part in messages_stream()
    ]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}/v1/messages", STREAMS["messages"][2])
    assert b"open sesame" not in raw
    assert b'"stop_reason":"refusal"' in raw


async def test_a_call_announced_with_no_name_yet_keeps_the_name_it_is_given_at_its_end(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """An empty name judged as the whole name closed its channel: the name the item's
    end gave was then replaced by what had been sent of it, nothing."""
    done = {**CALL_ITEM, "name": "get_weather"}
    events: list[dict[str, Any]] = [
        {"type": "response.output_item.added", "output_index": 0,
         "item": {**CALL_ITEM, "name": "", "arguments": "", "status": "in_progress"}},
        {"type": "response.output_item.done", "output_index": 0, "item": done},
        {"type": "response.completed", "response": {**RESPONSE, "output": [done]}},
    ]  # fmt: skip
    scripted.script = [sse({**e, "sequence_number": n}, e["type"]) for n, e in enumerate(events)]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}/v1/responses", STREAMS["responses"][2])
    *_, item_done, completed = data_events(raw)
    assert item_done["item"]["name"] == "get_weather"
    assert completed["response"]["output"][0]["name"] == "get_weather"


async def test_a_streamed_custom_tool_calls_input_is_judged_joined(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    def chunk(call: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": {"tool_calls": [call]} if call else {},
                  "finish_reason": finish}  # fmt: skip
        return sse({"id": "c", "object": "chat.completion.chunk", "model": "m",
                    "choices": [choice]})  # fmt: skip

    scripted.script = [
        chunk({"index": 0, "id": "t", "type": "custom", "custom": {"name": "shell", "input": ""}}),
        chunk({"index": 0, "custom": {"input": "echo open "}}),
        chunk({"index": 0, "custom": {"input": "sesame"}}),
        chunk({}, "tool_calls"),
        b"data: [DONE]\n\n",
    ]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}/v1/chat/completions", STREAMS["chat"][2])
    assert b"sesame" not in raw
    assert data_events(raw)[-1]["choices"][0]["finish_reason"] == "content_filter"


def split_name_stream(pieces: list[str]) -> list[bytes | float]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return sse({"id": "c", "object": "chat.completion.chunk", "model": "m",
                    "choices": [choice]})  # fmt: skip

    first = {"index": 0, "id": "t", "type": "function",
             "function": {"name": pieces[0], "arguments": ""}}  # fmt: skip
    rest = [{"index": 0, "function": {"name": piece}} for piece in pieces[1:]]
    return [
        chunk({"role": "assistant", "tool_calls": [first]}),
        *(chunk({"tool_calls": [call]}) for call in rest),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Paris"}'}}]}),
        chunk({}, "tool_calls"),
        b"data: [DONE]\n\n",
    ]


async def test_a_name_a_server_splits_is_judged_joined(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    scripted.script = split_name_stream(["open ", "sesame"])
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}/v1/chat/completions", STREAMS["chat"][2])
    assert b"sesame" not in raw
    assert data_events(raw)[-1]["choices"][0]["finish_reason"] == "content_filter"


async def test_the_sdk_reports_a_calls_arguments_under_its_whole_name(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """The name was held to the choice's end (it could begin an e-mail address): the
    SDK reported the call's arguments with no name, and parsed none."""
    scripted.script = split_name_stream(["get_", "weather"])
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    client = openai.AsyncOpenAI(base_url=f"{proxy.url}/v1", api_key="k", max_retries=0)
    async with (
        client,
        client.chat.completions.stream(
            model="m", messages=[{"role": "user", "content": "weather?"}]
        ) as stream,
    ):
        names = [
            e.name
            async for e in stream
            if e.type == "tool_calls.function.arguments.delta" and e.arguments_delta
        ]
    assert names == ["get_weather"]


@pytest.mark.parametrize("index", [[0], {"a": 1}, "0"])
async def test_a_tool_call_whose_index_is_no_number_is_upstream_malformed(
    start_proxy: ProxyFactory, scripted: Scripted, index: Any
) -> None:
    """A list or an object as the index raised TypeError inside the codec."""
    call = {"index": index, "id": "t", "type": "custom", "custom": {"name": "f", "input": "x"}}
    choice = {"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}
    scripted.script = [sse({"id": "c", "object": "chat.completion.chunk", "choices": [choice]})]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}/v1/chat/completions", STREAMS["chat"][2])
    assert b"upstream_malformed" in raw
    await proxy.settle()
    labels = {"route": "chat_completions", "variant": "default"}
    assert proxy.value("taxmeter_requests_total", **labels, outcome="internal_error") == 0
