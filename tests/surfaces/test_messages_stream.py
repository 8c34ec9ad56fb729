"""Anthropic Messages streams through the proxy, read by the official client's stream helpers.

Each content block is a channel of its own (text, thinking, a tool's input
JSON), judged as it arrives; text held back is released in a
``content_block_delta`` before the block's ``content_block_stop``; a block
ends the message as a refusal; ``message_stop`` ends the response.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import anthropic
import pytest
from opentelemetry.trace import SpanKind

from proxy.measure import genai_attrs as A
from tests.judge.sample_filters import Recording
from tests.loopback import ProxyFactory, RunningProxy
from tests.otlp_receiver import Traced
from tests.security.conftest import data_events
from tests.surfaces.conftest import Script, Scripted
from tests.surfaces.messages_shapes import (
    EMAIL,
    FILTERS,
    PHRASE,
    ROUTE,
    block_start,
    block_stop,
    client,
    delta,
    end,
    event,
    message,
    start,
    text,
    text_stream,
)

RECORDING = {"name": "rec", "type": "tests.judge.sample_filters:Recording"}
REQUEST: dict[str, Any] = {
    "model": "m",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "hi"}],
}


async def wait_for_outcome(proxy: RunningProxy, outcome: str) -> float:
    """The count of ``outcome``, once the request is recorded (just after its last byte)."""
    for _ in range(100):
        if proxy.value("taxmeter_requests_total", **ROUTE, outcome=outcome) == 1:
            break
        await asyncio.sleep(0.02)
    return proxy.value("taxmeter_requests_total", **ROUTE, outcome=outcome)


async def test_an_email_split_across_deltas_reaches_the_client_redacted(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    scripted.script = text_stream("write to jane.d", "oe@exam", "ple.com", " today")
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    async with client(proxy) as c, c.messages.stream(**REQUEST) as stream:
        streamed = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert streamed == "write to [EMAIL] today"
    assert final.content[0].type == "text"
    assert final.content[0].text == "write to [EMAIL] today"
    assert final.stop_reason == "end_turn"
    assert await wait_for_outcome(proxy, "ok") == 1
    assert proxy.value("taxmeter_time_to_first_token_seconds_count", **ROUTE) == 1


async def test_thinking_and_tool_input_are_judged_block_by_block(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    tool = {"type": "tool_use", "id": "toolu_1", "name": "send", "input": {}}
    scripted.script = [
        start(),
        block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
        delta(0, "thinking_delta", "they want jane."),
        delta(0, "thinking_delta", "doe@example.com mailed"),
        event({"type": "content_block_delta", "index": 0,
               "delta": {"type": "signature_delta", "signature": "c2ln"}}),
        block_stop(0),
        block_start(1, tool),
        delta(1, "input_json_delta", '{"to": "jane.doe@exa'),
        delta(1, "input_json_delta", 'mple.com"}'),
        block_stop(1),
        *end("tool_use"),
    ]  # fmt: skip
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    async with client(proxy) as c, c.messages.stream(**REQUEST) as stream:
        final = await stream.get_final_message()
    thinking, call = final.content
    assert thinking.type == "thinking"
    assert thinking.thinking == "they want [EMAIL] mailed"
    assert thinking.signature == "c2ln"
    assert call.type == "tool_use"
    assert call.input == {"to": "[EMAIL]"}
    assert final.stop_reason == "tool_use"
    assert EMAIL not in final.model_dump_json()


async def test_an_escape_split_across_tool_input_deltas_does_not_hide_an_email(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """The client parses the input JSON: "\\u0040" is an "@" to it, so to the filters too."""
    tool = {"type": "tool_use", "id": "toolu_1", "name": "send", "input": {}}
    scripted.script = [
        start(),
        block_start(0, tool),
        delta(0, "input_json_delta", '{"to": "jane.doe\\u00'),
        delta(0, "input_json_delta", '40example.com"}'),
        block_stop(0),
        *end("tool_use"),
    ]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    async with client(proxy) as c, c.messages.stream(**REQUEST) as stream:
        final = await stream.get_final_message()
    (call,) = final.content
    assert call.type == "tool_use"
    assert call.input == {"to": "[EMAIL]"}


async def test_text_in_a_block_start_is_judged_too(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    scripted.script = [
        start(), block_start(0, text(f"mail {EMAIL}")), delta(0, "text_delta", " now"),
        block_stop(0), *end(),
    ]  # fmt: skip
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    async with client(proxy) as c, c.messages.stream(**REQUEST) as stream:
        final = await stream.get_final_message()
    assert final.content[0].type == "text"
    assert final.content[0].text == "mail [EMAIL] now"


async def test_a_blocked_stream_ends_as_a_refusal_the_client_parses(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    scripted.script = text_stream("fine. The pass is open ", "sesame, do", " not tell")
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    async with client(proxy) as c, c.messages.stream(**REQUEST) as stream:
        streamed = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert final.stop_reason == "refusal"
    assert "sesame" not in streamed
    assert "sesame" not in final.model_dump_json()
    assert final.usage.input_tokens == 5
    assert await wait_for_outcome(proxy, "blocked") == 1


async def test_a_stream_is_over_at_message_stop(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """The upstream slow to end its stream after message_stop must not keep the client
    waiting, nor make a complete answer a client_disconnect."""
    scripted.script = [*text_stream("hello"), 3.0]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    async with client(proxy) as c, c.messages.stream(**REQUEST) as stream:
        final = await asyncio.wait_for(stream.get_final_message(), 2.5)
    assert final.content[0].type == "text"
    assert final.content[0].text == "hello"
    assert not scripted.ended.is_set()
    assert await wait_for_outcome(proxy, "ok") == 1
    assert proxy.value("taxmeter_requests_total", **ROUTE, outcome="client_disconnect") == 0


async def test_stream_usage_from_message_start_and_message_delta_reaches_the_span(
    start_proxy: ProxyFactory, scripted: Scripted, traced: Traced
) -> None:
    scripted.script = text_stream("hello")
    proxy = await start_proxy(FILTERS, upstream=scripted.url, tracing=traced.setup)
    async with client(proxy) as c, c.messages.stream(**REQUEST) as stream:
        await stream.get_final_message()
    await wait_for_outcome(proxy, "ok")
    (server,) = [s for s in await traced.spans() if s.kind == SpanKind.SERVER]
    attrs = server.attributes
    assert attrs is not None
    assert attrs[A.USAGE_INPUT_TOKENS] == 5
    assert attrs[A.USAGE_OUTPUT_TOKENS] == 7
    assert attrs[A.RESPONSE_FINISH_REASONS] == ("end_turn",)


def _wrong_index(index: Any) -> bytes:
    return event({"type": "content_block_delta", "index": index,
                  "delta": {"type": "text_delta", "text": "hi"}})  # fmt: skip


# An event the stream cannot read, between a block's start and its stop.
MALFORMED: dict[str, bytes] = {
    "not JSON": b"event: content_block_delta\ndata: {not json\n\n",
    # No block can be placed at these indexes.
    "an index below 0": _wrong_index(-1),
    "an index that is a string": _wrong_index("0"),
    "an index that is a boolean": _wrong_index(True),
}


@pytest.mark.parametrize("case", MALFORMED)
async def test_a_malformed_stream_ends_with_an_anthropic_error_event(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    scripted.script = [start(), block_start(0, text("")), MALFORMED[case], block_stop(0), *end()]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    async with client(proxy) as c:
        with pytest.raises(anthropic.APIStatusError) as caught:
            async with c.messages.stream(**REQUEST) as stream:
                await stream.get_final_message()
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["type"] == "api_error"
    assert body["error"]["message"].startswith("upstream_malformed: ")


async def test_an_event_whose_name_and_type_differ_is_malformed(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """A reader that goes by the event's name must see what the proxy judged."""
    hidden = (
        b'event: content_block_delta\ndata: {"type": "ping", "index": 0, '
        b'"delta": {"type": "text_delta", "text": "' + PHRASE.encode() + b'"}}\n\n'
    )
    scripted.script = [start(), block_start(0, text("")), hidden, block_stop(0), *end()]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{proxy.url}/v1/messages", json={**REQUEST, "stream": True}) as response,
    ):
        streamed = await response.read()
    assert PHRASE.encode() not in streamed
    assert b"event: error" in streamed


