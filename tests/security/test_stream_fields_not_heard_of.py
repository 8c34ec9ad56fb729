"""Streamed answer text under a key the proxy has not heard of is judged too.

As in tests/security/test_fields_not_heard_of.py, but for each stream: a
chunk's, a choice's or a delta's own field (OpenRouter streams
`reasoning_details` pieces, Perplexity a chunk's `search_results`), a
Messages event's, message's, block's or delta's, a Responses event's,
part's, item's or Response's. Each such string is judged whole before its
event goes out, and joined with those of the events before it, so a match
split across them ends the stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.loopback import ProxyFactory
from tests.security.conftest import EMAIL, FILTERS, data_events, streamed
from tests.surfaces.conftest import Script, Scripted, sse

SAID = f"mail {EMAIL}"
DENIED = "the word is open sesame"
ROUTES: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": (
        "/v1/chat/completions",
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    ),
    "completions": ("/v1/completions", {"model": "m", "prompt": "hi"}),
    "messages": (
        "/v1/messages",
        {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
    ),
    "responses": ("/v1/responses", {"model": "m", "input": "hi"}),
}
DONE = b"data: [DONE]\n\n"


def chunks(
    delta: dict[str, Any] | None = None, choice: dict[str, Any] | None = None, **top: Any
) -> Script:
    """A chat stream of "hi", its second chunk given the fields named."""

    def chunk(
        delta: dict[str, Any], finish: str | None = None, more: Any = None, extra: Any = None
    ) -> bytes:
        choices = [{"index": 0, "delta": delta, "finish_reason": finish, **(more or {})}]
        return sse({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                    "choices": choices, **(extra or {})})  # fmt: skip

    return [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "hi", **(delta or {})}, None, choice, top),
        chunk({}, "stop"),
        DONE,
    ]


def completion_chunks(choice: dict[str, Any]) -> Script:
    def chunk(text: str, finish: str | None = None, **more: Any) -> bytes:
        choices = [{"index": 0, "text": text, "finish_reason": finish, **more}]
        return sse({"id": "c", "object": "text_completion", "created": 1, "model": "m",
                    "choices": choices})  # fmt: skip

    return [chunk("hi", **choice), chunk("", "stop"), DONE]


MessagesEvents = list[dict[str, Any]]


def messages_events(change: Callable[[MessagesEvents], None]) -> Script:
    """A Messages stream of "hi", changed by ``change`` before it is sent."""
    message: dict[str, Any] = {
        "id": "m", "type": "message", "role": "assistant", "model": "m", "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }  # fmt: skip
    events: MessagesEvents = [
        {"type": "message_start", "message": message},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": 1}},
        {"type": "message_stop"},
    ]  # fmt: skip
    change(events)
    return [sse(event, event["type"]) for event in events]


ResponsesEvents = list[dict[str, Any]]


def responses_events(change: Callable[[ResponsesEvents], None]) -> Script:
    """A Responses stream of "hi", changed by ``change`` before it is sent."""

    def response(status: str, output: list[Any]) -> dict[str, Any]:
        return {"id": "r", "object": "response", "created_at": 1, "model": "m",
                "status": status, "output": output, "usage": None}  # fmt: skip

    def item(text: str, status: str) -> dict[str, Any]:
        parts = [part(text)] if text else []
        return {"type": "message", "id": "msg", "role": "assistant", "status": status,
                "content": parts}  # fmt: skip

    def part(text: str) -> dict[str, Any]:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

    at = {"item_id": "msg", "output_index": 0, "content_index": 0}
    done = item("hi", "completed")
    events: ResponsesEvents = [
        {"type": "response.created", "response": response("in_progress", [])},
        {"type": "response.output_item.added", "output_index": 0, "item": item("", "in_progress")},
        {"type": "response.content_part.added", **at, "part": part("")},
        {"type": "response.output_text.delta", **at, "delta": "hi", "logprobs": []},
        {"type": "response.output_text.done", **at, "text": "hi", "logprobs": []},
        {"type": "response.content_part.done", **at, "part": part("hi")},
        {"type": "response.output_item.done", "output_index": 0, "item": item("hi", "completed")},
        {"type": "response.completed", "response": response("completed", [done])},
    ]  # fmt: skip
    change(events)
    for number, event in enumerate(events):
        event["sequence_number"] = number
    return [sse(event, event["type"]) for event in events]


def put(position: int, *path: str | int, **fields: Any) -> Callable[[list[dict[str, Any]]], None]:
    """Add ``fields`` to the event at ``position``, at ``path`` inside it."""

    def change(events: list[dict[str, Any]]) -> None:
        holder: Any = events[position]
        for step in path:
            holder = holder[step]
        holder.update(fields)

    return change


def insert(position: int, event: dict[str, Any]) -> Callable[[list[dict[str, Any]]], None]:
    return lambda events: events.insert(position, event)


REASONING = {"type": "reasoning", "id": "rs", "status": "in_progress", "summary": []}
# (route, the stream with SAID somewhere its adapter has not heard of)
STREAMS: dict[str, tuple[str, Script]] = {
    "chat: a chunk's field": ("chat", chunks(search_results=[{"title": "t", "snippet": SAID}])),
    "chat: an error chunk": ("chat", [
        sse({"id": "c", "object": "chat.completion.chunk", "choices": [],
             "error": {"message": SAID, "code": 500}}), DONE]),
    "chat: a choice's field": ("chat", chunks(choice={"note": SAID})),
    "chat: a delta's field": ("chat", chunks({"reasoning_details": [
        {"type": "reasoning.text", "text": SAID, "index": 0}]})),
    "chat: a tool call's field": ("chat", chunks({"tool_calls": [
        {"index": 0, "id": "t", "type": "function",
         "function": {"name": "f", "arguments": "", "description": SAID}}]})),
    "chat: a content part's field": ("chat", chunks({"content": [
        {"type": "thinking", "thinking": [{"type": "text", "text": SAID}]}]})),
    "completions: a choice's field": ("completions", completion_chunks({"note": SAID})),
    "messages: the message's field": ("messages", messages_events(
        put(0, "message", search_results=[{"snippet": SAID}]))),
    "messages: a block's field": ("messages", messages_events(
        put(1, "content_block", note=SAID))),
    "messages: a tool block's field": ("messages", messages_events(put(
        1, content_block={"type": "tool_use", "id": "t", "name": "f", "input": {},
                          "title": SAID}))),
    "messages: a block whose type is a list": ("messages", messages_events(
        put(1, content_block={"type": ["text"], "text": SAID}))),
    "messages: a delta's field": ("messages", messages_events(put(3, "delta", note=SAID))),
    "messages: an event's field": ("messages", messages_events(put(3, note=SAID))),
    "messages: a ping's field": ("messages", messages_events(put(2, note=SAID))),
    "messages: a refusal's explanation": ("messages", messages_events(put(
        5, "delta", stop_details={"type": "refusal", "category": None, "explanation": SAID}))),
    "messages: the last event's field": ("messages", messages_events(put(6, note=SAID))),
    "responses: a delta's field": ("responses", responses_events(put(3, note=SAID))),
    "responses: a done event's field": ("responses", responses_events(put(4, note=SAID))),
    "responses: a part's field": ("responses", responses_events(put(5, "part", source=SAID))),
    "responses: an item's field, added": ("responses", responses_events(
        put(1, "item", note=SAID))),
    "responses: an item's field, done": ("responses", responses_events(
        put(6, "item", note=SAID))),
    "responses: the Response's field, created": ("responses", responses_events(
        put(0, "response", note=SAID))),
    "responses: the Response's field, completed": ("responses", responses_events(
        put(7, "response", output_text=SAID))),
    "responses: a reasoning part's field": ("responses", responses_events(insert(
        1, {"type": "response.reasoning_summary_part.added", "item_id": "rs", "output_index": 1,
            "summary_index": 0, "part": {"type": "summary_text", "text": "", "title": SAID}}))),
    # Heard of, but in a shape the codec does not read, or never read at all:
    # the sweep after each event judges every string the codec left out.
    "chat: delta content as one part": ("chat", chunks(
        {"content": {"type": "text", "text": SAID}})),
    "chat: delta content as a list of strings": ("chat", chunks({"content": [SAID]})),
    "chat: a function's input": ("chat", chunks({"tool_calls": [
        {"index": 0, "id": "t", "type": "function",
         "function": {"name": "f", "arguments": "", "input": SAID}}]})),
    "chat: an object under an identifier's key": ("chat", chunks({"type": {"x": SAID}})),
    "chat: choices as one object": ("chat", [sse({"id": "c", "choices": {
        "index": 0, "delta": {"content": SAID}, "finish_reason": None}}), DONE]),
    "chat: stop_reason on the last chunk": ("chat", [*chunks()[:2], sse(
        {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
         "choices": [{"index": 0, "delta": {}, "finish_reason": "stop",
                      "stop_reason": SAID}]}), DONE]),
    "messages: a redacted thinking block's field": ("messages", messages_events(put(
        1, content_block={"type": "redacted_thinking", "data": "c2Vj", "note": SAID}))),
    "messages: an image block's field": ("messages", messages_events(put(
        1, content_block={"type": "image", "source": {"type": "base64", "data": "AAAA"},
                          "note": SAID}))),
    "messages: a citation typed as text": ("messages", messages_events(put(
        3, delta={"type": "citations_delta",
                  "citation": {"type": "text", "text": "x", "cited_text": SAID}}))),
    "messages: stop_sequence": ("messages", messages_events(
        put(5, "delta", stop_sequence=SAID))),
    "messages: a text delta's text as a list": ("messages", messages_events(put(
        3, delta={"type": "text_delta", "text": [SAID]}))),
    "messages: an error typed as text": ("messages", messages_events(insert(
        3, {"type": "error", "error": {"type": "text", "message": SAID}}))),
    "responses: a delta as a list": ("responses", responses_events(put(3, delta=[SAID]))),
    "responses: a part as a string": ("responses", responses_events(put(5, part=SAID))),
}  # fmt: skip


@pytest.mark.parametrize("case", STREAMS)
async def test_streamed_text_under_a_key_not_heard_of_is_redacted(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    route, script = STREAMS[case]
    path, request = ROUTES[route]
    scripted.script = script
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}{path}", {**request, "stream": True})
    assert EMAIL.encode() not in raw
    assert b"mail [EMAIL]" in raw


@pytest.mark.parametrize("route", ["chat", "completions", "messages", "responses"])
async def test_a_match_split_across_events_under_keys_not_heard_of_ends_the_stream(
    start_proxy: ProxyFactory, scripted: Scripted, route: str
) -> None:
    # Each piece alone is no address: they are judged joined, and the second is
    # never sent (the first was, and cannot be recalled).
    first, second = "mail jane.doe@exa", "mple.com"
    if route == "chat":
        scripted.script = [*chunks({"note": first})[:2], *chunks({"note": second})[1:]]
    elif route == "completions":
        scripted.script = [completion_chunks({"note": first})[0],
                           *completion_chunks({"note": second})]  # fmt: skip
    elif route == "messages":

        def two_notes(events: MessagesEvents) -> None:
            events[3]["delta"]["note"] = first
            delta = {"type": "text_delta", "text": "!", "note": second}
            events.insert(4, {**events[3], "delta": delta})

        scripted.script = messages_events(two_notes)
    else:

        def two_deltas(events: ResponsesEvents) -> None:
            events[3]["note"] = first
            events.insert(4, {**events[3], "delta": "!", "note": second})

        scripted.script = responses_events(two_deltas)
    path, request = ROUTES[route]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}{path}", {**request, "stream": True})
    assert first.encode() in raw
    assert second.encode() not in raw
    events = data_events(raw)
    if route in ("chat", "completions"):
        assert events[-1]["choices"][0]["finish_reason"] == "content_filter"
    elif route == "messages":
        assert [e["type"] for e in events[-2:]] == ["message_delta", "message_stop"]
        assert events[-2]["delta"]["stop_reason"] == "refusal"
    else:
        assert events[-1]["type"] == "response.incomplete"
        assert events[-1]["response"]["incomplete_details"] == {"reason": "content_filter"}


async def test_a_ping_with_nothing_more_goes_out_as_it_came(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    scripted.script = messages_events(lambda events: None)
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    path, request = ROUTES["messages"]
    raw = await streamed(f"{proxy.url}{path}", {**request, "stream": True})
    assert b'event: ping\ndata: {"type":"ping"}\n\n' in raw


@pytest.mark.parametrize(
    "change",
    [put(1, output_index=None), put(6, output_index="0"), put(7, "response", output=[SAID]),
     put(3, content_index="0")],
    ids=["added with no output_index", "done with no output_index", "a string as an item",
         "a delta's content_index a string"],
)  # fmt: skip
async def test_an_output_item_that_cannot_be_placed_is_malformed(
    start_proxy: ProxyFactory,
    scripted: Scripted,
    change: Callable[[ResponsesEvents], None],
) -> None:
    # An item that cannot be placed cannot be judged as its parts: the stream ends there.
    def said(events: ResponsesEvents) -> None:
        change(events)
        events[1]["item"]["content"] = events[6]["item"]["content"] = [
            {"type": "output_text", "text": SAID}
        ]

    scripted.script = responses_events(said)
    path, request = ROUTES["responses"]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}{path}", {**request, "stream": True})
    assert EMAIL.encode() not in raw
    assert data_events(raw)[-1]["error"]["code"] == "upstream_malformed"


def said_then_done(**fields: Any) -> Callable[[ResponsesEvents], None]:
    """The answer says SAID (redacted as it goes out), repeated where it is done;
    ``fields`` added to its output_item.done event."""

    def change(events: ResponsesEvents) -> None:
        events[3]["delta"] = events[4]["text"] = events[5]["part"]["text"] = SAID
        events[6]["item"]["content"] = [{"type": "output_text", "text": SAID}]
        events[6].update(fields)

    return change


@pytest.mark.parametrize(
    "change",
    [said_then_done(note=DENIED), put(0, "response", note=DENIED, more=SAID)],
    ids=["at its item's end", "as it is announced"],
)
async def test_a_blocked_responses_stream_repeats_nothing_it_had_not_released(
    start_proxy: ProxyFactory,
    scripted: Scripted,
    change: Callable[[ResponsesEvents], None],
) -> None:
    # The block is a text of the event itself; its ending is made of what went out.
    scripted.script = responses_events(change)
    path, request = ROUTES["responses"]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}{path}", {**request, "stream": True})
    assert data_events(raw)[-1]["type"] == "response.incomplete"
    assert EMAIL.encode() not in raw
    assert b"open sesame" not in raw


FIRST, SECOND = "mail jane.doe@exa", "mple.com"
# Where the two halves of an address go: strings not heard of are joined with those
# of the same block (by its index) or, for the message's, its events' and those of
# an event not heard of, with one another.
SPLIT_MESSAGES: dict[str, list[Callable[[MessagesEvents], None]]] = {
    "the message's field, then a message_delta's": [
        put(0, "message", note=FIRST), put(5, note=SECOND)],
    "the message's field, then a message_delta's delta's": [
        put(0, "message", note=FIRST), put(5, "delta", note=SECOND)],
    "the message's field, then a message_delta's with an index not a number": [
        put(0, "message", note=FIRST), put(5, note=SECOND, index="0")],
    "the message's field, then an event not heard of": [
        put(0, "message", note=FIRST), insert(5, {"type": "notice", "note": SECOND})],
    "a delta's field, then a delta event's": [
        put(3, "delta", note=FIRST),
        insert(4, {"type": "content_block_delta", "index": 0,
                   "delta": {"type": "text_delta", "text": "!"}, "note": SECOND})],
    "a text block's start, then its delta's": [
        put(1, "content_block", note=FIRST), put(3, "delta", note=SECOND)],
}  # fmt: skip


def changed(*changes: Callable[[MessagesEvents], None]) -> Callable[[MessagesEvents], None]:
    """The events changed by each of ``changes`` in turn."""

    def change(events: MessagesEvents) -> None:
        for one in changes:
            one(events)

    return change


@pytest.mark.parametrize("case", list(SPLIT_MESSAGES))
async def test_a_match_split_across_a_messages_fields_not_heard_of_ends_the_stream(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    scripted.script = messages_events(changed(*SPLIT_MESSAGES[case]))
    path, request = ROUTES["messages"]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}{path}", {**request, "stream": True})
    assert FIRST.encode() in raw
    assert SECOND.encode() not in raw
    events = data_events(raw)
    assert [e["type"] for e in events[-2:]] == ["message_delta", "message_stop"]
    assert events[-2]["delta"]["stop_reason"] == "refusal"


async def test_fields_of_the_message_and_of_a_block_are_not_joined(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """A block's strings run on into its own, not into the message's: two halves, one in
    each, harmless alone, go out as they came."""

    apart = changed(put(0, "message", note=FIRST), put(3, "delta", note=SECOND))
    scripted.script = messages_events(apart)
    path, request = ROUTES["messages"]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}{path}", {**request, "stream": True})
    assert FIRST.encode() in raw
    assert SECOND.encode() in raw
    assert data_events(raw)[-2]["delta"]["stop_reason"] == "end_turn"


def two_choices(route: str, notes: tuple[str, str]) -> Script:
    """One chunk with two choices, each with a note (a chat or completions stream)."""
    if route == "chat":
        choices = [{"index": i, "delta": {"content": "hi"}, "finish_reason": None, "note": note}
                   for i, note in enumerate(notes)]  # fmt: skip
        kind = "chat.completion.chunk"
    else:
        choices = [{"index": i, "text": "hi", "finish_reason": None, "note": note}
                   for i, note in enumerate(notes)]  # fmt: skip
        kind = "text_completion"
    return [sse({"id": "c", "object": kind, "created": 1, "model": "m", "choices": choices}),
            DONE]  # fmt: skip


@pytest.mark.parametrize("route", ["chat", "completions"])
async def test_fields_of_two_choices_are_not_joined(
    start_proxy: ProxyFactory, scripted: Scripted, route: str
) -> None:
    """Each choice is its own text: two halves of an address, one in each choice's
    field not heard of, harmless alone, go out as they came."""
    scripted.script = two_choices(route, ("mail jane.doe@exa", "mple.com"))
    path, request = ROUTES[route]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}{path}", {**request, "stream": True})
    events = data_events(raw)
    assert [c["note"] for c in events[0]["choices"]] == ["mail jane.doe@exa", "mple.com"]
    assert {c["finish_reason"] for e in events for c in e["choices"]} == {None}
