"""Text a Responses stream announces in an item's start, with no delta naming its kind.

An item (or a part) may arrive with text already in it (``output_item.added``,
``content_part.added``); the stream judge reads it as the part's first delta.
What the judge holds back of it goes out at the part's end as one more delta,
and with no delta event of the part's own to copy, its event type comes from
the part's kind (and, for arguments, the item's type).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from proxy.config.schema import parse_config
from proxy.formats.sse import SseParser
from proxy.judge.build import build_chains, build_filters
from proxy.judge.stream_judge import StreamJudge
from proxy.measure.timeline import Timeline
from proxy.surfaces.responses_stream import ResponsesStream

# Held back when it arrives: an address that could still grow (".community").
HELD = "see jane.doe@example.com"
PII = {"filters": [{"name": "pii", "type": "pii"}]}


def item(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "id": "it_1", "status": "in_progress", **fields}


# What was announced -> (the delta event the rest goes out in, its index key or None).
CASES: dict[str, tuple[dict[str, Any], str, str | None]] = {
    "a message's output text": (
        item("message", role="assistant", content=[{"type": "output_text", "text": HELD}]),
        "response.output_text.delta", "content_index"),
    "a message's refusal": (
        item("message", role="assistant", content=[{"type": "refusal", "refusal": HELD}]),
        "response.refusal.delta", "content_index"),
    "a reasoning text": (
        item("reasoning", summary=[], content=[{"type": "reasoning_text", "text": HELD}]),
        "response.reasoning_text.delta", "content_index"),
    "a reasoning summary": (
        item("reasoning", summary=[{"type": "summary_text", "text": HELD}]),
        "response.reasoning_summary_text.delta", "summary_index"),
    "a function call's arguments": (
        item("function_call", call_id="c", name="f", arguments='{"to": "' + HELD),
        "response.function_call_arguments.delta", None),
    "an MCP call's arguments": (
        item("mcp_call", server_label="s", name="f", arguments='{"to": "' + HELD),
        "response.mcp_call_arguments.delta", None),
    "a custom tool's input": (
        item("custom_tool_call", call_id="c", name="f", input=HELD),
        "response.custom_tool_call_input.delta", None),
    "a code interpreter's code": (
        item("code_interpreter_call", container_id="x", code=f"# {HELD}", outputs=None),
        "response.code_interpreter_call_code.delta", None),
}  # fmt: skip


async def judged(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events a client receives (the real judge, chain and codec)."""
    parsed = parse_config(PII)
    chain = build_chains(parsed, build_filters(parsed))["default"]
    judge = StreamJudge(chain, chain.stream, chain.stream_end, ResponsesStream(), "responses",
                        {}, "r", Timeline())  # fmt: skip
    wire = b"".join(
        b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events
    )
    out = b""
    for event in SseParser().feed(wire):
        out += await judge.on_event(event, 0)
    return [orjson.loads(e.data) for e in SseParser().feed(out) if e.data]


@pytest.mark.parametrize("case", CASES)
async def test_a_held_tail_of_announced_text_goes_out_as_a_delta_of_its_kind(case: str) -> None:
    announced, delta_type, index_key = CASES[case]
    done = {**orjson.loads(orjson.dumps(announced)), "status": "completed"}
    events = [
        {"type": "response.output_item.added", "output_index": 0, "item": announced},
        {"type": "response.output_item.done", "output_index": 0, "item": done},
    ]
    for n, event in enumerate(events):
        event["sequence_number"] = n
    got = await judged(events)
    released = [e for e in got if e["type"].endswith(".delta")]
    assert [e["type"] for e in released] == [delta_type], got
    (delta,) = released
    assert "[EMAIL]" in delta["delta"]
    assert "jane" not in orjson.dumps(got).decode()
    assert delta["item_id"] == "it_1"
    assert delta["output_index"] == 0
    assert delta.get("content_index") == (0 if index_key == "content_index" else None)
    assert delta.get("summary_index") == (0 if index_key == "summary_index" else None)
    # An output text's delta carries its (emptied) logprobs, as OpenAI's do; no other does.
    assert delta.get("logprobs", "none") == (
        [] if delta_type == "response.output_text.delta" else "none"
    )
    assert [e["sequence_number"] for e in got] == list(range(len(got)))
    assert got[1] is delta
    assert got[-1]["type"] == "response.output_item.done"


ENDINGS = {
    # The part's own end: no item ever named, so no item id to give.
    "its part's end": ("response.content_part.done", None),
    # The item's end, as the first the stream says of the item: its id is given.
    "its item's end": ("response.output_item.done", "msg_1"),
}


