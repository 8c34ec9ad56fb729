"""Text a Responses stream gives outside its text deltas, judged before it goes out.

An item of a type not heard of, announced by ``output_item.added`` with its
strings in it; a Response announced (``response.created``,
``response.in_progress``) with output already in it; an event not heard of
(an annotation, a later version's event); an audio answer's transcript,
streamed in ``response.audio.transcript.delta``. Each went out before: the
item and the Response were judged only where they were repeated, after the
client had them, and the others never.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.loopback import ProxyFactory, post_json
from tests.security.conftest import EMAIL, FILTERS, data_events, streamed
from tests.surfaces.conftest import Scripted, sse

RESPONSE = {"id": "resp_1", "object": "response", "created_at": 1, "model": "m",
            "status": "completed", "usage": None}  # fmt: skip
ASK = {"model": "m", "input": "hi", "stream": True}
MESSAGE = {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
           "content": [{"type": "output_text", "text": "Done.", "annotations": []}]}  # fmt: skip


def stream_of(events: list[dict[str, Any]]) -> list[bytes | float]:
    """``events`` between a Response's creation and its completion (with ``MESSAGE``)."""
    created = {"type": "response.created",
               "response": {**RESPONSE, "status": "in_progress", "output": []}}  # fmt: skip
    completed = {"type": "response.completed", "response": {**RESPONSE, "output": [MESSAGE]}}
    every = [created, *events, completed]
    return [sse({**e, "sequence_number": n}, e["type"]) for n, e in enumerate(every)]


async def relayed(
    start_proxy: ProxyFactory, scripted: Scripted, script: list[bytes | float]
) -> bytes:
    scripted.script = script
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}/v1/responses", ASK)
    assert data_events(raw)[-1]["type"] == "response.completed"
    scripted.script = None  # the next request is answered with scripted.answer
    return raw


async def answered(start_proxy: ProxyFactory, scripted: Scripted, output: list[Any]) -> bytes:
    """The client's answer to a Response with ``output``, not streamed."""
    scripted.answer = {**RESPONSE, "output": output}
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, answer = await post_json(f"{proxy.url}/v1/responses", {"model": "m", "input": "x"})
    assert status == 200
    return answer


def part_stream(part: dict[str, Any], *, announced: bool) -> list[dict[str, Any]]:
    """A message of one content part, its part's events between the item's two:
    ``content_part.added`` (when ``announced``) and ``content_part.done``."""
    where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    added = [{"type": "response.content_part.added", **where, "part": part}] if announced else []
    return [
        {"type": "response.output_item.added", "output_index": 0,
         "item": {**MESSAGE, "status": "in_progress", "content": []}},
        *added,
        {"type": "response.content_part.done", **where, "part": part},
        {"type": "response.output_item.done", "output_index": 0,
         "item": {**MESSAGE, "content": [part]}},
    ]  # fmt: skip