async def test_a_block_at_stream_end_makes_the_message_a_refusal(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """Text already sent cannot be recalled; the message is marked refused at its end."""
    at_end = {"name": "denylist", "type": "denylist", "stages": ["output"],
              "at_stream_end": True, "params": {"words": [PHRASE]}}  # fmt: skip
    scripted.script = text_stream("the pass is open ", "sesame")
    proxy = await start_proxy({"filters": [at_end]}, upstream=scripted.url)
    async with client(proxy) as c, c.messages.stream(**REQUEST) as stream:
        final = await stream.get_final_message()
    assert final.stop_reason == "refusal"
    assert await wait_for_outcome(proxy, "blocked") == 1


# Only a prompt filter: nothing judges the stream, whose events go out as they come,
# unparsed once its first content is out, while its usage, finish reason and end
# are still read from each event.
UNJUDGED = {"filters": [{"name": "pii", "type": "pii", "stages": ["input"]}]}


def data(text: str) -> bytes:
    """An event of a data line only, written exactly as given."""
    return b"data: " + text.encode() + b"\n\n"


def unjudged(*after_content: bytes, message_usage: Any = None) -> Script:
    """A message of one text block, then ``after_content`` (its end and whatever else)."""
    usage = {"input_tokens": 5, "output_tokens": 1} if message_usage is None else message_usage
    opening = {**message(), "content": [], "stop_reason": None, "usage": usage}
    return [
        event({"type": "message_start", "message": opening}),
        block_start(0, text("")),
        delta(0, "text_delta", "hello"),
        block_stop(0),
        *after_content,
    ]


def message_delta(text: str) -> bytes:
    return data('{"type":"message_delta",' + text + "}")


# (the upstream's stream, the span's input tokens, output tokens, finish reasons)
UNJUDGED_STREAMS: dict[str, tuple[Script, int | None, int | None, tuple[str, ...] | None]] = {
    "as Anthropic sends it": (unjudged(*end()), 5, 7, ("end_turn",)),
    "keys spelt with escapes": (unjudged(message_delta(
        '"delta":{"\\u0073top_reason":"max_tokens","stop_sequence":null},'
        '"usage":{"\\u006futput_tokens":3}'), event({"type": "message_stop"})),
        5, 3, ("max_tokens",)),
    "no stop_reason, an escape elsewhere": (unjudged(message_delta(
        '"delta":{"stop_reason":null,"stop_sequence":"\\u00e9"},"usage":{"output_tokens":3}'),
        event({"type": "message_stop"})), 5, 3, None),
    "a delta that is not an object": (unjudged(message_delta(
        '"delta":"\\u0041","usage":{"output_tokens":3}'), event({"type": "message_stop"})),
        5, 3, None),
    "events that are not objects, or not JSON, in the middle": (unjudged(
        data("{not json"), data('{"type":"message_delta", cut short'), data('["\\u0041"]'),
        data('{"type":"message_start","message":"\\u0041"}'), *end()), 5, 7, ("end_turn",)),
    "no counts at all": (unjudged(message_delta(
        '"delta":{"stop_reason":"end_turn"},"usage":{}'), event({"type": "message_stop"}),
        message_usage={}), None, None, ("end_turn",)),
    "a message_start after the first content": ([
        event({"type": "notice", "note": "hello"}),
        event({"type": "message_start", "message": {**message(), "content": []}}),
        *end()], 5, 7, ("end_turn",)),
}  # fmt: skip


@pytest.mark.parametrize("case", list(UNJUDGED_STREAMS))
async def test_an_unjudged_stream_is_relayed_and_still_measured(
    start_proxy: ProxyFactory, scripted: Scripted, traced: Traced, case: str
) -> None:
    """Every event reaches the client as it came, the answer is over at message_stop
    (an upstream slow to close does not hold the client), and the span has the usage
    and finish reason the events gave."""
    script, input_tokens, output_tokens, reasons = UNJUDGED_STREAMS[case]
    scripted.script = [*script, 3.0]  # the upstream slow to close after message_stop
    proxy = await start_proxy(UNJUDGED, upstream=scripted.url, tracing=traced.setup)
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{proxy.url}/v1/messages", json={**REQUEST, "stream": True}) as response,
    ):
        streamed = await asyncio.wait_for(response.read(), 2.5)
    assert streamed == b"".join(s for s in script if isinstance(s, bytes))
    assert not scripted.ended.is_set()
    assert await wait_for_outcome(proxy, "ok") == 1
    (server,) = [s for s in await traced.spans() if s.kind == SpanKind.SERVER]
    attrs = server.attributes
    assert attrs.get(A.USAGE_INPUT_TOKENS) == input_tokens
    assert attrs.get(A.USAGE_OUTPUT_TOKENS) == output_tokens
    assert attrs.get(A.RESPONSE_FINISH_REASONS) == reasons


