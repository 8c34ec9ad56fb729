"""Each field a chat stream carries text in is read as the text of its own choice.

After the reading, every string it left out is judged too (the sweep), whole,
on a channel of no choice; so a field the reading missed would still be
judged, but a block on it would end the first choice, not its own. Each case
streams a denylisted phrase in one field of the second choice (split across
two deltas where the field streams, whole where it comes whole): the block
ends that choice, and the second half never goes out.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.loopback import ProxyFactory
from tests.security.conftest import data_events, streamed
from tests.surfaces.conftest import Scripted, sse
from tests.surfaces.test_chat_fields import CHAT, FILTERS, chat, user


def calls(**call: Any) -> dict[str, Any]:
    return {"tool_calls": [{"index": 2, **call}]}


def split(make: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The field ``make`` builds, with "open " in one delta and "sesame" in the next."""
    return make("open "), make("sesame")


FIELDS: dict[str, tuple[dict[str, Any], ...]] = {
    "the content": split(lambda t: {"content": t}),
    "a text part": split(lambda t: {"content": [{"type": "text", "text": t}]}),
    "a refusal part": split(lambda t: {"content": [{"type": "refusal", "refusal": t}]}),
    "the refusal": split(lambda t: {"refusal": t}),
    "the reasoning": split(lambda t: {"reasoning_content": t}),
    "vLLM's reasoning": split(lambda t: {"reasoning": t}),
    "a tool call's arguments": (
        calls(id="t", type="function", function={"name": "f", "arguments": "open "}),
        calls(function={"arguments": "sesame"})),
    "a custom tool's input": (
        calls(id="t", type="custom", custom={"name": "f", "input": "open "}),
        calls(custom={"input": "sesame"})),
    "a legacy function call's arguments": (
        {"function_call": {"name": "f", "arguments": "open "}},
        {"function_call": {"arguments": "sesame"}}),
    "a thinking block": split(
        lambda t: {"thinking_blocks": [{"type": "thinking", "thinking": t}]}),
    "a tool call's name": (calls(id="t", type="function", function={"name": "open sesame"}),),
    "a custom tool's name": (calls(id="t", type="custom", custom={"name": "open sesame"}),),
    "a legacy function call's name": ({"function_call": {"name": "open sesame"}},),
    "a tool call with no index (its place in the list)": (
        {"tool_calls": [{"id": "t", "type": "function", "function": {"name": "open sesame"}}]},),
    "a tool call after one that is no object": (
        {"tool_calls": [7, {"index": 2, "function": {"name": "open sesame"}}]},),
    "a tool call's arguments given as an object (Mistral)": (
        calls(id="t", type="function", function={"name": "f", "arguments": {"open sesame": 1}}),),
    "the delta's field not heard of": ({"vendor_note": "open sesame"},),
    "a content part's field not heard of": (
        {"content": [{"type": "text", "text": "hi", "note": "open sesame"}]},),
}  # fmt: skip


def second_choice(delta: dict[str, Any]) -> bytes:
    choices = [{"index": 1, "delta": delta, "finish_reason": None}]
    return sse({"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": choices})


@pytest.mark.parametrize("case", FIELDS)
async def test_a_block_in_a_field_of_the_second_choice_ends_that_choice(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    scripted.script = [
        *(second_choice(delta) for delta in FIELDS[case]),
        second_choice({"content": "more"}),
        b"data: [DONE]\n\n",
    ]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}{CHAT}", chat(user("hi"), stream=True))
    assert b"sesame" not in raw
    assert raw.endswith(b"data: [DONE]\n\n")
    ended = data_events(raw)[-1]
    assert ended["choices"] == [{"index": 1, "delta": {}, "finish_reason": "content_filter"}]


async def test_interleaved_calls_each_write_out_their_own_escapes(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """An escape cut between two deltas of one call's arguments is joined across
    the other call's delta between them: "\\u0040" is the "@" of an address."""
    scripted.script = [
        second_choice(calls(id="a", type="function",
                            function={"name": "f", "arguments": '{"to": "jane.doe\\u00'})),
        second_choice({"tool_calls": [{"index": 3, "id": "b", "type": "function",
                                       "function": {"name": "g", "arguments": '{"n": 1}'}}]}),
        second_choice(calls(function={"arguments": '40example.com"}'})),
        b"data: [DONE]\n\n",
    ]  # fmt: skip
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}{CHAT}", chat(user("hi"), stream=True))
    arguments = {2: "", 3: ""}
    for event in data_events(raw):
        for call in event["choices"][0]["delta"].get("tool_calls", []):
            arguments[call["index"]] += call.get("function", {}).get("arguments", "")
    assert arguments == {2: '{"to": "[EMAIL]"}', 3: '{"n": 1}'}


# A denylisted phrase beside the second choice's delta: in the choice itself (its
# own), or in the chunk, whole or split across two (no choice's: the first ends).
BESIDE: dict[str, tuple[list[tuple[dict[str, Any], dict[str, Any]]], int]] = {
    "the choice's field not heard of": ([({"note": "open sesame"}, {})], 1),
    "the chunk's field not heard of": ([({}, {"vendor": "open sesame"})], 0),
    "the chunk's field, split across two chunks": (
        [({}, {"vendor": "open "}), ({}, {"vendor": "sesame"})], 0),
}  # fmt: skip


@pytest.mark.parametrize("case", BESIDE)
async def test_a_block_beside_a_choice_s_delta_ends_the_choice_it_belongs_to(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    chunks, ended_choice = BESIDE[case]
    script = []
    for fields, top in chunks:
        choice = {"index": 1, "delta": {"content": "hi"}, "finish_reason": None, **fields}
        script.append(sse({"id": "c", "object": "chat.completion.chunk", "model": "m",
                           "choices": [choice], **top}))  # fmt: skip
    scripted.script = [*script, b"data: [DONE]\n\n"]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}{CHAT}", chat(user("hi"), stream=True))
    assert b"sesame" not in raw
    ended = data_events(raw)[-1]
    assert ended["choices"] == [
        {"index": ended_choice, "delta": {}, "finish_reason": "content_filter"}
    ]