@pytest.mark.parametrize("ending", ENDINGS)
async def test_a_part_announced_before_any_item_is_released_the_same_way(ending: str) -> None:
    """A content part's start with text in it, its item never announced (an upstream
    that skips ``output_item.added``): the rest still goes out, as output text."""
    end_type, item_id = ENDINGS[ending]
    part = {"type": "output_text", "text": HELD, "annotations": []}
    done: dict[str, Any] = {"part": part, "content_index": 0}
    if end_type == "response.output_item.done":
        done = {"item": {"type": "message", "id": "msg_1", "role": "assistant",
                         "status": "completed", "content": [part]}}  # fmt: skip
    events = [
        {"type": "response.content_part.added", "output_index": 0, "content_index": 0,
         "part": part},
        {"type": end_type, "output_index": 0, **done},
    ]  # fmt: skip
    for n, event in enumerate(events):
        event["sequence_number"] = n
    got = await judged(events)
    assert [e["type"] for e in got] == [
        "response.content_part.added", "response.output_text.delta", end_type
    ]  # fmt: skip
    assert got[1]["delta"] == "[EMAIL]"
    assert got[1].get("item_id") == item_id
    text = got[2]["part"] if item_id is None else got[2]["item"]["content"][0]
    assert text["text"] == "see [EMAIL]"


def message_with(text: str) -> dict[str, Any]:
    return {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}  # fmt: skip


# Events a part's deltas come in -> where its held tail must go out (output, index).
PLACES: dict[str, tuple[list[dict[str, Any]], str, int]] = {
    # Some servers leave out the indices of a Response's only item and part: both are 0.
    "no index given": ([
        {"type": "response.output_item.added", "item": {**message_with(""), "content": []}},
        {"type": "response.output_text.delta", "delta": HELD},
        {"type": "response.output_text.done", "text": HELD},
        {"type": "response.output_item.done", "item": message_with(HELD)},
    ], "content_index", 0),
    "a second reasoning text": ([
        {"type": "response.output_item.added", "output_index": 0,
         "item": item("reasoning", summary=[], content=[])},
        {"type": "response.reasoning_text.delta", "output_index": 0, "content_index": 1,
         "delta": HELD},
        {"type": "response.reasoning_text.done", "output_index": 0, "content_index": 1,
         "text": HELD},
    ], "content_index", 1),
}  # fmt: skip


@pytest.mark.parametrize("case", PLACES)
async def test_a_held_tail_goes_out_at_the_place_its_part_s_events_name(case: str) -> None:
    events, index_key, index = PLACES[case]
    for n, event in enumerate(events):
        event["sequence_number"] = n
    got = await judged(events)
    assert "jane" not in orjson.dumps(got).decode()
    # The tail held back, released at the part's end as a delta of its own.
    released = [e for e in got if "[EMAIL]" in e.get("delta", "")]
    assert len(released) == 1, got
    assert released[0]["output_index"] == 0
    assert released[0][index_key] == index
    assert released[0]["item_id"] == events[0]["item"]["id"]


def call(arguments: str, status: str) -> dict[str, Any]:
    return item("function_call", call_id="c", name="send", arguments=arguments, status=status)


async def test_only_a_call_s_announced_arguments_have_their_escapes_written_out() -> None:
    """A call's arguments are JSON: the client reads ``\\u0040`` as "@", so the judge
    does too, and an escape cut between the announced text and its first delta is
    one character. Any other text with a backslash in it is text, and goes out as is."""
    code = 'print("\\u0041")'  # a message that shows code, not an escape
    events = [
        {"type": "response.output_item.added", "output_index": 0, "item": item(
            "message", role="assistant", content=[{"type": "output_text", "text": code}])},
        {"type": "response.output_item.done", "output_index": 0, "item": item(
            "message", role="assistant", status="completed",
            content=[{"type": "output_text", "text": code}])},
        {"type": "response.output_item.added", "output_index": 1,
         "item": call('{"to": "jane.doe\\u00', "in_progress")},
        {"type": "response.function_call_arguments.delta", "output_index": 1, "item_id": "it_1",
         "delta": '40example.com"}'},
    ]  # fmt: skip
    got = await judged(events)
    assert got[0]["item"]["content"][0]["text"] == code
    assert got[1]["item"]["content"][0]["text"] == code
    sent = got[2]["item"]["arguments"] + "".join(
        e["delta"] for e in got if e["type"] == "response.function_call_arguments.delta"
    )
    assert "jane" not in sent
    assert orjson.loads(sent) == {"to": "[EMAIL]"}


