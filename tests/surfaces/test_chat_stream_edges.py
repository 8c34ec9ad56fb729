"""A chat stream at its edges: a block before any choice, choices with no index,
usage beside text held back, and texts given whole judged once."""

from __future__ import annotations

from typing import Any

import pytest

from tests.judge.sample_filters import Recording
from tests.loopback import ProxyFactory
from tests.security.conftest import data_events, streamed
from tests.surfaces.conftest import Scripted, sse
from tests.surfaces.test_chat_fields import CHAT, FILTERS, chat, delta_chunk, user

ASK = chat(user("hi"), stream=True)
HEAD = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
FILTERED = {"index": 0, "delta": {}, "finish_reason": "content_filter"}


async def test_a_block_before_any_choice_ends_the_stream_as_its_first_choice(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """A server's own field, in the first chunk, before any choice came."""
    scripted.script = [
        sse({**HEAD, "choices": [], "x_note": "open sesame"}),
        delta_chunk({"content": "never sent"}, "stop"),
        b"data: [DONE]\n\n",
    ]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}{CHAT}", ASK)
    assert [event["choices"] for event in data_events(raw)] == [[FILTERED]]
    assert raw.endswith(b"data: [DONE]\n\n")


async def test_a_choice_with_no_index_is_the_first(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """Some servers leave the index out of a single choice; it is choice 0."""
    scripted.script = [
        sse({**HEAD, "choices": [{"delta": {"content": "fine, "}, "finish_reason": None}]}),
        sse({**HEAD, "choices": [{"delta": {"content": "open sesame"}, "finish_reason": None}]}),
        b"data: [DONE]\n\n",
    ]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}{CHAT}", ASK)
    events = data_events(raw)
    assert events[0]["choices"] == [{"delta": {"content": "fine, "}, "finish_reason": None}]
    assert events[-1]["choices"] == [FILTERED]


async def test_two_choices_ending_in_one_chunk_each_give_their_held_tail_first(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """``n=2``: both choices end in the same chunk; each one's held tail goes out
    with its own end, not after it."""
    held = [{"index": i, "delta": {"content": "see jane.doe@exa"}, "finish_reason": None}
            for i in (0, 1)]  # fmt: skip
    ends = [{"index": i, "delta": {"content": "mple.com"}, "finish_reason": "stop"}
            for i in (0, 1)]  # fmt: skip
    scripted.script = [sse({**HEAD, "choices": held}), sse({**HEAD, "choices": ends}),
                       b"data: [DONE]\n\n"]  # fmt: skip
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}{CHAT}", ASK)
    texts: dict[int, str] = {0: "", 1: ""}
    for event in data_events(raw):
        for choice in event["choices"]:
            texts[choice["index"]] += choice["delta"].get("content") or ""
            assert choice["finish_reason"] is None or texts[choice["index"]] == "see [EMAIL]"
    assert texts == {0: "see [EMAIL]", 1: "see [EMAIL]"}


async def test_usage_beside_text_all_held_back_goes_out(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """vLLM's continuous_usage_stats puts usage in every chunk: a chunk whose text
    is all held back still says it."""
    usage = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    held = {"index": 0, "delta": {"content": "jane.doe@exa"}, "finish_reason": None}
    scripted.script = [
        sse({**HEAD, "choices": [held], "usage": usage}),
        delta_chunk({"content": "mple.com"}, "stop"),
        b"data: [DONE]\n\n",
    ]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    events = data_events(await streamed(f"{proxy.url}{CHAT}", ASK))
    assert events[0]["usage"] == usage
    assert events[0]["choices"] == []


HELD = {"index": 0, "delta": {"content": "jane.doe@exa"}, "finish_reason": None}
# Every key a chunk, or a streamed choice (vLLM's among them), may have, none of
# them saying anything.
EVERY_CHUNK_KEY = {**HEAD, "system_fingerprint": "fp", "service_tier": "default", "usage": None,
                   "prompt_logprobs": None, "prompt_token_ids": None, "kv_transfer_params": None,
                   "obfuscation": "xyz", "choices": [HELD]}  # fmt: skip
NULLS = dict.fromkeys(("logprobs", "stop_reason", "token_ids", "matched_stop"))
EVERY_CHOICE_KEY = {**HEAD, "choices": [{**HELD, **NULLS}]}


@pytest.mark.parametrize(
    "first", [EVERY_CHUNK_KEY, EVERY_CHOICE_KEY], ids=["a chunk's", "a choice's"]
)
async def test_every_key_saying_nothing_once_the_text_is_held_is_not_sent(
    start_proxy: ProxyFactory, scripted: Scripted, first: dict[str, Any]
) -> None:
    scripted.script = [
        sse(first),
        delta_chunk({"content": "mple.com"}, "stop"),
        b"data: [DONE]\n\n",
    ]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    events = data_events(await streamed(f"{proxy.url}{CHAT}", ASK))
    assert [event["choices"][0]["delta"] for event in events] == [{"content": "[EMAIL]"}]


async def test_each_text_a_chat_stream_gives_whole_is_judged_once(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """A chunk's field not heard of, a choice's, a delta's, and a citation: each its
    own text, judged where it is read (not again by the sweep after the reading)."""
    citation = {"type": "url_citation", "url_citation": {"title": "cited title", "url": "u"}}
    choice = {"index": 0, "finish_reason": None, "x_choice": "choice note",
              "delta": {"content": "hello", "x_delta": "delta note",
                        "annotations": [citation]}}  # fmt: skip
    scripted.script = [
        sse({**HEAD, "x_chunk": "chunk note", "choices": [choice]}),
        delta_chunk({}, "stop"),
        b"data: [DONE]\n\n",
    ]
    Recording.seen.clear()
    proxy = await start_proxy(
        {"filters": [{"name": "rec", "type": "tests.judge.sample_filters:Recording"}]},
        upstream=scripted.url,
    )
    raw = await streamed(f"{proxy.url}{CHAT}", ASK)
    judged = [(ctx.partial, ctx.text) for ctx in Recording.seen if ctx.stage == "stream"]
    Recording.seen.clear()
    # Each alone, then run on after the texts of its family before it (a chunk's,
    # a choice's: they may be pieces of one text), the first's run being itself.
    assert judged == [
        (True, "hello"),
        (False, "chunk note"), (False, "chunk note"),
        (False, "cited title"), (False, "cited title"),
        (False, "u"), (False, "cited titleu"),
        (False, "choice note"), (False, "cited titleuchoice note"),
        (False, "delta note"), (False, "cited titleuchoice notedelta note"),
    ]  # fmt: skip
    assert raw.endswith(b"data: [DONE]\n\n")
