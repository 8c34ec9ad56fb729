"""The stream stage over real sockets: judged tokens, blocks, redactions, errors, TTFT."""

from __future__ import annotations

import asyncio
import os
import statistics
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.sim.model_server import MOCK_STATS
from tests.loopback import ProxyFactory, RunningProxy, ServerFactory

ROUTE = {"route": "chat_completions", "variant": "default"}
Script = list[bytes | float]


def chunk(content: str | None = None, finish: str | None = None, index: int = 0) -> bytes:
    delta = {} if content is None else {"content": content}
    event = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(event) + b"\n\n"


DONE = b"data: [DONE]\n\n"


@pytest.fixture
def scripted(aiohttp_server: ServerFactory) -> Callable[[Script], Awaitable[str]]:
    """An upstream that answers chat completions with a scripted byte stream
    (bytes are written as they are; a float is a pause in seconds)."""

    async def start(script: Script) -> str:
        async def stream(request: web.Request) -> web.StreamResponse:
            await request.read()
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for step in script:
                if isinstance(step, float):
                    await asyncio.sleep(step)
                else:
                    await response.write(step)
            await response.write_eof()
            return response

        app = web.Application()
        app.router.add_post("/v1/chat/completions", stream)
        server = await aiohttp_server(app)
        return str(server.make_url("")).rstrip("/")

    return start


async def stream_text(
    proxy: RunningProxy, content: str = "hi", headers: dict[str, str] | None = None
) -> tuple[str, list[str | None], list[dict[str, Any]]]:
    """Stream a chat completion with a plain client: (text, finish reasons, error events)."""
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": content}]}
    text, finishes, errors = "", [], []
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{proxy.url}/v1/chat/completions", json=body, headers=headers) as response,
    ):
        assert response.status == 200
        async for line in response.content:
            if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                continue
            event = orjson.loads(line[6:])
            if "error" in event:
                errors.append(event["error"])
                continue
            for choice in event["choices"]:
                text += choice["delta"].get("content") or ""
                finishes.append(choice["finish_reason"])
    return text, finishes, errors


def stream_filter(type_: str, params: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"name": "f", "type": type_, "stages": ["stream"], "params": params, **fields}


async def test_openai_client_streams_with_stream_filters_on(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy(
        {"filters": [stream_filter("denylist", {"words": ["forbidden"]}),
                     {"name": "pii", "type": "pii", "stages": ["stream"]}]}
    )  # fmt: skip
    async with openai.AsyncOpenAI(base_url=f"{proxy.url}/v1", api_key="x") as client:
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "echo: one two at 10.0.0.1 three"}],
            stream=True,
        )  # fmt: skip
        parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(parts) == "one two at [IPV4] three"
    assert proxy.value("taxmeter_filter_duration_seconds_count", filter="pii", stage="stream",
                       variant="default") == 1  # fmt: skip
    assert proxy.value("taxmeter_filter_decisions_total", filter="pii", stage="stream",
                       mode="enforce", action="redact") == 1  # fmt: skip
    assert proxy.value("taxmeter_stream_holdback_seconds_count", filter="pii",
                       variant="default") == 1  # fmt: skip


async def test_a_block_mid_stream_ends_it_and_stops_the_model(
    start_proxy: ProxyFactory, model: TestServer
) -> None:
    proxy = await start_proxy({"filters": [stream_filter("denylist", {"words": ["secret"]})]})
    stats = model.app[MOCK_STATS]
    words = " ".join(f"w{i}" for i in range(40))
    text, finishes, _ = await stream_text(
        proxy, f"echo: alpha beta secret {words}", {"x-mock-tokens-per-s": "50"}
    )
    blocked_at = asyncio.get_running_loop().time()
    assert text == "alpha beta"
    assert "secret" not in text
    assert finishes[-1] == "content_filter"
    async with asyncio.timeout(0.1):  # the model server stops within 100 ms
        while stats.active_streams:  # noqa: ASYNC110 - the state lives in another server
            await asyncio.sleep(0.002)
    assert asyncio.get_running_loop().time() - blocked_at < 0.1
    assert stats.streams_cancelled == 1
    assert proxy.value("taxmeter_requests_total", **ROUTE, outcome="blocked") == 1