async def test_interleaved_calls_each_write_out_their_own_escapes() -> None:
    """An escape cut between two deltas of one call is joined across the other
    call's delta that comes between them."""
    events = [
        {"type": "response.output_item.added", "output_index": 0, "item": call("", "in_progress")},
        {"type": "response.output_item.added", "output_index": 1,
         "item": {**call("", "in_progress"), "id": "it_2"}},
        {"type": "response.function_call_arguments.delta", "output_index": 0, "item_id": "it_1",
         "delta": '{"to": "jane.doe\\u00'},
        {"type": "response.function_call_arguments.delta", "output_index": 1, "item_id": "it_2",
         "delta": '{"n": "\\u0041"}'},
        {"type": "response.function_call_arguments.delta", "output_index": 0, "item_id": "it_1",
         "delta": '40example.com"}'},
    ]  # fmt: skip
    got = await judged(events)
    sent = {0: "", 1: ""}
    for event in got:
        if event["type"] == "response.function_call_arguments.delta":
            sent[event["output_index"]] += event["delta"]
    assert orjson.loads(sent[0]) == {"to": "[EMAIL]"}
    assert orjson.loads(sent[1]) == {"n": "A"}


async def test_a_refusal_s_held_tail_goes_out_as_a_refusal_delta() -> None:
    """No part announced the refusal: its own deltas name their kind."""
    events = [
        {"type": "response.output_item.added", "output_index": 0,
         "item": item("message", role="assistant", content=[])},
        {"type": "response.refusal.delta", "output_index": 0, "item_id": "it_1",
         "content_index": 0, "delta": HELD},
        {"type": "response.output_item.done", "output_index": 0,
         "item": item("message", role="assistant", status="completed", content=[])},
    ]  # fmt: skip
    got = await judged(events)
    assert [e["type"] for e in got] == [
        "response.output_item.added",
        "response.refusal.delta",
        "response.refusal.delta",
        "response.output_item.done",
    ]
    assert "".join(e["delta"] for e in got[1:3]) == "see [EMAIL]"


async def test_a_stream_of_odd_but_harmless_shapes_goes_out_as_it_came() -> None:
    """A number that is not one, a Response announced with no output list or with
    arguments that are an object, a text with a backslash in it: nothing to change,
    so nothing is changed."""
    code = 'print("\\u0041")'
    events = [
        {"type": "response.created", "sequence_number": "0",
         "response": {"id": "r", "object": "response", "status": "in_progress", "output": None}},
        {"type": "response.in_progress", "response": {
            "id": "r", "object": "response", "status": "in_progress",
            "output": [{**call("", "in_progress"), "arguments": {"to": "an object"}}]}},
        {"type": "response.output_item.added", "output_index": 0,
         "item": item("message", role="assistant", content=[])},
        {"type": "response.output_text.delta", "output_index": 0, "item_id": "it_1",
         "content_index": 0, "delta": code},
        {"type": "response.output_item.done", "output_index": 0,
         "item": item("message", role="assistant", status="completed",
                      content=[{"type": "output_text", "text": code}])},
        {"type": "response.output_item.done", "output_index": 1,  # never announced, no text
         "item": item("message", role="assistant", status="completed", content=[])},
    ]  # fmt: skip
    assert await judged(orjson.loads(orjson.dumps(events))) == events


def both(text: str, refusal: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "refusal": refusal, "annotations": []}


async def test_each_text_of_a_part_with_both_goes_out_in_its_own_place() -> None:
    """A part with a text and a refusal is two texts, each its own channel: per
    part, per item; neither is written over with the other's. (Each ends a line, so
    nothing of it is held back as what could be the start of an address.)"""
    events = [
        {"type": "response.output_item.added", "output_index": 0,
         "item": item("message", role="assistant", content=[])},
        {"type": "response.content_part.added", "output_index": 0, "item_id": "it_1",
         "content_index": 0, "part": both("first text \n", "first refusal \n")},
        {"type": "response.content_part.added", "output_index": 0, "item_id": "it_1",
         "content_index": 1, "part": both("second text \n", "second refusal \n")},
        {"type": "response.output_item.added", "output_index": 1,
         "item": {**item("message", role="assistant", content=[]), "id": "it_2"}},
        {"type": "response.content_part.added", "output_index": 1, "item_id": "it_2",
         "content_index": 0, "part": both("third text \n", "third refusal \n")},
    ]  # fmt: skip
    assert await judged(orjson.loads(orjson.dumps(events))) == events
