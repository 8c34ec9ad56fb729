"""A whole answer no output filter reads is relayed as it arrives; any output filter still reads it.

The model server sends the first half of its answer and waits (up to a
bound) for the client to have it before sending the rest. A relayed answer
reaches the client half by half, byte for byte as the model server wrote it;
an answer an output filter of the request's variant judges (enforcing,
observing on the path or after it) is held until it is whole, and judged.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from tests.loopback import CHOOSABLE, ProxyFactory, variant_headers
from tests.upstream.raw_upstream import raw_server

# Not as orjson would write it: spaces, escapes, a long number, keys in an odd order.
ANSWER = (
    b'{ "usage" : {"prompt_tokens": 3, "completion_tokens": 7, "total_tokens": 10},\n'
    b'  "id": "c", "object": "chat.completion", "created": 12345678901234567890123,'
    b' "model": "m",\n  "choices": [ {"index": 0, "finish_reason": "stop",'
    b' "message": {"role": "assistant", "content": "caf\\u00e9 \\"quoted\\" secret word"}} ] }'
)
HALF = len(ANSWER) // 2
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
DENY = {"name": "deny", "type": "denylist", "stages": ["output"], "params": {"words": ["secret"]}}
PROMPT_ONLY = {**DENY, "stages": ["input"]}
WAIT_S = 1.0  # how long the model server waits for the client to have the first half


class HalfThenRest:
    """The model server: half the answer, a wait for the client, the rest."""

    def __init__(self) -> None:
        self.client_has_half = asyncio.Event()
        self.relayed_early: list[bool] = []

    async def __call__(self, head: bytes, writer: asyncio.StreamWriter) -> bool:
        self.client_has_half.clear()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%b" % (len(ANSWER), ANSWER[:HALF])
        )
        await writer.drain()
        try:
            await asyncio.wait_for(self.client_has_half.wait(), WAIT_S)
            self.relayed_early.append(True)
        except TimeoutError:
            self.relayed_early.append(False)
        writer.write(ANSWER[HALF:])
        await writer.drain()
        return True


async def _ask(url: str, model: HalfThenRest, headers: dict[str, str] | None = None) -> bytes:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/v1/chat/completions", json=CHAT, headers=headers) as got,
    ):
        assert got.status == 200
        body = b""
        while len(body) < len(ANSWER):
            chunk = await got.content.readany()
            if not chunk:
                break
            body += chunk
            if len(body) >= HALF:
                model.client_has_half.set()
        return body


@pytest.mark.parametrize(
    "filters", [[], [PROMPT_ONLY], [{**DENY, "mode": "off"}]], ids=["none", "input-only", "off"]
)
async def test_an_answer_no_output_filter_reads_is_relayed_byte_for_byte(
    start_proxy: ProxyFactory, filters: list[dict[str, Any]]
) -> None:
    model = HalfThenRest()
    async with raw_server(model) as (_, url):
        proxy = await start_proxy({"filters": filters}, upstream=url)
        assert await _ask(proxy.url, model) == ANSWER
        assert await _ask(proxy.url, model) == ANSWER
    assert model.relayed_early == [True, True]
    # Its usage and finish reason still reach the record, read after it was sent.
    labels = {"route": "chat_completions", "variant": "default"}
    assert proxy.value("taxmeter_completion_tokens_total", **labels) == 14
    assert proxy.value("taxmeter_capability_events_total", **labels, event="usage_known") == 2
    assert proxy.value("taxmeter_requests_total", **labels, outcome="ok") == 2


async def test_a_model_filtered_ending_is_counted_on_a_relayed_answer(
    start_proxy: ProxyFactory,
) -> None:
    filtered = ANSWER.replace(b'"finish_reason": "stop"', b'"finish_reason": "content_filter"')

    async def answer(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%b" % (len(filtered), filtered)
        )
        return True

    async with raw_server(answer) as (_, url):
        proxy = await start_proxy({}, upstream=url)
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{proxy.url}/v1/chat/completions", json=CHAT) as got,
        ):
            assert await got.read() == filtered
    labels = {"route": "chat_completions", "variant": "default"}
    assert proxy.value("taxmeter_capability_events_total", **labels, event="content_filter") == 1


async def test_an_enforcing_output_filter_still_judges_the_whole_answer(
    start_proxy: ProxyFactory,
) -> None:
    model = HalfThenRest()
    async with raw_server(model) as (_, url):
        proxy = await start_proxy({"filters": [DENY]}, upstream=url)
        body = orjson.loads(await _ask(proxy.url, model))
    assert model.relayed_early == [False]  # held until whole, then judged
    assert body["choices"][0]["finish_reason"] == "content_filter"
    assert "secret" not in orjson.dumps(body).decode()


@pytest.mark.parametrize("inline", [False, True], ids=["after-the-response", "on-the-path"])
async def test_an_observing_output_filter_still_judges_the_whole_answer(
    start_proxy: ProxyFactory, inline: bool
) -> None:
    model = HalfThenRest()
    observer = {**DENY, "mode": "observe", "observe_inline": inline}
    async with raw_server(model) as (_, url):
        proxy = await start_proxy({"filters": [observer]}, upstream=url)
        assert await _ask(proxy.url, model) == ANSWER  # observed, never changed
        await proxy.settle()
    assert model.relayed_early == [False]
    decisions = {"filter": "deny", "stage": "output", "mode": "observe", "action": "block"}
    assert proxy.value("taxmeter_filter_decisions_total", **decisions) == 1


async def test_the_variant_decides_whether_an_answer_is_read(start_proxy: ProxyFactory) -> None:
    model = HalfThenRest()
    variants = {"judged": {"weight": 50}, "unjudged": {"weight": 50, "disable": ["deny"]}}
    async with raw_server(model) as (_, url):
        config = {**CHOOSABLE, "filters": [DENY], "variants": variants}
        proxy = await start_proxy(config, upstream=url)
        unjudged = await _ask(proxy.url, model, variant_headers("unjudged"))
        judged = orjson.loads(await _ask(proxy.url, model, variant_headers("judged")))
    assert model.relayed_early == [True, False]
    assert unjudged == ANSWER
    assert judged["choices"][0]["finish_reason"] == "content_filter"


# A stream as no encoder of ours writes it: CRLF lines, no space after "data:",
# a comment, an id, spaces in the JSON, a usage chunk, and the events cut mid-line.
STREAM = (
    b": keep-alive\r\n\r\n"
    b'id: 1\r\ndata:{ "id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
    b' "choices":[{"index":0,"delta":{"role":"assistant","content":"caf\\u00e9"},'
    b'"finish_reason":null}]}\r\n\r\n'
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":" secret  word"},"finish_reason":null}]}\n\n'
    b'data: {"choices":[{"index":0,"delta":{"content":" \\"[DONE]\\""},"finish_reason":null}]}\n\n'
    b'data: {"choices":[{"index":0,"delta":{"content":"!"},"finish_reason" : null}]}\n\n'
    b'data: {"choices":[{"index":0,"delta":{"content":"?"},"finish_reason":null}]}\n\n'
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n'
    b"data: [DONE]\n\n"
)


def _events(stream: bytes) -> list[bytes]:
    return [piece + b"\n\n" for piece in stream.removesuffix(b"\n\n").split(b"\n\n")]


@pytest.mark.parametrize("filters", [[], [PROMPT_ONLY]], ids=["none", "input-only"])
@pytest.mark.parametrize("cut", ["anywhere", "per-event"])
async def test_a_stream_no_stream_filter_reads_is_relayed_byte_for_byte(
    start_proxy: ProxyFactory, filters: list[dict[str, Any]], cut: str
) -> None:
    # Cut mid-line and mid-CRLF, or one read per event (as model servers write).
    pieces = (
        [STREAM[i : i + 37] for i in range(0, len(STREAM), 37)]
        if cut == "anywhere"
        else _events(STREAM)
    )
    assert b"".join(pieces) == STREAM

    async def stream(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        for piece in pieces:
            writer.write(b"%x\r\n%b\r\n" % (len(piece), piece))
            await writer.drain()
            await asyncio.sleep(0.002)
        writer.write(b"0\r\n\r\n")
        return True

    async with raw_server(stream) as (_, url):
        proxy = await start_proxy({"filters": filters}, upstream=url)
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{proxy.url}/v1/chat/completions", json={**CHAT, "stream": True}) as got,
        ):
            assert await got.read() == STREAM
    labels = {"route": "chat_completions", "variant": "default"}
    assert proxy.value("taxmeter_completion_tokens_total", **labels) == 2
    assert proxy.value("taxmeter_time_to_first_token_seconds_count", **labels) == 1


async def test_a_stream_filter_still_judges_the_stream(start_proxy: ProxyFactory) -> None:
    async def stream(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Content-Length: %d\r\n\r\n%b" % (len(STREAM), STREAM)
        )
        return True

    deny = {**DENY, "stages": ["stream"]}
    async with raw_server(stream) as (_, url):
        proxy = await start_proxy({"filters": [deny]}, upstream=url)
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{proxy.url}/v1/chat/completions", json={**CHAT, "stream": True}) as got,
        ):
            body = await got.read()
    assert b"secret" not in body
    assert b'"finish_reason":"content_filter"' in body


# The same keys as JSON may also spell them: "\u0075sage" is "usage" to any parser.
ESCAPED_KEYS = (
    b'data: {"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n'
    b'data: {"choices":[{"index":0,"delta":{},"\\u0066inish_reason":"content_filter"}],'
    b'"\\u0075sage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n'
    b"data: [DONE]\n\n"
)


@pytest.mark.parametrize("cut", ["whole", "per-event"])
async def test_a_relayed_stream_reads_usage_and_endings_however_their_keys_are_spelled(
    start_proxy: ProxyFactory, cut: str
) -> None:
    pieces = [ESCAPED_KEYS] if cut == "whole" else _events(ESCAPED_KEYS)

    async def stream(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        for piece in pieces:
            writer.write(b"%x\r\n%b\r\n" % (len(piece), piece))
            await writer.drain()
            await asyncio.sleep(0.002)
        writer.write(b"0\r\n\r\n")
        return True

    async with raw_server(stream) as (_, url):
        proxy = await start_proxy({}, upstream=url)
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{proxy.url}/v1/chat/completions", json={**CHAT, "stream": True}) as got,
        ):
            assert await got.read() == ESCAPED_KEYS
    labels = {"route": "chat_completions", "variant": "default"}
    assert proxy.value("taxmeter_completion_tokens_total", **labels) == 2
    assert proxy.value("taxmeter_capability_events_total", **labels, event="content_filter") == 1


# A Messages stream whose every key a relay tests for is spelled with escapes.
ESCAPED_MESSAGES = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","type":"message",'
    b'"role":"assistant","model":"m","content":[],"stop_reason":null,'
    b'"usage":{"input_tokens":3,"output_tokens":1}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"hi"}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b'event: message_delta\ndata: {"type":"message\\u005fdelta","delta":'
    b'{"\\u0073top_reason":"refusal"},"\\u0075sage":{"output_tokens":2}}\n\n'
    b'event: message_stop\ndata: {"type":"message\\u005fstop"}\n\n'
)


async def test_a_relayed_messages_stream_reads_escaped_keys_and_its_escaped_end(
    start_proxy: ProxyFactory,
) -> None:
    async def stream(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Content-Length: %d\r\n\r\n%b" % (len(ESCAPED_MESSAGES), ESCAPED_MESSAGES)
        )
        return True

    request = {"model": "m", "max_tokens": 8, "stream": True,
               "messages": [{"role": "user", "content": "hello"}]}  # fmt: skip
    async with raw_server(stream) as (_, url):
        proxy = await start_proxy({}, upstream=url)
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{proxy.url}/v1/messages", json=request) as got,
        ):
            # Its own end, read as one: nothing added after it.
            assert await got.read() == ESCAPED_MESSAGES
    labels = {"route": "messages", "variant": "default"}
    assert proxy.value("taxmeter_completion_tokens_total", **labels) == 2
    assert proxy.value("taxmeter_capability_events_total", **labels, event="content_filter") == 1