async def test_a_redaction_split_across_chunks_is_still_redacted(
    start_proxy: ProxyFactory, scripted: Callable[[Script], Awaitable[str]]
) -> None:
    url = await scripted([
        chunk("write to jane@exa"), 0.01, chunk("mple.com"), 0.01, chunk(" today"), 0.01,
        chunk(None, "stop"), DONE,
    ])  # fmt: skip
    proxy = await start_proxy(
        {"filters": [stream_filter("pii", {}, stream={"holdback_chars": 32})]}, upstream=url
    )
    text, finishes, _ = await stream_text(proxy)
    assert text == "write to [EMAIL] today"
    assert finishes[-1] == "stop"


async def test_without_holdback_a_split_redaction_comes_too_late(
    start_proxy: ProxyFactory, scripted: Callable[[Script], Awaitable[str]]
) -> None:
    """Holdback 0 sends text as soon as it is judged: the trade-off holdback exists for."""
    url = await scripted([chunk("mail a@b"), 0.01, chunk(".org now"), chunk(None, "stop"), DONE])
    proxy = await start_proxy(
        {"filters": [stream_filter("pii", {}, stream={"holdback_chars": 0})]}, upstream=url
    )
    text, _, _ = await stream_text(proxy)
    # "a@b" alone is no e-mail address, so it went out before ".org" arrived.
    assert text == "mail a@b[EMAIL] now"


async def test_events_split_and_merged_over_the_wire_are_parsed(
    start_proxy: ProxyFactory, scripted: Callable[[Script], Awaitable[str]]
) -> None:
    whole = chunk("Hello") + b": keep-alive\n\n" + chunk(" wor") + chunk("ld")
    url = await scripted([
        whole[:7], 0.005, whole[7:30], 0.005, whole[30:], 0.005,
        chunk("!").replace(b"\n\n", b"\r\n\r\n"), chunk(None, "stop") + DONE,
    ])  # fmt: skip
    proxy = await start_proxy({"filters": [stream_filter("denylist", {"words": ["nope"]})]},
                              upstream=url)  # fmt: skip
    text, finishes, _ = await stream_text(proxy)
    assert text == "Hello world!"
    assert finishes == [None, None, None, None, "stop"]


@pytest.mark.parametrize(
    ("script", "text", "code", "outcome", "read_timeout"),
    [
        # A stream that simply ends (no [DONE], EOF) is not an error: what arrived is sent.
        ([chunk("partial"), 0.01], "partial", None, "ok", None),
        ([chunk("a"), b"data: {not json\n\n"], "a", "upstream_malformed", "upstream_error", None),
        ([chunk("a"), 5.0], "a", "upstream_timeout", "timeout", 0.2),
    ],
)
async def test_upstream_failures_mid_stream_end_with_an_error_event(
    start_proxy: ProxyFactory,
    scripted: Callable[[Script], Awaitable[str]],
    script: Script,
    text: str,
    code: str | None,
    outcome: str,
    read_timeout: float | None,
) -> None:
    url = await scripted(script)
    config: dict[str, Any] = {"filters": [stream_filter("denylist", {"words": ["nope"]})]}
    if read_timeout:
        config["upstream"] = {"read_timeout_s": read_timeout}
    proxy = await start_proxy(config, upstream=url)
    got, _, errors = await stream_text(proxy)
    assert got == text
    assert [e["code"] for e in errors] == ([code] if code else [])
    await proxy.settle()
    assert proxy.value("taxmeter_requests_total", **ROUTE, outcome=outcome) == 1


async def test_upstream_reset_mid_stream_ends_with_an_error_event(
    start_proxy: ProxyFactory, raw_server: Any
) -> None:
    async def reset_mid_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        first = chunk("hello")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked"
            b"\r\n\r\n" + f"{len(first):x}\r\n".encode() + first + b"\r\n"
        )
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.transport.abort()

    server = await raw_server(reset_mid_stream)
    proxy = await start_proxy(upstream=server.url)
    text, _, errors = await stream_text(proxy)
    assert text == "hello"
    assert [e["code"] for e in errors] in (["upstream_malformed"], ["upstream_reset"])
    assert proxy.value("taxmeter_requests_total", **ROUTE, outcome="upstream_error") == 1


