"""Each text of a Responses stream is judged once, by the reading that knows its place.

The sweep after the reading judges whole every string the reading left out, on
a channel of its own; so a place the reading misses is still judged, but twice
where the reading judged its text elsewhere, alone where it should be joined
with the rest of its part, and never for a key. A Recording filter sees every
text the judge asks about, which tells those apart.
"""

from __future__ import annotations

from typing import Any

from tests.judge.sample_filters import Recording
from tests.loopback import ProxyFactory
from tests.security.conftest import data_events, streamed
from tests.surfaces.conftest import Scripted
from tests.surfaces.responses_events import Events, response

RECORDING = {"filters": [{"name": "rec", "type": "tests.judge.sample_filters:Recording"}]}
ASK = {"model": "m", "input": "hi", "stream": True}


def call_item(name: str, arguments: str, status: str) -> dict[str, Any]:
    return {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": name,
            "arguments": arguments, "status": status}  # fmt: skip


def many_places() -> Events:
    events = Events()
    created = response("in_progress")
    created["output_messages"] = [{"role": "assistant", "written key": "written value"}]
    created["vendor note"] = "announced note"
    # An item the Response is announced with (a server resuming a stream): judged as it stands.
    created["output"] = [{"type": "message", "id": "msg_0", "role": "assistant",
                          "status": "in_progress", "content": [
                              {"type": "output_text", "text": "resumed text",
                               "annotations": [{"type": "url_citation", "title": "resumed title",
                                                "url": "u", "start_index": 0,
                                                "end_index": 1}]}]}]  # fmt: skip
    events.add("response.created", response=created)
    at = {"item_id": "fc_1", "output_index": 0}
    events.add("response.output_item.added", output_index=0,
               item=call_item("call name", "", "in_progress"))  # fmt: skip
    events.add("response.function_call_arguments.delta", **at, delta='{"to": "a')
    events.add("response.function_call_arguments.delta", **at, delta='rg text"}')
    events.add("response.function_call_arguments.done", **at, name="call name",
               arguments='{"to": "arg text"}')  # fmt: skip
    done_call = call_item("call name", '{"to": "arg text"}', "completed")
    events.add("response.output_item.done", output_index=0, item=done_call)
    # A reasoning item: a reasoning text part and a summary part, each with a key not heard of.
    at = {"item_id": "rs_1", "output_index": 1}
    events.add(
        "response.output_item.added",
        output_index=1,
        item={"type": "reasoning", "id": "rs_1", "status": "in_progress", "summary": []},
    )
    events.add(
        "response.content_part.added",
        **at,
        content_index=0,
        part={"type": "reasoning_text", "text": "think ", "mood": "reasoning mood"},
    )
    events.add(
        "response.reasoning_text.delta",
        **at,
        content_index=0,
        delta="hard",
        aside="reasoning aside",
    )
    events.add("response.reasoning_text.done", **at, content_index=0, text="think hard")
    events.add(
        "response.content_part.done",
        **at,
        content_index=0,
        part={"type": "reasoning_text", "text": "think hard", "mood": "reasoning mood"},
    )
    events.add(
        "response.reasoning_summary_part.added",
        **at,
        summary_index=0,
        part={"type": "summary_text", "text": ""},
    )
    events.add("response.reasoning_summary_text.delta", **at, summary_index=0, delta="in short")
    events.add("response.reasoning_summary_text.done", **at, summary_index=0, text="in short")
    events.add(
        "response.reasoning_summary_part.done",
        **at,
        summary_index=0,
        part={"type": "summary_text", "text": "in short"},
    )
    done_reasoning = {
        "type": "reasoning",
        "id": "rs_1",
        "status": "completed",
        "summary": [{"type": "summary_text", "text": "in short"}],
        "content": [{"type": "reasoning_text", "text": "think hard"}],
    }
    events.add("response.output_item.done", output_index=1, item=done_reasoning)
    # A message: an output text with an annotation and a key not heard of, then a refusal.
    at = {"item_id": "msg_1", "output_index": 2}
    events.add(
        "response.output_item.added",
        output_index=2,
        item={
            "type": "message",
            "id": "msg_1",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        },
    )
    note = {
        "type": "url_citation",
        "url": "https://example.com/",
        "title": "cited title",
        "start_index": 0,
        "end_index": 1,
    }
    events.add(
        "response.content_part.added",
        **at,
        content_index=0,
        part={"type": "output_text", "text": "", "annotations": [note], "flavour": "part flavour"},
    )
    events.add(
        "response.output_text.delta", **at, content_index=0, delta="Hello ", remark="delta remark"
    )
    events.add("response.output_text.delta", **at, content_index=0, delta="world")
    events.add("response.output_text.done", **at, content_index=0, text="Hello world")
    events.add(
        "response.content_part.done",
        **at,
        content_index=0,
        part={"type": "output_text", "text": "Hello world", "annotations": [note]},
    )
    events.add(
        "response.content_part.added",
        **at,
        content_index=1,
        part={"type": "refusal", "refusal": "I will "},
    )
    events.add("response.refusal.delta", **at, content_index=1, delta="not")
    events.add("response.refusal.done", **at, content_index=1, refusal="I will not")
    events.add(
        "response.content_part.done",
        **at,
        content_index=1,
        part={"type": "refusal", "refusal": "I will not"},
    )
    done_message = {
        "type": "message",
        "id": "msg_1",
        "role": "assistant",
        "status": "completed",
        "content": [
            {"type": "output_text", "text": "Hello world", "annotations": [note]},
            {"type": "refusal", "refusal": "I will not"},
        ],
    }
    events.add("response.output_item.done", output_index=2, item=done_message)
    # Events not heard of, each of its own item: not joined with each other's texts.
    events.add("response.vendor.note", item_id="fc_1", note="first note")
    events.add("response.vendor.note", item_id="msg_1", note="second note")
    events.end("response.completed", [done_call, done_reasoning, done_message])
    return events


