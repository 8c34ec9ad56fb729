"""Each request's capability record, over real sockets: /stats columns and counters.

Streams (judged, blocked, relayed untouched) and whole answers; the model's
usage read where the client got it; a finish reason the model server itself
set to content_filter counted even in a stream no filter reads.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
from aiohttp import web

from proxy.measure.stats import COLUMNS, merge
from tests.loopback import ProxyFactory, RunningProxy, ServerFactory, post_json

CHAT = "/v1/chat/completions"


def chat(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": content}], **extra}


async def stats(proxy: RunningProxy) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{proxy.metrics_url}/stats") as response,
    ):
        document: dict[str, Any] = await response.json()
        return document


def rows(document: dict[str, Any], variant: str = "default") -> list[dict[str, Any]]:
    samples = document["variants"][variant]["samples"]
    columns = zip(*samples.values(), strict=True)
    return [dict(zip(samples, values, strict=True)) for values in columns]


def record(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["outcome"], row["redacted"], row["content_filter"], row["completion_tokens"])


async def test_streams_and_whole_answers_record_what_the_client_got(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy(
        {
            "filters": [
                {"name": "pii", "type": "pii", "stages": ["input", "output", "stream"]},
                {"name": "cut", "type": "denylist", "stages": ["stream", "output"],
                 "params": {"patterns": ["secretword"]}},
            ]
        }
    )  # fmt: skip
    usage = {"stream_options": {"include_usage": True}}
    sent = [
        chat("hello", stream=True, **usage),  # a judged stream, its usage asked for
        chat("hello", stream=True),  # no usage: tokens unknown
        chat("echo: one secretword two", stream=True, **usage),  # blocked mid-stream
        chat("echo: one secretword"),  # a whole answer withheld
        chat("write to a@b.org"),  # redacted prompt
    ]
    for body in sent:
        status, _, _ = await post_json(f"{proxy.url}{CHAT}", body)
        assert status == 200
    await proxy.settle()
    got = [record(r) for r in rows(await stats(proxy))]
    assert got == [
        ("ok", False, False, 16),
        ("ok", False, False, None),
        ("blocked", False, True, None),  # the stream was cut before its usage came
        ("blocked", False, True, 2),  # the model made two tokens; the client got none
        ("ok", True, False, 16),
    ]
    assert all(isinstance(r["filter_cpu_seconds"], float) for r in rows(await stats(proxy)))

    def events(event: str) -> float:
        return proxy.value(
            "taxmeter_capability_events_total",
            route="chat_completions", variant="default", event=event,
        )  # fmt: skip

    assert (events("redacted"), events("content_filter"), events("usage_known")) == (1, 2, 3)
    tokens = proxy.value(
        "taxmeter_completion_tokens_total", route="chat_completions", variant="default"
    )
    assert tokens == 16 + 2 + 16


async def test_a_relayed_stream_still_tells_the_model_servers_own_content_filter(
    start_proxy: ProxyFactory, aiohttp_server: ServerFactory
) -> None:
    """No filter reads the stream (input only), so it is relayed event by event:
    its finish reason and usage are still read, cheaply, from the events."""

    async def filtered_stream(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        head = {"id": "c1", "object": "chat.completion.chunk", "model": "m"}
        for choice, more in [
            ({"index": 0, "delta": {"content": "partial"}, "finish_reason": None}, {}),
            ({"index": 0, "delta": {}, "finish_reason": "content_filter"}, {}),
            (None, {"usage": {"prompt_tokens": 3, "completion_tokens": 1}}),
        ]:
            chunk = {**head, "choices": [] if choice is None else [choice], **more}
            await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post(CHAT, filtered_stream)
    upstream = await aiohttp_server(app)
    proxy = await start_proxy(
        {"filters": [{"name": "pii", "type": "pii", "stages": ["input"]}]},
        upstream=str(upstream.make_url("")).rstrip("/"),
    )
    status, _, body = await post_json(f"{proxy.url}{CHAT}", chat("hi", stream=True))
    assert status == 200
    assert b'"content_filter"' in body  # relayed as it came
    await proxy.settle()
    assert [record(r) for r in rows(await stats(proxy))] == [("ok", False, True, 1)]


def test_merge_keeps_the_columns_and_reads_a_worker_without_them() -> None:
    new = {
        "reservoir_size": 5,
        "variants": {
            "all": {
                "weight": 1.0, "requests": 1, "ablates": None,
                "samples": {c: ["chat_completions" if c == "route" else 1] for c in COLUMNS},
            },
            "without_pii": {
                "weight": 1.0, "requests": 0, "ablates": "pii",
                "samples": {c: [] for c in COLUMNS},
            },
        },
        "filters": {},
    }  # fmt: skip
    old_columns = COLUMNS[:6]  # a worker of a release before the capability columns
    old = {
        "reservoir_size": 5,
        "variants": {
            "all": {
                "weight": 1.0, "requests": 2,
                "samples": {c: ["chat_completions" if c == "route" else 2] * 2
                            for c in old_columns},
            }
        },
        "filters": {},
    }  # fmt: skip
    merged = merge([new, old])
    samples = merged["variants"]["all"]["samples"]
    assert list(samples) == list(COLUMNS)
    assert samples["completion_tokens"] == [1, None, None]
    assert samples["latency_tax_seconds"] == [1, 2, 2]
    assert merged["variants"]["without_pii"]["ablates"] == "pii"
    assert merged["variants"]["all"]["ablates"] is None