async def ttft_taxes(proxy: RunningProxy, n: int) -> tuple[float, float]:
    """Median TTFT tax and median TTFT over n streams, from the metrics.

    Medians, not means: on a shared host an odd stream's timer overruns, and
    one overrun would move a mean of ten past any honest margin.
    """
    names = ("ttft_tax_seconds", "time_to_first_token_seconds")
    taxes: list[float] = []
    ttfts: list[float] = []
    for _ in range(n):
        before = [proxy.value(f"taxmeter_{k}_sum", **ROUTE) for k in names]
        await stream_text(proxy, "echo: a b", {"x-mock-ttft-ms": "100"})
        after = [proxy.value(f"taxmeter_{k}_sum", **ROUTE) for k in names]
        taxes.append(after[0] - before[0])
        ttfts.append(after[1] - before[1])
    assert proxy.value("taxmeter_ttft_tax_seconds_count", **ROUTE) == n
    return statistics.median(taxes), statistics.median(ttfts)


async def test_a_20ms_input_filter_is_a_20ms_ttft_tax(start_proxy: ProxyFactory) -> None:
    slow = {"name": "slow", "type": "synthetic", "stages": ["input"], "params": {"wall_ms": 20}}
    proxy = await start_proxy({"filters": [slow]})
    tax, ttft = await ttft_taxes(proxy, 10)
    assert abs(tax - 0.020) < 0.0015, tax
    assert abs(ttft - 0.120) < 0.010, ttft


async def test_a_parallel_input_filter_adds_about_nothing_to_ttft(
    start_proxy: ProxyFactory,
) -> None:
    slow = {"name": "slow", "type": "synthetic", "stages": ["input"], "parallel": True,
            "params": {"wall_ms": 20}}  # fmt: skip
    proxy = await start_proxy({"filters": [slow]})
    tax, ttft = await ttft_taxes(proxy, 10)
    assert tax < 0.003, tax
    assert abs(ttft - 0.100) < 0.010, ttft
    # It still ran, and its cost is still reported.
    spent = proxy.value("taxmeter_filter_duration_seconds_sum", filter="slow", stage="input",
                        variant="default")  # fmt: skip
    assert 0.19 < spent < 0.25


async def test_a_parallel_filter_that_blocks_cancels_the_model_call(
    start_proxy: ProxyFactory, model: TestServer
) -> None:
    deny = {"name": "deny", "type": "denylist", "stages": ["input"], "parallel": True,
            "params": {"words": ["forbidden"]}}  # fmt: skip
    proxy = await start_proxy({"filters": [deny]})
    stats = model.app[MOCK_STATS]
    async with aiohttp.ClientSession() as session, session.post(
        f"{proxy.url}/v1/chat/completions",
        json={"model": "m", "stream": True,
              "messages": [{"role": "user", "content": "the forbidden word"}]},
        headers={"x-mock-ttft-ms": "300"},
    ) as response:  # fmt: skip
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "content_filter"
    # Past the model's 300 ms to the first token: had the call gone on, it would have streamed.
    await asyncio.sleep(0.4)
    assert stats.active_streams == 0
    assert stats.streams_finished == 0


async def test_a_slow_parallel_filter_is_charged_only_for_the_wait(
    start_proxy: ProxyFactory,
) -> None:
    slow = {"name": "slow", "type": "synthetic", "stages": ["input"], "parallel": True,
            "params": {"wall_ms": 60}}  # fmt: skip
    proxy = await start_proxy({"filters": [slow]})
    tax, _ = await ttft_taxes(proxy, 5)
    # The model's first token came at 5 ms + 100 ms; the filter finished at 60 ms: no wait.
    assert tax < 0.003
    body = {"model": "m", "messages": [{"role": "user", "content": "echo: x"}]}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{proxy.url}/v1/chat/completions", json=body, headers={"x-mock-ttft-ms": "10"}
        ) as response,
    ):
        assert response.status == 200
    # Non-streamed, answered after ~15 ms: the last ~45 ms of the filter held the reply.
    tax_sum = proxy.value("taxmeter_latency_tax_seconds_sum", **ROUTE)
    overhead_sum = proxy.value("taxmeter_proxy_overhead_seconds_sum", **ROUTE)
    assert 0.035 < tax_sum - overhead_sum < 0.06