# What the filters are asked about, in order: (whether more of its text is to come, the text).
JUDGED = [
    # vLLM's output_messages, values before keys; then the Response's key not heard of.
    (False, "assistant"),
    (False, "written value"),
    (False, "role"),
    (False, "written key"),
    (False, "announced note"),
    (False, "resumed text"),
    (False, "resumed title"),
    (False, "u"),
    # The call's name, whole where it is announced, and not again where it is repeated.
    (False, "call name"),
    (True, '{"to": "a'),
    (True, '{"to": "arg text"}'),
    # A reasoning text's key not heard of, as each part event gives it; the text as it grows.
    (True, "think "),
    (False, "reasoning mood"),
    (True, "think hard"),
    (False, "reasoning aside"),
    (False, "reasoning aside"),
    (False, "reasoning mood"),
    (True, "in short"),
    # An annotation where it is given and repeated; the part's key not heard of, the delta's.
    (False, "https://example.com/"),
    (False, "cited title"),
    (False, "part flavour"),
    (True, "Hello "),
    (False, "delta remark"),
    (False, "delta remark"),
    (True, "Hello world"),
    (False, "https://example.com/"),
    (False, "cited title"),
    (True, "I will "),
    (True, "I will not"),
    (False, "https://example.com/"),
    (False, "cited title"),
    # Each event not heard of: alone, then joined with its own item's texts only.
    (False, "first note"),
    (False, "first note"),
    (False, "second note"),
    (False, "second note"),
    (False, "https://example.com/"),
    (False, "cited title"),
]


async def test_each_text_of_a_stream_is_judged_in_order_by_its_reading(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    Recording.seen.clear()
    scripted.script = many_places().script()
    proxy = await start_proxy(RECORDING, upstream=scripted.url)
    received = data_events(await streamed(f"{proxy.url}/v1/responses", ASK))
    judged = [(ctx.partial, ctx.text) for ctx in Recording.seen if ctx.stage == "stream"]
    Recording.seen.clear()
    assert judged == JUDGED
    assert received[-1]["type"] == "response.completed"


async def judged_texts(start_proxy: ProxyFactory, scripted: Scripted, events: Events) -> Any:
    """What the stream filters are asked about, in order, and the events received."""
    Recording.seen.clear()
    scripted.script = events.script()
    proxy = await start_proxy(RECORDING, upstream=scripted.url)
    received = data_events(await streamed(f"{proxy.url}/v1/responses", ASK))
    judged = [(ctx.partial, ctx.text) for ctx in Recording.seen if ctx.stage == "stream"]
    Recording.seen.clear()
    return judged, received


async def test_two_calls_names_and_a_part_not_heard_of_are_each_judged_once_alone(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """Each call's name is its own text (not run on into the other's); a content part
    with no text or refusal (an audio part) is read whole, each of its strings once
    (an annotation's too), but its audio."""
    events = Events()
    for n, name in enumerate(["first name", "second name"]):
        events.add("response.output_item.added", output_index=n,
                   item={**call_item(name, "", "in_progress"), "id": f"fc_{n}"})  # fmt: skip
    events.add("response.output_item.added", output_index=2, item={
        "type": "message", "id": "msg_1", "role": "assistant", "status": "in_progress",
        "content": []})  # fmt: skip
    events.add("response.content_part.added", item_id="msg_1", output_index=2, content_index=0,
               part={"type": "output_audio", "transcript": "audio transcript", "data": "QUJD",
                     "annotations": [{"type": "url_citation", "title": "audio title"}]},
               )  # fmt: skip
    judged, received = await judged_texts(start_proxy, scripted, events)
    assert judged == [
        (False, "first name"),
        (False, "second name"),
        (False, "audio transcript"),
        (False, "audio title"),
    ]
    assert len(received) == 4