async def test_an_announced_item_of_a_type_not_heard_of_is_judged_as_announced(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    item = {"type": "x_lookup_call", "id": "x_1", "status": "in_progress", "note": f"for {EMAIL}"}
    raw = await relayed(start_proxy, scripted, stream_of([
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        {"type": "response.output_item.done", "output_index": 0,
         "item": {**item, "status": "completed"}},
    ]))  # fmt: skip
    assert EMAIL.encode() not in raw
    added = next(e for e in data_events(raw) if e["type"] == "response.output_item.added")
    assert added["item"]["note"] == "for [EMAIL]"
    assert added["item"]["id"] == "x_1"  # identifiers are not text


async def test_a_response_announced_with_output_in_it_is_judged(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    announced = {**MESSAGE, "content": [{"type": "output_text", "text": f"mail {EMAIL}"}]}
    response = {**RESPONSE, "status": "in_progress", "output": [announced]}
    in_progress = {"type": "response.in_progress", "response": response}
    raw = await relayed(start_proxy, scripted, stream_of([in_progress]))
    assert EMAIL.encode() not in raw
    assert b"mail [EMAIL]" in raw


async def test_an_event_not_heard_of_is_read_whole(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    annotation = {"type": "response.output_text.annotation.added", "item_id": "msg_1",
                  "output_index": 0, "content_index": 0, "annotation_index": 0,
                  "annotation": {"type": "url_citation", "title": f"Staff: {EMAIL}",
                                 "url": "https://example.com/staff", "start_index": 0,
                                 "end_index": 4}}  # fmt: skip
    raw = await relayed(start_proxy, scripted, stream_of([annotation]))
    assert EMAIL.encode() not in raw
    added = next(e for e in data_events(raw) if e["type"] == annotation["type"])
    assert added["annotation"]["title"] == "Staff: [EMAIL]"
    assert added["item_id"] == "msg_1"


async def test_a_streamed_audio_transcript_is_judged_across_its_deltas(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    text = f"Write to {EMAIL} today."
    deltas = [{"type": "response.audio.transcript.delta", "delta": text[i : i + 4]}
              for i in range(0, len(text), 4)]  # fmt: skip
    audio = {"type": "response.audio.delta", "delta": "UklGRg=="}  # base64, not text
    # An item's end before the transcript's: the transcript is no item's, it goes on.
    item_done = {"type": "response.output_item.done", "output_index": 0, "item": MESSAGE}
    raw = await relayed(start_proxy, scripted, stream_of([
        audio, *deltas[:2], item_done, *deltas[2:],
        {"type": "response.audio.transcript.done"}]))  # fmt: skip
    assert EMAIL.encode() not in raw
    events = data_events(raw)
    heard = [e for e in events if e["type"] == "response.audio.transcript.delta"]
    assert "".join(e["delta"] for e in heard) == "Write to [EMAIL] today."
    # Its held tail goes out before its done event, as no item's.
    kinds = [e["type"] for e in events]
    assert kinds.index("response.audio.transcript.done") > events.index(heard[-1])
    assert all("output_index" not in e for e in heard)
    assert next(e for e in events if e["type"] == "response.audio.delta")["delta"] == "UklGRg=="


BOTH = {"type": "output_text", "text": "See below.", "refusal": f"No: {EMAIL}", "annotations": []}


async def test_a_part_with_both_a_text_and_a_refusal_has_both_judged(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """One text per part was read (the output_text's); the refusal beside it went out."""
    item = {**MESSAGE, "content": [BOTH]}
    raw = await relayed(start_proxy, scripted, stream_of(part_stream(BOTH, announced=False)))
    assert EMAIL.encode() not in raw
    assert b"No: [EMAIL]" in raw
    answer = await answered(start_proxy, scripted, [item])
    assert EMAIL.encode() not in answer
    assert b"See below." in answer


CITED = {"type": "url_citation", "title": f"Staff: {EMAIL}", "url": "https://example.com/staff",
         "start_index": 0, "end_index": 4}  # fmt: skip


async def test_an_annotation_is_judged_wherever_the_stream_repeats_it(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """A cited page's title is given whole, in its event and again in every repetition
    of its part: the repetitions went out as the model server wrote them."""
    part = {"type": "output_text", "text": "Done.", "annotations": [CITED]}
    item = {**MESSAGE, "content": [part]}
    where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    completed: dict[str, Any] = {"type": "response.completed",
                                 "response": {**RESPONSE, "output": [item]}}  # fmt: skip
    script = stream_of([
        {"type": "response.output_item.added", "output_index": 0,
         "item": {**MESSAGE, "status": "in_progress", "content": []}},
        {"type": "response.output_text.annotation.added", **where, "annotation_index": 0,
         "annotation": CITED},
        {"type": "response.content_part.done", **where, "part": part},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
    ])  # fmt: skip
    script[-1] = sse({**completed, "sequence_number": len(script) - 1}, completed["type"])
    raw = await relayed(start_proxy, scripted, script)
    assert EMAIL.encode() not in raw
    assert raw.count(b"Staff: [EMAIL]") == 4
    answer = await answered(start_proxy, scripted, [item])
    assert EMAIL.encode() not in answer
    assert b"Staff: [EMAIL]" in answer


# (events not heard of, one place's, each whole, and what the client may never get)
ACROSS: dict[str, tuple[list[dict[str, Any]], bytes]] = {
    "a shell command's deltas": ([
        {"type": "response.shell_call_command.delta", "item_id": "sh_1", "output_index": 0,
         "command_index": 0, "delta": piece} for piece in ("echo open ", "sesame")],
        b"sesame"),
    "a shell's output, its deltas objects": ([
        {"type": "response.shell_call_output_content.delta", "item_id": "sh_1",
         "output_index": 0, "delta": {"stdout": piece}}
        for piece in ("to jane.doe@exa", "mple.com; ok")], b"mple.com"),
    "a command announced, then its delta": ([
        {"type": "response.shell_call_command.added", "item_id": "sh_1", "output_index": 0,
         "command_index": 0, "command": "mail jane.doe@exa"},
        {"type": "response.shell_call_command.delta", "item_id": "sh_1", "output_index": 0,
         "command_index": 0, "delta": "mple.com now"}], b"mple.com"),
}  # fmt: skip


@pytest.mark.parametrize("case", ACROSS)
async def test_a_match_across_events_not_heard_of_ends_the_stream(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    """Each judged alone, a phrase split across them went out. Their texts are judged
    joined too; what was sent before cannot be recalled, so the match ends the stream."""
    events, never = ACROSS[case]
    scripted.script = stream_of(events)
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}/v1/responses", ASK)
    assert never not in raw
    assert data_events(raw)[-1]["type"] == "response.incomplete"


async def test_events_not_heard_of_of_other_places_are_not_joined(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    where = {"type": "response.shell_call_command.delta", "item_id": "sh_1", "output_index": 0}
    raw = await relayed(start_proxy, scripted, stream_of([
        {**where, "command_index": 0, "delta": "echo open "},
        {**where, "command_index": 1, "delta": "sesame"}]))  # fmt: skip
    assert b"echo open " in raw
    assert b"sesame" in raw


AUDIO_PART = {"type": "output_audio", "data": "UklGRg==", "transcript": f"call {EMAIL}"}


async def test_a_content_part_of_a_type_not_heard_of_is_read_whole(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    item = {**MESSAGE, "content": [AUDIO_PART]}
    raw = await relayed(start_proxy, scripted, stream_of(part_stream(AUDIO_PART, announced=True)))
    assert EMAIL.encode() not in raw
    assert b"UklGRg==" in raw  # the audio is not text
    answer = await answered(start_proxy, scripted, [item])
    part = orjson.loads(answer)["output"][0]["content"][0]
    assert part == {**AUDIO_PART, "transcript": "call [EMAIL]"}


async def test_a_program_outputs_result_is_text(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """``result`` was skipped in every item, as an image's base64 is."""
    item = {"type": "program_output", "id": "po_1", "call_id": "c", "status": "completed",
            "result": f"found {EMAIL}"}  # fmt: skip
    image = {"type": "image_generation_call", "id": "ig_1", "status": "completed",
             "result": "aW1hZ2U="}  # fmt: skip
    answer = await answered(start_proxy, scripted, [item, image])
    output = orjson.loads(answer)["output"]
    assert output[0]["result"] == "found [EMAIL]"
    assert output[1]["result"] == "aW1hZ2U="


async def test_a_blocked_streams_end_does_not_repeat_the_output_messages_announced(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """A blocked stream ends with the Response as last announced: with vLLM's
    output_messages in it, as the model wrote them."""
    said = {"type": "text", "text": f"open sesame {EMAIL}"}
    written = [{"author": {"role": "assistant"}, "content": [said]}]
    created = {"type": "response.created", "sequence_number": 0, "response": {
        **RESPONSE, "status": "in_progress", "output": [], "output_messages": written}}  # fmt: skip
    scripted.script = [sse(created, "response.created")]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}/v1/responses", ASK)
    assert b"sesame" not in raw
    assert EMAIL.encode() not in raw
    assert data_events(raw)[-1]["type"] == "response.incomplete"


async def test_a_string_nested_in_a_part_not_heard_of_is_read_whatever_its_key(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """The audio ``data`` of a part is not text; a ``data`` deeper in it may be."""
    part = {**AUDIO_PART, "transcript": "hello", "segments": [{"data": f"said {EMAIL}"}]}
    answer = await answered(start_proxy, scripted, [{**MESSAGE, "content": [part]}])
    got = orjson.loads(answer)["output"][0]["content"][0]
    assert got["segments"] == [{"data": "said [EMAIL]"}]
    assert got["data"] == "UklGRg=="