async def test_output_filters_can_judge_the_whole_stream_at_its_end(
    start_proxy: ProxyFactory,
) -> None:
    end = {"name": "f", "type": "denylist", "stages": ["output"], "at_stream_end": True,
           "params": {"words": ["alpha beta"]}}  # fmt: skip
    proxy = await start_proxy({"filters": [end]})
    text, finishes, _ = await stream_text(proxy, "echo: alpha beta gamma")
    assert text == "alpha beta gamma"  # already sent: it cannot be recalled
    assert finishes[-1] == "content_filter"
    assert proxy.value("taxmeter_requests_total", **ROUTE, outcome="blocked") == 1


async def test_server_timing_trailer_when_the_client_asks(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy({"filters": [stream_filter("denylist", {"words": ["nope"]})]})
    host, port = proxy.server.host, proxy.server.port
    body = orjson.dumps({"model": "m", "stream": True,
                         "messages": [{"role": "user", "content": "echo: a b"}]})  # fmt: skip
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
        + b"\r\n\r\n" + body
    )  # fmt: skip
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert b"Trailer: Server-Timing" in head
    assert b"Transfer-Encoding: chunked" in head
    tail = rest[rest.rindex(b"\r\n0\r\n") + 2 :]
    assert tail.startswith(b"0\r\nServer-Timing: ")
    assert tail.endswith(b"\r\n\r\n")
    trailer = tail.decode()
    for part in ("filter-f;desc=stream", "ttft;dur=", "upstream-ttft;dur=",
                 "holdback-f;dur=", "tax;dur="):  # fmt: skip
        assert part in trailer, trailer
    assert rest.count(b"data: [DONE]") == 1


async def test_no_tasks_or_connections_are_left_behind(
    start_proxy: ProxyFactory, scripted: Callable[[Script], Awaitable[str]]
) -> None:
    url = await scripted([chunk("a"), 0.01, chunk(" b"), 0.3, chunk(None, "stop"), DONE])
    proxy = await start_proxy(
        {"filters": [stream_filter("denylist", {"words": ["b"]})],
         "upstream": {"read_timeout_s": 5}}, upstream=url,
    )  # fmt: skip
    for _ in range(3):  # warm up: pools and caches
        await stream_text(proxy)
    tasks_before = len(asyncio.all_tasks())
    fds_before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        text, finishes, _ = await stream_text(proxy)
        assert (text, finishes[-1]) == ("a", "content_filter")
    for _ in range(20):  # clients that leave mid-stream
        async with aiohttp.ClientSession() as session:
            response = await session.post(
                f"{proxy.url}/v1/chat/completions",
                json={"model": "m", "stream": True, "messages": []},
            )
            await response.content.readline()
            response.close()
    await asyncio.sleep(0.1)
    assert len(asyncio.all_tasks()) <= tasks_before
    assert proxy.value("taxmeter_inflight_requests") == 0
    assert proxy.value("taxmeter_requests_total", **ROUTE, outcome="client_disconnect") == 20
    # Every upstream connection of a stopped stream was closed, none kept open.
    assert len(os.listdir("/proc/self/fd")) <= fds_before + 2


def judged_calls(proxy: RunningProxy, name: str = "f") -> float:
    return sum(
        proxy.value(
            "taxmeter_filter_decisions_total",
            filter=name,
            stage="stream",
            mode=mode,
            action="allow",
        )
        for mode in ("enforce", "observe")
    )


