"""holdback_chars: auto: a split e-mail or card is redacted whole, prose is not delayed."""

from __future__ import annotations

import asyncio
import itertools
from importlib import resources
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filters.base import FilterContext
from filters.pii import Pii
from proxy.config.schema import parse_config
from proxy.formats.sse import SseParser
from proxy.judge.build import build_chains, build_filters
from proxy.judge.holdback import tail_of
from proxy.judge.stream_judge import StreamJudge
from proxy.measure.timeline import Timeline
from proxy.surfaces.chat import ChatStream
from tests.loopback import ProxyFactory
from tests.surfaces.conftest import Scripted, scripted, sse

__all__ = ["scripted"]

SECRETS = "mail jane.doe@example.com, card 4111 1111 1111 1111, call +1 (555) 123-4567 now."
REDACTED = "mail [EMAIL], card [CREDIT_CARD], call [PHONE] now."


def chunk_event(text: str | None, finish: str | None = None) -> dict[str, Any]:
    delta = {} if text is None else {"content": text}
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip


def pieces(text: str, cuts: list[int]) -> list[str]:
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(text))), len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


async def judged_stream(config: dict[str, Any], parts: list[str]) -> str:
    """The text a client receives when ``parts`` arrive as chunks (the real judge and chain)."""
    parsed = parse_config(config)
    chain = build_chains(parsed, build_filters(parsed))["default"]
    judge = StreamJudge(chain, chain.stream, chain.stream_end, ChatStream(), "chat_completions",
                        {}, "r", Timeline())  # fmt: skip
    events = [chunk_event(p) for p in parts] + [chunk_event(None, "stop")]
    wire = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    out = b""
    for event in SseParser().feed(wire):
        out += await judge.on_event(event, 0)
    out += await judge.finish()
    text = ""
    for event in SseParser().feed(out):
        if event.data and event.data != "[DONE]":
            for choice in orjson.loads(event.data)["choices"]:
                text += choice["delta"].get("content") or ""
    return text


PII_STREAM = {"filters": [{"name": "pii", "type": "pii"}]}  # stages left out: the stream too


@pytest.mark.parametrize("size", range(1, 13))
async def test_split_into_chunks_of_any_size_at_any_offset_it_is_redacted_whole(size: int) -> None:
    for offset in range(size):
        cuts = list(range(offset, len(SECRETS), size))
        assert await judged_stream(PII_STREAM, pieces(SECRETS, cuts)) == REDACTED, (size, offset)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=1, max_value=len(SECRETS) - 1), max_size=30))
def test_split_anywhere_it_is_redacted_as_the_whole_answer_would_be(cuts: list[int]) -> None:
    assert asyncio.run(judged_stream(PII_STREAM, pieces(SECRETS, cuts))) == REDACTED


async def test_a_zero_width_character_cannot_stretch_a_match_past_the_held_tail() -> None:
    text = "write jane" + "\u200b" * 40 + ".doe@example.com today"
    parts = [text[i : i + 3] for i in range(0, len(text), 3)]
    out = await judged_stream(PII_STREAM, parts)
    # What pii makes of the whole text, whatever that is, and not one piece of it early.
    whole = await Pii().check(FilterContext("output", text, None, "r", "x"))
    assert out == (whole.text if whole.text is not None else text)


async def test_with_holdback_zero_the_split_address_leaks_which_auto_prevents() -> None:
    config = {"filters": [{"name": "pii", "type": "pii", "stream": {"holdback_chars": 0}}]}
    assert await judged_stream(config, ["mail a@b", ".org now"]) == "mail a@b[EMAIL] now"
    assert await judged_stream(PII_STREAM, ["mail a@b", ".org now"]) == "mail [EMAIL] now"


@pytest.mark.parametrize("holdback", ["auto", 32])
async def test_a_match_at_the_very_end_of_a_stream_is_decided_there(holdback: Any) -> None:
    """Held as unsettled when it arrived, it is judged again once the stream ends."""
    config = {"filters": [{"name": "pii", "type": "pii", "stream": {"holdback_chars": holdback}}]}
    assert await judged_stream(config, ["no jane.doe@example.com"]) == "no [EMAIL]"
    assert await judged_stream(config, ["no jane.doe", "@example.com"]) == "no [EMAIL]"


