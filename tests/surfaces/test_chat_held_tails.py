"""Where a chat stream's held-back text goes out: a delta of its own field's shape.

The stream judge holds back what could still grow into a match (an address
cut at its domain). When a choice ends in a chunk that carries none of that
field, the rest goes out just before it, in a chunk of its own; a client
that assembles the stream by field (the SDKs' accumulators, LiteLLM) must
find it where the field's own deltas were: a tool call's arguments under its
index, a custom tool's input, a legacy function call, a thinking block.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.loopback import ProxyFactory
from tests.security.conftest import data_events, streamed
from tests.surfaces.conftest import Scripted, sse
from tests.surfaces.test_chat_fields import CHAT, FILTERS, chat, delta_chunk, user

HELD = "see jane.doe@example.com"  # "see " goes out at once; the address could grow
REST = "[EMAIL]"


def calls(index: int, **call: Any) -> dict[str, Any]:
    return {"tool_calls": [{"index": index, **call}]}


def function(index: int, **function: Any) -> dict[str, Any]:
    return calls(index, function=function)


def custom(index: int, **fields: Any) -> dict[str, Any]:
    return calls(index, custom=fields)


# The deltas a choice streams (the held text in the last), and the delta the rest
# goes out in.
HELD_TAILS: dict[str, tuple[list[dict[str, Any]], dict[str, Any]]] = {
    "the content": ([{"content": HELD}], {"content": REST}),
    "the reasoning": ([{"reasoning_content": HELD}], {"reasoning_content": REST}),
    "a text part (Mistral)": ([{"content": [{"type": "text", "text": HELD}]}],
                              {"content": REST}),
    "a refusal part": ([{"content": [{"type": "refusal", "refusal": HELD}]}],
                       {"refusal": REST}),
    "a tool call's arguments": (
        [calls(1, id="t", type="function", function={"name": "f", "arguments": ""}),
         function(1, arguments=HELD)],
        function(1, arguments=REST)),
    "a tool call's name": (
        [calls(1, id="t", type="function", function={"name": HELD})],
        function(1, name=REST)),
    "a custom tool's input": (
        [calls(1, id="t", type="custom", custom={"name": "f", "input": ""}),
         custom(1, input=HELD)],
        custom(1, input=REST)),
    "a custom tool's name": (
        [calls(1, id="t", type="custom", custom={"name": HELD})],
        custom(1, name=REST)),
    "a legacy function call's arguments": (
        [{"function_call": {"name": "f", "arguments": ""}},
         {"function_call": {"arguments": HELD}}],
        {"function_call": {"arguments": REST}}),
    "a legacy function call's name": (
        [{"function_call": {"name": HELD}}],
        {"function_call": {"name": REST}}),
    "an audio transcript": (
        [{"audio": {"id": "a", "transcript": HELD}}],
        {"audio": {"transcript": REST}}),
    "a thinking block": (
        [{"thinking_blocks": [{"type": "thinking", "thinking": HELD}]}],
        {"thinking_blocks": [{"type": "thinking", "thinking": REST}]}),
    "LiteLLM's provider thinking blocks": (
        [{"provider_specific_fields": {"thinking_blocks": [
            {"type": "thinking", "thinking": HELD}]}}],
        {"provider_specific_fields": {"thinking_blocks": [
            {"type": "thinking", "thinking": REST}]}}),
}  # fmt: skip


@pytest.mark.parametrize("case", HELD_TAILS)
async def test_a_held_tail_goes_out_in_a_delta_of_its_own_field(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    deltas, rest = HELD_TAILS[case]
    finish = "tool_calls" if "tool_calls" in deltas[0] else "stop"
    scripted.script = [
        delta_chunk({"role": "assistant"}),
        *(delta_chunk(delta) for delta in deltas),
        delta_chunk({}, finish),
        b"data: [DONE]\n\n",
    ]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}{CHAT}", chat(user("hi"), stream=True))
    assert b"jane" not in raw
    events = data_events(raw)
    assert events[-2]["choices"] == [{"index": 0, "delta": rest, "finish_reason": None}]
    assert events[-1]["choices"][0]["finish_reason"] == finish


# What a chunk says beside a text all held back: enough to send the chunk (its text
# emptied), or nothing, so that the chunk is left out. (A text that ends a line is
# not held back: it goes out in its own place.)
SAYS_MORE: dict[str, dict[str, Any]] = {
    "a tool call's id": calls(0, id="t"),
    "a tool call's type": calls(0, type="function"),
    "a tool call's name": function(0, name="f\n"),
    "a tool call's arguments": function(0, arguments="{\n"),
    "a custom tool's name": custom(0, name="f\n"),
    "a custom tool's input": custom(0, input="x\n"),
    "a tool call that is no object": {"tool_calls": [7]},
    "a legacy function call's name": {"function_call": {"name": "f\n"}},
    "a legacy function call's arguments": {"function_call": {"arguments": "{\n"}},
    "a role": {"role": "assistant"},
    "a field not heard of": {"vendor": 1},
}  # fmt: skip
SAYS_NOTHING: dict[str, dict[str, Any]] = {
    "nothing": {},
    "an empty refusal": {"refusal": ""},
    "a tool call's index": calls(0),
    "a tool call's empty function and custom tool": calls(0, function={}, custom={}),
    "an empty legacy function call": {"function_call": {"name": "", "arguments": ""}},
}  # fmt: skip


@pytest.mark.parametrize("case", [*SAYS_MORE, *SAYS_NOTHING])
async def test_a_chunk_whose_text_is_all_held_back_goes_out_only_if_it_says_more(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    more = SAYS_MORE.get(case, SAYS_NOTHING.get(case))
    assert more is not None
    scripted.script = [
        delta_chunk({"content": "jane.doe@exa", **more}),
        delta_chunk({"content": "mple.com"}, "stop"),
        b"data: [DONE]\n\n",
    ]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}{CHAT}", chat(user("hi"), stream=True))
    sent = [event["choices"][0]["delta"] for event in data_events(raw)]
    if case in SAYS_MORE:
        assert sent == [{"content": "", **more}, {"content": REST}]
    else:
        assert sent == [{"content": REST}]


@pytest.mark.parametrize(
    "choice",
    [{"finish_reason": "length"}, {"logprobs": None, "vendor": 1}, {"delta": "not an object"}],
    ids=["an end", "a field not heard of", "a delta that is no object"],
)
async def test_a_choice_that_says_more_than_an_empty_delta_goes_out(
    start_proxy: ProxyFactory, scripted: Scripted, choice: dict[str, Any]
) -> None:
    """Beside a choice whose text is all held back (so the chunk is written anew), a
    choice with no text that says something else goes out as it came."""
    held = {"index": 0, "delta": {"content": "jane.doe@exa"}, "finish_reason": None}
    other = {"index": 1, "delta": {}, "finish_reason": None, **choice}
    first = {"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [held, other]}
    scripted.script = [
        sse(first),
        delta_chunk({"content": "mple.com"}, "stop"),
        b"data: [DONE]\n\n",
    ]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}{CHAT}", chat(user("hi"), stream=True))
    assert data_events(raw)[0]["choices"] == [other]


# A call whose name is held back, and the delta its arguments (or input) begin in.
NAMED_THEN: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    "a tool call": (calls(1, id="t", type="function", function={"name": HELD}),
                    function(1, arguments="{}\n"), function(1, name=REST)),
    "a custom tool": (calls(1, id="t", type="custom", custom={"name": HELD}),
                      custom(1, input="x\n"), custom(1, name=REST)),
    "a legacy function call": ({"function_call": {"name": HELD}},
                               {"function_call": {"arguments": "{}\n"}},
                               {"function_call": {"name": REST}}),
}  # fmt: skip


@pytest.mark.parametrize("case", NAMED_THEN)
async def test_a_held_name_goes_out_before_its_call_s_arguments_begin(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    """An SDK reports a call's arguments under the name it has by then."""
    named, then, rest = NAMED_THEN[case]
    scripted.script = [delta_chunk(named), delta_chunk(then), delta_chunk({}, "stop"),
                       b"data: [DONE]\n\n"]  # fmt: skip
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}{CHAT}", chat(user("hi"), stream=True))
    sent = [event["choices"][0]["delta"] for event in data_events(raw)]
    assert sent[1:3] == [rest, then]
