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
from tests.loopback import ProxyFactory, RunningProxy
from tests.otlp_receiver import Traced
from tests.surfaces.conftest import Scripted
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
    start,
    text,
    text_stream,
)

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


async def test_a_malformed_stream_ends_with_an_anthropic_error_event(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    scripted.script = [start(), block_start(0, text("")), b"event: content_block_delta\n"
                       b"data: {not json\n\n", block_stop(0), *end()]  # fmt: skip
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