async def test_a_tool_input_given_in_its_start_goes_on_as_a_delta_unjudged(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """Before its first content an unjudged stream is still read: a tool's input given
    whole in its block's start goes on as a delta, as a judged stream sends it."""
    tool = {"type": "tool_use", "id": "toolu_1", "name": "send", "input": {"to": EMAIL}}
    scripted.script = [start(), block_start(0, tool), block_stop(0), *end("tool_use")]
    proxy = await start_proxy(UNJUDGED, upstream=scripted.url)
    async with client(proxy) as c, c.messages.stream(**REQUEST) as stream:
        events = [e async for e in stream]
        final = await stream.get_final_message()
    started = next(e for e in events if e.type == "content_block_start")
    assert started.content_block.model_dump()["input"] == {}
    deltas = [e.delta.model_dump() for e in events if e.type == "content_block_delta"]
    assert deltas == [{"type": "input_json_delta", "partial_json": f'{{"to":"{EMAIL}"}}'}]
    (call,) = final.content
    assert call.type == "tool_use"
    assert call.input == {"to": EMAIL}


AT_END = {"filters": [{"name": "denylist", "type": "denylist", "stages": ["output"],
                       "at_stream_end": True, "params": {"words": [PHRASE]}}]}  # fmt: skip
CITED = {"type": "char_location", "cited_text": PHRASE, "document_index": 0}
TOOL = {"type": "tool_use", "id": "toolu_1", "name": "send", "input": {}}
# Where a text comes whole in a block's events (a name, a quote, a server tool's
# result, a field not heard of): the block it belongs to ends filtered.
WHOLE_IN_A_BLOCK: dict[str, list[bytes]] = {
    "a tool's name": [block_start(0, {**TOOL, "name": PHRASE})],
    "a citation in a text block's start": [
        block_start(0, {**text(""), "citations": [CITED]})],
    "a citation given alone in a text block's start": [
        block_start(0, {**text(""), "citations": CITED})],
    "a server tool's result": [block_start(0, {
        "type": "web_search_tool_result", "tool_use_id": "srvtoolu_1",
        "content": [{"type": "web_search_result", "title": PHRASE, "url": "u"}]})],
    "a text block's field": [block_start(0, {**text(""), "note": PHRASE})],
    "a thinking block's field": [block_start(0, {
        "type": "thinking", "thinking": "", "signature": "", "note": PHRASE})],
    "a tool block's field": [block_start(0, {**TOOL, "note": PHRASE})],
    "a citation delta": [block_start(0, text("")), event({
        "type": "content_block_delta", "index": 0,
        "delta": {"type": "citations_delta", "citation": CITED}})],
    "a text delta's field": [block_start(0, text("")), event({
        "type": "content_block_delta", "index": 0,
        "delta": {"type": "text_delta", "text": "hi", "note": PHRASE}})],
}  # fmt: skip


@pytest.mark.parametrize("case", list(WHOLE_IN_A_BLOCK))
async def test_a_whole_text_rejected_at_stream_end_makes_its_message_a_refusal(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    scripted.script = [start(), *WHOLE_IN_A_BLOCK[case], block_stop(0), *end()]
    proxy = await start_proxy(AT_END, upstream=scripted.url)
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{proxy.url}/v1/messages", json={**REQUEST, "stream": True}) as response,
    ):
        streamed = await response.read()
    (last_delta,) = [e for e in data_events(streamed) if e["type"] == "message_delta"]
    assert last_delta["delta"]["stop_reason"] == "refusal"
    assert last_delta["delta"]["stop_details"] == {
        "type": "refusal", "category": None,
        "explanation": "withheld by a content filter of taxmeter",
    }  # fmt: skip
    assert await wait_for_outcome(proxy, "blocked") == 1


async def test_each_string_of_a_stream_is_judged_once_as_a_whole(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """A string the reading judges is not judged again by the sweep after it: a tool's
    name once; a field not heard of once, and once joined with its block's others."""
    Recording.seen.clear()
    tool = {**TOOL, "name": "tool name"}
    scripted.script = [
        start(), block_start(0, tool), block_stop(0),
        block_start(1, text("")),
        event({"type": "content_block_delta", "index": 1,
               "delta": {"type": "text_delta", "text": "hi", "note": "a note"}}),
        block_stop(1), *end("tool_use"),
    ]  # fmt: skip
    proxy = await start_proxy({"filters": [RECORDING]}, upstream=scripted.url)
    async with client(proxy) as c, c.messages.stream(**REQUEST) as stream:
        await stream.get_final_message()
    judged = [ctx.text for ctx in Recording.seen if ctx.stage == "stream" and not ctx.partial]
    Recording.seen.clear()
    assert judged.count("tool name") == 1
    assert judged.count("a note") == 2