@pytest.mark.parametrize(
    ("policy", "calls"),
    [
        ({}, 5),  # every token: 5 content events, so nothing is left for the end
        ({"every_tokens": 2}, 3),  # after events 2 and 4, then the rest at the end
        ({"every_chars": 12}, 2),  # once 12 new characters arrived, then at the end
        ({"at_sentence_end": True}, 2),  # at "one. " and at the end
    ],
)
async def test_stream_filter_cadence(
    start_proxy: ProxyFactory,
    scripted: Callable[[Script], Awaitable[str]],
    policy: dict[str, Any],
    calls: int,
) -> None:
    script: Script = [chunk(t) for t in ("Sentence", " one.", " And", " then", " two")]
    url = await scripted([*script, chunk(None, "stop"), DONE])
    proxy = await start_proxy(
        {"filters": [stream_filter("denylist", {"words": ["nope"]}, stream=policy)]},
        upstream=url,
    )
    text, _, _ = await stream_text(proxy)
    assert text == "Sentence one. And then two"
    assert judged_calls(proxy) == calls


async def test_an_observing_stream_filter_holds_nothing_back(
    start_proxy: ProxyFactory, scripted: Callable[[Script], Awaitable[str]]
) -> None:
    url = await scripted([chunk("a secret"), chunk(" b"), chunk(None, "stop"), DONE])
    proxy = await start_proxy(
        {"filters": [stream_filter("denylist", {"words": ["secret"]}, mode="observe",
                                   stream={"holdback_chars": 100, "window_chars": 200})]},
        upstream=url,
    )  # fmt: skip
    text, finishes, _ = await stream_text(proxy)
    assert (text, finishes[-1]) == ("a secret b", "stop")
    await proxy.settle()
    assert proxy.value("taxmeter_filter_decisions_total", filter="f", stage="stream",
                       mode="observe", action="block") >= 1  # fmt: skip
    assert proxy.value("taxmeter_stream_holdback_seconds_count", filter="f",
                       variant="default") == 0  # fmt: skip


async def test_several_choices_stream_through_the_stage(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy({"filters": [{"name": "pii", "type": "pii", "stages": ["stream"]}]})
    async with openai.AsyncOpenAI(base_url=f"{proxy.url}/v1", api_key="x") as client:
        stream = await client.chat.completions.create(
            model="m", n=2, stream=True,
            messages=[{"role": "user", "content": "echo: call 555-123-4567 now"}],
        )  # fmt: skip
        texts: dict[int, str] = {0: "", 1: ""}
        finishes: dict[int, str | None] = {}
        async for c in stream:
            for choice in c.choices:
                texts[choice.index] += choice.delta.content or ""
                finishes[choice.index] = choice.finish_reason or finishes.get(choice.index)
    assert texts == {0: "call [PHONE] now", 1: "call [PHONE] now"}
    assert finishes == {0: "stop", 1: "stop"}


async def test_holdback_delays_tokens_and_is_measured(
    start_proxy: ProxyFactory, scripted: Callable[[Script], Awaitable[str]]
) -> None:
    url = await scripted(
        [chunk("0123456789"), 0.05, chunk("abcdefghij"), 0.05, chunk(None, "stop"), DONE]
    )
    proxy = await start_proxy(
        {"filters": [stream_filter("denylist", {"words": ["nope"]},
                                   stream={"holdback_chars": 15})]}, upstream=url,
    )  # fmt: skip
    await stream_text(proxy)
    # Holding back 15 characters, both pieces of 10 wait for the end of the stream:
    # the first ~100 ms, the second ~50 ms, a mean of ~75 ms.
    mean = proxy.value("taxmeter_stream_holdback_seconds_sum", filter="f", variant="default")
    assert 0.065 < mean < 0.09, mean
    assert proxy.value("taxmeter_ttft_tax_seconds_sum", **ROUTE) > 0.04


async def test_a_long_stream_keeps_only_the_window_and_still_redacts(
    start_proxy: ProxyFactory, scripted: Callable[[Script], Awaitable[str]]
) -> None:
    words = [f" w{i}" for i in range(3000)]
    words[2500:2502] = [" mail jane@exa", "mple.com"]
    url = await scripted([*(chunk(w) for w in words), chunk(None, "stop"), DONE])
    proxy = await start_proxy(
        {"filters": [stream_filter("pii", {}, stream={"window_chars": 64, "holdback_chars": 24})]},
        upstream=url,
    )
    text, finishes, _ = await stream_text(proxy)
    expected = "".join(words).replace("jane@example.com", "[EMAIL]")
    assert text == expected
    assert finishes[-1] == "stop"
