"""A Responses stream of several parts per item, each part's text kept to its own place.

A reasoning item with two summary parts and a reasoning text, then a message
with two output texts: each second part says an address split across its
deltas. What the judge holds back of a part goes out at the part's end as one
more delta, which must name that part's item, output, content or summary
index, and come before the part's ``.done``; the events repeating a part's
text (its ``.done``, its part's and item's end, the Response) carry that
part's text as released, and no other's.
"""

from __future__ import annotations

from typing import Any

from tests.loopback import ProxyFactory
from tests.security.conftest import data_events, streamed
from tests.surfaces.conftest import Scripted
from tests.surfaces.responses_events import EMAIL, Events
from tests.surfaces.test_responses import FILTERS

SPLIT = [f"mail {EMAIL[:6]}", f"{EMAIL[6:]} now"]
SAID = "".join(SPLIT)
REDACTED = "mail [EMAIL] now"
ASK = {"model": "m", "input": "hi", "stream": True}

SUMMARY = "response.reasoning_summary_text"
REASONING = "response.reasoning_text"
TEXT = "response.output_text"


def reasoning_item(texts: list[str], summaries: list[str], status: str) -> dict[str, Any]:
    return {"type": "reasoning", "id": "rs_1", "status": status,
            "summary": [{"type": "summary_text", "text": t} for t in summaries],
            "content": [{"type": "reasoning_text", "text": t} for t in texts]}  # fmt: skip


def message_item(texts: list[str], status: str) -> dict[str, Any]:
    content = [{"type": "output_text", "text": t, "annotations": [], "logprobs": []}
               for t in texts]  # fmt: skip
    return {"type": "message", "id": "msg_1", "role": "assistant", "status": status,
            "content": content}  # fmt: skip


def streamed_part(
    events: Events, kind: str, where: dict[str, Any], part: dict[str, Any], pieces: list[str]
) -> None:
    """One part: announced empty, its deltas, its ``.done``, its part's end."""
    index_key = "summary_index" if "summary_index" in where else "content_index"
    part_event = "response.reasoning_summary_part" if index_key == "summary_index" else (
        "response.content_part")  # fmt: skip
    text = "".join(pieces)
    events.add(f"{part_event}.added", **where, part={**part, "text": ""})
    for piece in pieces:
        events.add(f"{kind}.delta", **where, delta=piece)
    events.add(f"{kind}.done", **where, text=text)
    events.add(f"{part_event}.done", **where, part={**part, "text": text})


def several_parts() -> Events:
    events = Events()
    events.start()
    events.add("response.output_item.added", output_index=0,
               item=reasoning_item([], [], "in_progress"))  # fmt: skip
    at = {"item_id": "rs_1", "output_index": 0}
    summary = {"type": "summary_text"}
    streamed_part(events, SUMMARY, {**at, "summary_index": 0}, summary, ["First ", "thought."])
    streamed_part(events, SUMMARY, {**at, "summary_index": 1}, summary, SPLIT)
    streamed_part(events, REASONING, {**at, "content_index": 0}, {"type": "reasoning_text"},
                  SPLIT)  # fmt: skip
    done_reasoning = reasoning_item([SAID], ["First thought.", SAID], "completed")
    events.add("response.output_item.done", output_index=0, item=done_reasoning)
    events.add("response.output_item.added", output_index=1,
               item=message_item([], "in_progress"))  # fmt: skip
    at = {"item_id": "msg_1", "output_index": 1}
    text = {"type": "output_text", "annotations": [], "logprobs": []}
    streamed_part(events, TEXT, {**at, "content_index": 0}, text, ["Hello ", "there."])
    streamed_part(events, TEXT, {**at, "content_index": 1}, text, SPLIT)
    done_message = message_item(["Hello there.", SAID], "completed")
    events.add("response.output_item.done", output_index=1, item=done_message)
    events.end("response.completed", [done_reasoning, done_message])
    return events


def place(event: dict[str, Any]) -> tuple[Any, ...]:
    index = event.get("summary_index", event.get("content_index"))
    return (event["type"].rsplit(".", 1)[0], event.get("item_id"), event["output_index"], index)


async def test_each_part_s_text_goes_out_in_its_own_place(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    scripted.script = several_parts().script()
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    received = data_events(await streamed(f"{proxy.url}/v1/responses", ASK))
    assert EMAIL not in str(received)
    deltas: dict[tuple[Any, ...], str] = {}
    dones: dict[tuple[Any, ...], str] = {}
    for event in received:
        if event["type"].endswith(".delta"):
            assert place(event) not in dones, "a delta after its part's end"
            assert event["delta"], "a delta whose text is all held back goes out at all"
            deltas[place(event)] = deltas.get(place(event), "") + event["delta"]
        elif event["type"].endswith("_text.done"):
            dones[place(event)] = event["text"]
    expected = {
        (SUMMARY, "rs_1", 0, 0): "First thought.",
        (SUMMARY, "rs_1", 0, 1): REDACTED,
        (REASONING, "rs_1", 0, 0): REDACTED,
        (TEXT, "msg_1", 1, 0): "Hello there.",
        (TEXT, "msg_1", 1, 1): REDACTED,
    }
    assert deltas == expected
    assert dones == expected
    parts = [e["part"]["text"] for e in received if e["type"].endswith("part.done")]
    assert parts == ["First thought.", REDACTED, REDACTED, "Hello there.", REDACTED]
    items = [e["item"] for e in received if e["type"] == "response.output_item.done"]
    final = received[-1]
    assert final["type"] == "response.completed"
    assert final["response"]["output"] == items
    reasoning, message = items
    assert [s["text"] for s in reasoning["summary"]] == ["First thought.", REDACTED]
    assert [c["text"] for c in reasoning["content"]] == [REDACTED]
    assert [c["text"] for c in message["content"]] == ["Hello there.", REDACTED]
    numbers = [event["sequence_number"] for event in received]
    assert numbers == list(range(len(received)))
