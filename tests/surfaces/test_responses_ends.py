"""Where a Responses part's held text goes out: before whatever ends the part.

A part ends at its ``.done``, at its item's ``output_item.done`` or at the
terminal event, whether or not that event repeats its text; what the judge
held back of it goes out as one more delta just before. A text first given
where it is repeated (no delta ever carried it) is judged there and goes out
only in those places: no delta event is made up for it.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.surfaces.responses_events import response
from tests.surfaces.test_responses_announced import HELD, judged

REDACTED = "see [EMAIL]"
AT = {"item_id": "msg_1", "output_index": 0, "content_index": 0}


def message_of(*texts: str, status: str = "completed") -> dict[str, Any]:
    content = [{"type": "output_text", "text": t, "annotations": []} for t in texts]
    return {"type": "message", "id": "msg_1", "role": "assistant", "status": status,
            "content": content}  # fmt: skip


def added() -> dict[str, Any]:
    return {"type": "response.output_item.added", "output_index": 0,
            "item": message_of(status="in_progress")}  # fmt: skip


def held_delta() -> dict[str, Any]:
    return {"type": "response.output_text.delta", **AT, "delta": HELD}


def completed(output: Any) -> dict[str, Any]:
    return {"type": "response.completed", "response": {**response("completed"), "output": output}}


def numbered(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for n, event in enumerate(events):
        event["sequence_number"] = n
    return events


# Events whose last ends the part without repeating its text.
UNREPEATED: dict[str, list[dict[str, Any]]] = {
    "its item's end, listing no content": [
        added(), held_delta(),
        {"type": "response.output_item.done", "output_index": 0, "item": message_of()},
    ],
    "the terminal event, listing no output": [added(), held_delta(), completed([])],
    "the terminal event, its output null": [added(), held_delta(), completed(None)],
}  # fmt: skip


@pytest.mark.parametrize("case", UNREPEATED)
async def test_a_held_tail_goes_out_before_the_event_ending_its_part(case: str) -> None:
    events = numbered(UNREPEATED[case])
    got = await judged(events)
    assert "jane" not in orjson.dumps(got).decode()
    said = "".join(e["delta"] for e in got if e["type"] == "response.output_text.delta")
    assert said == REDACTED
    assert got[-2]["type"] == "response.output_text.delta"
    assert got[-1]["type"] == events[-1]["type"]
    assert [e["sequence_number"] for e in got] == list(range(len(got)))


# Events whose last is the first to give the part's text.
FIRST_REPEATED: dict[str, list[dict[str, Any]]] = {
    "its item's end": [
        added(), {"type": "response.output_item.done", "output_index": 0,
                  "item": message_of(HELD)}],
    "the terminal event": [added(), completed([message_of(HELD)])],
    "its text's end, then each event that repeats it": [
        added(),
        {"type": "response.output_text.done", **AT, "text": HELD},
        {"type": "response.content_part.done", **AT,
         "part": {"type": "output_text", "text": HELD, "annotations": []}},
        {"type": "response.output_item.done", "output_index": 0, "item": message_of(HELD)},
        completed([message_of(HELD)])],
    "its part's end, then each event that repeats it": [
        added(),
        {"type": "response.content_part.done", **AT,
         "part": {"type": "output_text", "text": HELD, "annotations": []}},
        {"type": "response.output_item.done", "output_index": 0, "item": message_of(HELD)},
        completed([message_of(HELD)])],
}  # fmt: skip


def text_given(event: dict[str, Any]) -> Any:
    """The part's text where ``event`` repeats it."""
    if "text" in event:
        return event["text"]
    if "part" in event:
        return event["part"]["text"]
    item = event["item"] if "item" in event else event["response"]["output"][0]
    return item["content"][0]["text"]


@pytest.mark.parametrize("case", FIRST_REPEATED)
async def test_a_text_first_given_where_it_is_repeated_goes_out_only_there(case: str) -> None:
    got = await judged(numbered(FIRST_REPEATED[case]))
    assert "jane" not in orjson.dumps(got).decode()
    assert [e["type"] for e in got] == [e["type"] for e in FIRST_REPEATED[case]]
    assert [text_given(e) for e in got[1:]] == [REDACTED] * (len(got) - 1)  # judged once


def reasoning_events(part_done: dict[str, Any], delta_type: str, index_key: str) -> list[Any]:
    at = {"item_id": "rs_1", "output_index": 0, index_key: 0}
    added = {"type": "reasoning", "id": "rs_1", "status": "in_progress", "summary": []}
    done = {**added, "status": "completed"}
    return numbered([
        {"type": "response.output_item.added", "output_index": 0, "item": added},
        {"type": delta_type, **at, "delta": HELD},
        {**part_done, **at},
        {"type": "response.output_item.done", "output_index": 0, "item": done},
    ])  # fmt: skip


# A reasoning item's part, ended by its part's own end event (no text .done before it).
REASONING_ENDS: dict[str, list[Any]] = {
    "a reasoning text": reasoning_events(
        {"type": "response.content_part.done",
         "part": {"type": "reasoning_text", "text": HELD}},
        "response.reasoning_text.delta", "content_index"),
    "a summary": reasoning_events(
        {"type": "response.reasoning_summary_part.done",
         "part": {"type": "summary_text", "text": HELD}},
        "response.reasoning_summary_text.delta", "summary_index"),
}  # fmt: skip


@pytest.mark.parametrize("case", REASONING_ENDS)
async def test_a_reasoning_part_s_held_tail_goes_out_before_its_part_s_end(case: str) -> None:
    events = REASONING_ENDS[case]
    got = await judged(events)
    assert "jane" not in orjson.dumps(got).decode()
    kinds = [e["type"] for e in got]
    assert kinds == [kinds[0], events[1]["type"], events[1]["type"], *kinds[3:]]
    assert kinds[3:] == [events[2]["type"], events[3]["type"]]
    assert got[1]["delta"] + got[2]["delta"] == REDACTED
    assert got[3]["part"]["text"] == REDACTED
