"""The events a client of a judged Messages stream receives, one by one, as raw SSE.

The official client folds events into a message and forgives much (an empty
delta, a block closed twice); a reader that goes by the events sees all of
them. These tests pin what goes out: held-back text released in a delta just
before its block's stop and no empty deltas, text a block's start carries
judged with the deltas that follow it, a tool's input given whole in its start
sent on as a delta, and the refusal that ends a blocked stream closing exactly
the blocks the client saw open.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.loopback import ProxyFactory
from tests.security.conftest import streamed
from tests.surfaces.conftest import Script, Scripted, sse
from tests.surfaces.messages_shapes import (
    EMAIL,
    FILTERS,
    PHRASE,
    block_start,
    block_stop,
    delta,
    end,
    event,
    message,
    start,
    text,
)

REQUEST: dict[str, Any] = {
    "model": "m",
    "max_tokens": 16,
    "stream": True,
    "messages": [{"role": "user", "content": "hi"}],
}
TOOL: dict[str, Any] = {"type": "tool_use", "id": "toolu_1", "name": "send", "input": {}}
OPENING: dict[str, Any] = {**message(), "content": [], "stop_reason": None}
REFUSAL_DETAILS = {
    "type": "refusal",
    "category": None,
    "explanation": "withheld by a content filter of taxmeter",
}


def opening(**fields: Any) -> bytes:
    """A message_start whose message is OPENING with ``fields`` changed."""
    return event({"type": "message_start", "message": {**OPENING, **fields}})


def received(raw: bytes) -> list[tuple[str, Any]]:
    """Each event of a stream as (its ``event:`` name, its data parsed)."""
    out: list[tuple[str, Any]] = []
    for block in raw.decode().split("\n\n"):
        lines = block.split("\n")
        name = next((line[7:] for line in lines if line.startswith("event: ")), "")
        data = next((line[6:] for line in lines if line.startswith("data: ")), None)
        if data is not None:
            out.append((name, orjson.loads(data)))
    return out


def brief(named: tuple[str, Any]) -> tuple[Any, ...]:
    """An event as the tables below spell it (a malformed one by its name and data)."""
    name, data = named
    kind = data.get("type") if isinstance(data, dict) else None
    if kind != name:
        return (name, data)
    if kind == "message_start":
        return ("message_start", data["message"].get("content"))
    if kind == "content_block_start":
        return ("start", data["index"], data["content_block"])
    if kind == "content_block_delta":
        return ("delta", data["index"], data["delta"])
    if kind == "content_block_stop":
        return ("stop", data["index"])
    if kind == "message_delta":
        return ("message_delta", data["delta"]["stop_reason"], data["usage"])
    return (kind,)


def text_delta(value: str) -> dict[str, str]:
    return {"type": "text_delta", "text": value}


def input_delta(value: str) -> dict[str, str]:
    return {"type": "input_json_delta", "partial_json": value}


def ending(reason: str = "end_turn") -> list[tuple[Any, ...]]:
    return [("message_delta", reason, {"output_tokens": 7}), ("message_stop",)]


THINKING = {"type": "thinking", "thinking": "", "signature": ""}
# (the upstream's stream, the events the client receives, briefly)
STREAMS: dict[str, tuple[Script, list[tuple[Any, ...]]]] = {
    "held text goes out just before its block's stop, no empty delta": (
        [start(), block_start(0, text("")), event({"type": "ping"}),
         delta(0, "text_delta", "write to jane.d"), delta(0, "text_delta", "oe@example.com"),
         block_stop(0), *end()],
        [("message_start", []), ("start", 0, text("")), ("ping",),
         ("delta", 0, text_delta("write to [EMAIL]")), ("stop", 0), *ending()],
    ),
    "a block start's text is joined with the delta after it": (
        [start(), block_start(0, text("mail jane.doe@exa")),
         delta(0, "text_delta", "mple.com now"), block_stop(0), *end()],
        [("message_start", []), ("start", 0, text("")),
         ("delta", 0, text_delta("mail [EMAIL] now")), ("stop", 0), *ending()],
    ),
    "a thinking block start's text is joined with the delta after it": (
        [start(), block_start(0, {**THINKING, "thinking": "mail jane.doe@exa"}),
         delta(0, "thinking_delta", "mple.com now"), block_stop(0), *end()],
        [("message_start", []), ("start", 0, THINKING),
         ("delta", 0, {"type": "thinking_delta", "thinking": "mail [EMAIL] now"}),
         ("stop", 0), *ending()],
    ),
    "a block in the message_start is block 0": (
        [opening(content=[text("hello")]), block_stop(0), *end()],
        [("message_start", [text("")]), ("delta", 0, text_delta("hello")), ("stop", 0),
         *ending()],
    ),
    "a message_start with no content": (
        [event({"type": "message_start",
                "message": {k: v for k, v in OPENING.items() if k != "content"}}),
         block_start(0, text("")), delta(0, "text_delta", "hi"), block_stop(0), *end()],
        [("message_start", None), ("start", 0, text("")), ("delta", 0, text_delta("hi")),
         ("stop", 0), *ending()],
    ),
    "a tool's input given whole in its start goes on as a delta": (
        [start(), block_start(0, {**TOOL, "input": {"to": EMAIL}}), block_stop(0),
         *end("tool_use")],
        [("message_start", []), ("start", 0, TOOL),
         ("delta", 0, input_delta('{"to":"[EMAIL]"}')), ("stop", 0), *ending("tool_use")],
    ),
    "a tool's input given whole as a string": (
        [start(), block_start(0, {**TOOL, "input": f'{{"to": "{EMAIL}"}}'}), block_stop(0),
         *end("tool_use")],
        [("message_start", []), ("start", 0, TOOL),
         ("delta", 0, input_delta('{"to": "[EMAIL]"}')), ("stop", 0), *ending("tool_use")],
    ),
    "a tool's input given as an empty string is left as it came": (
        [start(), block_start(0, {**TOOL, "input": ""}), block_stop(0), *end("tool_use")],
        [("message_start", []), ("start", 0, {**TOOL, "input": ""}), ("stop", 0),
         *ending("tool_use")],
    ),
    "types that are lists are read whole": (
        [start(), block_start(0, text("")),
         event({"type": "content_block_delta", "index": 0,
                "delta": {"type": ["text_delta"], "text": f"mail {EMAIL}"}}),
         sse({"type": ["x"], "note": f"mail {EMAIL}"}),
         block_start(1, {"type": "text", "text": [f"mail {EMAIL}"]}), block_stop(0), *end()],
        [("message_start", []), ("start", 0, text("")),
         ("delta", 0, {"type": ["text_delta"], "text": "mail [EMAIL]"}),
         ("", {"type": ["x"], "note": "mail [EMAIL]"}),
         ("start", 1, {"type": "text", "text": ["mail [EMAIL]"]}), ("stop", 0), *ending()],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(STREAMS))
async def test_the_events_a_judged_stream_sends(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    scripted.script, expected = STREAMS[case]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}/v1/messages", REQUEST)
    assert [brief(e) for e in received(raw)] == expected


async def test_a_tool_input_in_its_start_redacted_at_once_follows_the_start(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """With nothing held back, the input given whole in a tool block's start goes out,
    redacted, in a delta right after the start (a delta of the start's own index)."""
    at_once = {"filters": [{"name": "pii", "type": "pii", "stages": ["stream"],
                            "stream": {"holdback_chars": 0}}]}  # fmt: skip
    scripted.script = [start(), block_start(3, {**TOOL, "input": {"to": EMAIL}}),
                       block_stop(3), *end("tool_use")]  # fmt: skip
    proxy = await start_proxy(at_once, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}/v1/messages", REQUEST)
    assert [brief(e) for e in received(raw)] == [
        ("message_start", []), ("start", 3, TOOL), ("delta", 3, input_delta('{"to":"[EMAIL]"}')),
        ("stop", 3), *ending("tool_use"),
    ]  # fmt: skip


def refusal(usage: dict[str, int]) -> list[dict[str, Any]]:
    delta = {"stop_reason": "refusal", "stop_sequence": None, "stop_details": REFUSAL_DETAILS}
    return [
        {"type": "message_delta", "delta": delta, "usage": usage},
        {"type": "message_stop"},
    ]


HEARD_OF = {k: v for k, v in OPENING.items() if k != "content"}
# (the upstream's stream, every event the client receives)
BLOCKED: dict[str, tuple[Script, list[dict[str, Any]]]] = {
    "in the message_start: it goes out with no content and nothing not heard of": (
        [opening(content=[text(PHRASE)], note="said", usage={"input_tokens": 5}), *end()],
        [{"type": "message_start",
          "message": {**HEARD_OF, "usage": {"input_tokens": 5}, "content": []}},
         *refusal({"output_tokens": 0, "input_tokens": 5})],
    ),
    "before any message_start: none is made up": (
        [event({"type": "error", "error": {"type": "overloaded_error", "message": PHRASE}})],
        refusal({"output_tokens": 0}),
    ),
    "after blocks: each open one is closed, once": (
        [opening(), block_start(0, text("")), delta(0, "text_delta", "fine"), block_stop(0),
         block_start(1, text("")), block_start(2, TOOL), delta(1, "text_delta", PHRASE),
         *end()],
        [{"type": "message_start", "message": OPENING}, *[
            {"type": "content_block_start", "index": 0, "content_block": text("")},
            {"type": "content_block_delta", "index": 0, "delta": text_delta("fine")},
            {"type": "content_block_stop", "index": 0},
            {"type": "content_block_start", "index": 1, "content_block": text("")},
            {"type": "content_block_start", "index": 2, "content_block": TOOL},
            {"type": "content_block_stop", "index": 1},
            {"type": "content_block_stop", "index": 2},
         ], *refusal({"output_tokens": 7, "input_tokens": 5})],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BLOCKED))
async def test_a_blocked_stream_ends_as_anthropic_refuses(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    """Anthropic's own refusal: every block the client saw open closed, a message_delta
    with stop_reason "refusal" and its stop_details, message_stop; a message_start only
    if none went out, and each event named by its type."""
    scripted.script, expected = BLOCKED[case]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}/v1/messages", REQUEST)
    events = received(raw)
    assert [data for _, data in events] == expected
    assert [name for name, _ in events] == [data["type"] for data in expected]
