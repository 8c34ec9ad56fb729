"""A blocked chat choice is withheld whole, as OpenAI answers content its filter stopped.

Wherever in the choice the blocked text is, the choice goes out with
``finish_reason: content_filter``, no logprobs and a message of its role and
a null content alone: every other field of it (those heard of and those
not) goes, as any of them may repeat what was blocked.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.loopback import ProxyFactory, post_json
from tests.surfaces.conftest import Scripted

CHAT = "/v1/chat/completions"
DENYLIST = {"filters": [{"name": "denylist", "type": "denylist",
                         "params": {"words": ["open sesame"]}}]}  # fmt: skip
BLOCKED = "say open sesame"


def message(**blocked: Any) -> dict[str, Any]:
    """A message with each field an answer may have; ``blocked`` replaces some."""
    fields: dict[str, Any] = {
        "role": "assistant",
        "content": "fine",
        "refusal": "fine",
        "reasoning_content": "fine",
        "tool_calls": [
            {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
        "audio": {"id": "a", "data": "QUJD", "expires_at": 1, "transcript": "fine"},
        "annotations": [],
        "x_note": "fine",  # a server's own field
    }
    return {**fields, **blocked}


CASES = {
    "content": message(content=BLOCKED),
    "a refusal": message(refusal=BLOCKED),
    "reasoning": message(reasoning_content=BLOCKED),
    "an audio transcript": message(audio={"id": "a", "data": "QUJD", "transcript": BLOCKED}),
    "a field not heard of": message(x_note=BLOCKED),
    "a tool call's name": message(
        tool_calls=[
            {"id": "t", "type": "function", "function": {"name": BLOCKED, "arguments": "{}"}}
        ]
    ),
    "a legacy function call's name": message(function_call={"name": BLOCKED, "arguments": "{}"}),
    "a legacy function call's arguments": message(
        function_call={"name": "f", "arguments": f'{{"say": "{BLOCKED}"}}'}
    ),
    "a custom tool's name": message(
        tool_calls=[{"id": "t", "type": "custom", "custom": {"name": BLOCKED, "input": "x"}}]
    ),
    "a custom tool's input": message(
        tool_calls=[{"id": "t", "type": "custom", "custom": {"name": "f", "input": BLOCKED}}]
    ),
    "a thinking block": message(thinking_blocks=[{"type": "thinking", "thinking": BLOCKED}]),
    "a provider thinking block": message(
        provider_specific_fields={"thinking_blocks": [{"type": "thinking", "thinking": BLOCKED}]}
    ),
    "the first of two citations": message(
        annotations=[
            {"type": "url_citation", "url_citation": {"title": BLOCKED, "url": "u"}},
            {"type": "url_citation", "url_citation": {"title": "t", "url": "u"}},
        ]
    ),
}
# A field not heard of at each level of the message: found by the reading, so
# the choice is withheld (the sweep after it would only empty the string).
CALL: dict[str, Any] = {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}
CUSTOM: dict[str, Any] = {"id": "t", "type": "custom", "custom": {"name": "f", "input": "x"}}
CITATION = {"type": "url_citation", "url_citation": {"title": "t", "url": "u"}}
THINKING = {"type": "thinking", "thinking": "fine", "signature": "s"}
NOT_HEARD_OF = {
    "a tool call's": message(tool_calls=[{**CALL, "x": BLOCKED}]),
    "a call's function's": message(
        tool_calls=[{**CALL, "function": {**CALL["function"], "x": BLOCKED}}]
    ),
    "a custom tool's": message(
        tool_calls=[{**CUSTOM, "custom": {**CUSTOM["custom"], "x": BLOCKED}}]
    ),
    "a legacy function call's": message(
        function_call={"name": "f", "arguments": "{}", "x": BLOCKED}
    ),
    "the audio's": message(audio={"id": "a", "data": "QUJD", "transcript": "fine", "x": BLOCKED}),
    "an annotation's": message(annotations=[{**CITATION, "x": BLOCKED}]),
    "a citation's": message(
        annotations=[{**CITATION, "url_citation": {"title": "t", "url": "u", "x": BLOCKED}}]
    ),
    "a thinking block's": message(thinking_blocks=[{**THINKING, "x": BLOCKED}]),
    "the provider fields'": message(provider_specific_fields={"x": BLOCKED}),
    "a provider thinking block's": message(
        provider_specific_fields={"thinking_blocks": [{**THINKING, "x": BLOCKED}]}
    ),
}
CASES.update({f"{level} field not heard of": value for level, value in NOT_HEARD_OF.items()})


@pytest.mark.parametrize("blocked", CASES.values(), ids=CASES.keys())
async def test_a_blocked_choice_keeps_its_index_and_role_alone(
    start_proxy: ProxyFactory, scripted: Scripted, blocked: dict[str, Any]
) -> None:
    # No logprobs key: the withheld choice says it has none all the same.
    choice = {"index": 0, "message": blocked, "finish_reason": "stop", "x_choice": "fine"}
    scripted.answer = {"id": "c", "object": "chat.completion", "model": "m", "choices": [choice]}
    proxy = await start_proxy(DENYLIST, upstream=scripted.url)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    status, _, got = await post_json(f"{proxy.url}{CHAT}", body)
    assert status == 200, got
    (withheld,) = orjson.loads(got)["choices"]
    assert withheld == {
        "index": 0,
        "finish_reason": "content_filter",
        "logprobs": None,
        "message": {"role": "assistant", "content": None},
    }