@pytest.mark.parametrize("parts", [["no jane.doe@example.com"], ["no jane", ".doe@example.com"]])
async def test_a_redaction_at_the_end_after_another_filter_goes_out_whole(
    parts: list[str],
) -> None:
    """The denylist judged the tail before pii redacted it: the redacted text is new
    to the denylist, judged again, and released (it was held back for good)."""
    config = {"filters": [
        {"name": "deny", "type": "denylist", "params": {"words": ["open sesame"]}},
        {"name": "pii", "type": "pii"},
    ]}  # fmt: skip
    assert await judged_stream(config, parts) == "no [EMAIL]"
    mixed = {"filters": [*config["filters"],
                         {"name": "deny2", "type": "denylist",
                          "params": {"words": ["plan"], "action": "redact"}}]}  # fmt: skip
    assert await judged_stream(mixed, [*parts, " plan"]) == "no [EMAIL] [REDACTED]"


async def test_a_denylisted_phrase_opening_at_the_end_is_held_until_it_is_decided() -> None:
    config = {"filters": [{"name": "deny", "type": "denylist",
                           "params": {"words": ["secret plan"], "action": "redact"}}]}  # fmt: skip
    parts = ["the secr", "et pl", "an is out"]
    assert await judged_stream(config, parts) == "the [REDACTED] is out"


def test_the_tail_counts_characters_as_the_model_reads_them() -> None:
    assert tail_of("abcdef", 3) == 3
    assert tail_of("ab\u200bc\u200bd", 2) == 4  # zero-width characters count as none
    assert tail_of("a b    c", 3) == 6  # a run of spaces counts as one
    assert tail_of("ab", 5) == 2


@pytest.mark.parametrize(
    ("text", "tail"),
    [("Hello wor", "wor"), ("Hello world. ", ""), ("mail jane.doe@exa", "jane.doe@exa"),
     ("card 4111 1111 11", "4111 1111 11"), ("call +1 (555) 12", "+1 (555) 12"),
     ("at fe80::", "fe80::"), ("iban DE89 3704 0", "DE89 3704 0"),
     ("x\u200b@y.c", "x\u200b@y.c"), ("paid 40 ", "40 ")],
)  # fmt: skip
async def test_pii_reports_as_unsettled_only_what_could_still_grow_into_a_match(
    text: str, tail: str
) -> None:
    verdict = await Pii().check(FilterContext("stream", text, None, "r", "x", partial=True))
    assert verdict.unsettled == len(tail)


async def test_the_packaged_default_config_redacts_a_streamed_address_in_small_chunks(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    text = "Reach me at jane.doe@example.com any time."
    parts = [text[i : i + 3] for i in range(0, len(text), 3)]  # LiteLLM's 3-character chunks
    scripted.script = [sse(chunk_event(p)) for p in parts]
    scripted.script += [sse(chunk_event(None, "stop")), b"data: [DONE]\n\n"]
    packaged = resources.files("proxy.config").joinpath("default_config.yaml").read_text("utf-8")
    proxy = await start_proxy(yaml.safe_load(packaged), upstream=scripted.url)
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    received = ""
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{proxy.url}/v1/chat/completions", json=body) as response,
    ):
        async for line in response.content:
            if line.startswith(b"data: {"):
                for choice in orjson.loads(line[6:])["choices"]:
                    received += choice["delta"].get("content") or ""
    assert received == "Reach me at [EMAIL] any time."


def test_a_costly_filter_judges_a_stream_by_sentence_unless_told_otherwise() -> None:
    spec = {"name": "mod", "type": "moderation", "params": {"url": "http://127.0.0.1:9/v1"}}
    built = build_filters(parse_config({"filters": [spec]}))["mod"]
    assert built.stages == ("input", "output", "stream")
    assert built.stream.at_sentence_end
    assert not built.stream.every_tokens
    spec["stream"] = {"every_chars": 64}
    built = build_filters(parse_config({"filters": [spec]}))["mod"]
    assert built.stream.every_chars == 64
    assert not built.stream.at_sentence_end
