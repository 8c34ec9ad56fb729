"""Server-Timing: the header says what it covers, the trailer carries what the metrics record."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from tests.exchange.raw_http import Answer, durations, request_bytes, send_raw, server_timing
from tests.loopback import ProxyFactory, RunningProxy

ROUTE = {"route": "chat_completions", "variant": "default"}
PII = {"filters": [{"name": "pii", "type": "pii"}]}  # input, output and stream
NOPE = {"filters": [{"name": "f", "type": "denylist", "params": {"words": ["nope"]}}]}
TRAILERS = {"TE": "trailers"}
CHAT = "/v1/chat/completions"
# The request's figures as the metrics hold them: {Server-Timing entry: histogram}.
RECORDED = {
    "total": "taxmeter_request_duration_seconds",
    "upstream": "taxmeter_upstream_duration_seconds",
    "tax": "taxmeter_latency_tax_seconds",
    "overhead": "taxmeter_proxy_overhead_seconds",
}
STREAM_RECORDED = {
    "ttft": "taxmeter_time_to_first_token_seconds",
    "upstream-ttft": "taxmeter_upstream_time_to_first_token_seconds",
}


def chat(content: str, stream: bool = False, n: int = 1) -> bytes:
    messages = [{"role": "user", "content": content}]
    return orjson.dumps({"model": "m", "stream": stream, "messages": messages, "n": n})


async def recorded(proxy: RunningProxy) -> None:
    """Wait for the one request to be recorded (at its end, after its last byte)."""
    for _ in range(100):
        if proxy.value("taxmeter_request_duration_seconds_count", **ROUTE) == 1:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the request was not recorded")


def ms(proxy: RunningProxy, histogram: str, **labels: str) -> str:
    """A histogram's sum of one request, in milliseconds as Server-Timing writes them."""
    return f"{proxy.value(f'{histogram}_sum', **labels) * 1e3:.3f}"


def assert_trailer_is_what_was_recorded(proxy: RunningProxy, answer: Answer) -> dict[str, str]:
    assert answer.chunked
    assert answer.headers["Trailer"] == "Server-Timing"
    trailer = durations(answer.trailers["Server-Timing"])
    expected = {name: ms(proxy, metric, **ROUTE) for name, metric in RECORDED.items()}
    if "upstream" not in trailer:  # never reached the model: no upstream figure
        del expected["upstream"]
    if "ttft" in trailer:
        expected |= {name: ms(proxy, metric, **ROUTE) for name, metric in STREAM_RECORDED.items()}
    for name in trailer:
        if name.startswith("filter-"):
            filter_name, stage = name.removeprefix("filter-").split("/")
            labels = {"filter": filter_name, "stage": stage, "variant": "default"}
            expected[name] = ms(proxy, "taxmeter_filter_duration_seconds", **labels)
        elif name.startswith("holdback-"):
            labels = {"filter": name.removeprefix("holdback-"), "variant": "default"}
            expected[name] = ms(proxy, "taxmeter_stream_holdback_seconds", **labels)
    assert {k: trailer[k] for k in expected} == expected
    # The tax's two parts: what is not overhead is filter time (each rounded to 1 µs).
    filters_ms = float(trailer["tax"]) - float(trailer["overhead"])
    assert float(trailer["filters"]) == pytest.approx(filters_ms, abs=0.0015)
    return trailer


async def test_the_header_names_its_figures_as_taken_when_the_headers_were_written(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy(PII)
    # Two choices: the output filter is called once for each, and its entry is both.
    [answer] = await send_raw(proxy, request_bytes("POST", CHAT, chat("echo: a@b.org", n=2)))
    assert answer.status == 200
    assert len(orjson.loads(answer.body)["choices"]) == 2
    assert not answer.chunked  # no TE: trailers
    assert "Trailer" not in answer.headers
    entries = server_timing(answer.headers["Server-Timing"])
    assert set(entries) == {"filter-pii/input", "filter-pii/output", "upstream",
                            "tax-until-headers", "total-until-headers"}  # fmt: skip
    assert entries["tax-until-headers"]["desc"] == "tax until headers"
    assert entries["total-until-headers"]["desc"] == "time until headers"
    await recorded(proxy)
    # Final by then: the filters of a whole answer and the model's time ...
    assert entries["upstream"]["dur"] == ms(proxy, "taxmeter_upstream_duration_seconds", **ROUTE)
    for stage in ("input", "output"):
        labels = {"filter": "pii", "stage": stage, "variant": "default"}
        recorded_ms = ms(proxy, "taxmeter_filter_duration_seconds", **labels)
        assert entries[f"filter-pii/{stage}"]["dur"] == recorded_ms
    # ... and the tax and total only so far: the body was still to be written.
    for name, metric in (("tax", RECORDED["tax"]), ("total", RECORDED["total"])):
        so_far = float(entries[f"{name}-until-headers"]["dur"])
        assert 0 < so_far <= float(ms(proxy, metric, **ROUTE)), name


async def test_a_stream_s_header_has_the_model_s_time_to_its_headers_not_its_whole_time(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy(PII)
    body = chat("echo: a b c", stream=True)
    [answer] = await send_raw(proxy, request_bytes("POST", CHAT, body, TRAILERS))
    assert answer.status == 200
    header = durations(answer.headers["Server-Timing"])
    assert "upstream" not in header  # the model was still answering
    assert 0 < float(header["upstream-headers"]) < float(header["total-until-headers"])
    await recorded(proxy)
    trailer = assert_trailer_is_what_was_recorded(proxy, answer)
    assert float(header["upstream-headers"]) <= float(trailer["upstream"])


@pytest.mark.parametrize(
    ("config", "body"),
    [
        (PII, chat("echo: mail a@b.org")),  # read whole and judged
        ({}, chat("echo: hi")),  # no filter: relayed as it arrives
        (PII, chat("echo: mail a@b.org", stream=True)),  # a judged stream
    ],
    ids=["judged", "relayed", "streamed"],
)
async def test_the_trailer_carries_the_figures_the_metrics_recorded(
    start_proxy: ProxyFactory, config: dict[str, Any], body: bytes
) -> None:
    proxy = await start_proxy(config)
    [answer] = await send_raw(proxy, request_bytes("POST", CHAT, body, TRAILERS))
    assert answer.status == 200
    await recorded(proxy)
    trailer = assert_trailer_is_what_was_recorded(proxy, answer)
    assert {"total", "upstream", "tax", "filters", "overhead"} <= set(trailer)
    if b'"stream":true' in body:
        assert {"ttft", "upstream-ttft", "filter-pii/stream", "holdback-pii"} <= set(trailer)
        assert answer.body.rstrip().endswith(b"data: [DONE]")
    else:
        answer_text = orjson.loads(answer.body)["choices"][0]["message"]["content"]
        assert answer_text == ("mail [EMAIL]" if config else "hi")


async def test_a_20ms_filter_is_20ms_in_the_trailer_and_in_the_tax_s_filter_part(
    start_proxy: ProxyFactory,
) -> None:
    # Long enough that a unit slip of 0.1% shows in the third decimal.
    slow = {"name": "slow", "type": "synthetic", "stages": ["input"], "params": {"wall_ms": 20}}
    proxy = await start_proxy({"filters": [slow]})
    [answer] = await send_raw(proxy, request_bytes("POST", CHAT, chat("echo: hi"), TRAILERS))
    assert answer.status == 200
    await recorded(proxy)
    trailer = assert_trailer_is_what_was_recorded(proxy, answer)
    assert 20.0 <= float(trailer["filter-slow/input"]) <= float(trailer["filters"])


async def test_a_blocked_answer_has_a_tax_entry_and_its_trailer_the_final_figures(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy(NOPE)
    [answer] = await send_raw(proxy, request_bytes("POST", CHAT, chat("nope"), TRAILERS))
    assert answer.status == 400
    assert orjson.loads(answer.body)["error"]["code"] == "content_filter"
    header = durations(answer.headers["Server-Timing"])
    assert set(header) == {"filter-f/input", "tax-until-headers", "total-until-headers"}
    # Nothing reached the model: all the time so far is the proxy's and its filter's.
    assert header["tax-until-headers"] == header["total-until-headers"]
    assert float(header["tax-until-headers"]) > 0
    await recorded(proxy)
    trailer = assert_trailer_is_what_was_recorded(proxy, answer)
    assert "upstream" not in trailer
    assert trailer["tax"] == trailer["total"]


async def test_a_refused_request_has_a_tax_entry(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy(PII)
    [answer] = await send_raw(proxy, request_bytes("POST", CHAT, b"{not json", TRAILERS))
    assert answer.status == 400
    assert orjson.loads(answer.body)["error"]["code"] == "invalid_json"
    header = durations(answer.headers["Server-Timing"])
    assert set(header) == {"tax-until-headers", "total-until-headers"}
    await recorded(proxy)
    trailer = assert_trailer_is_what_was_recorded(proxy, answer)
    assert trailer["tax"] == trailer["total"]


async def test_no_trailer_unless_asked_over_http_1_1_and_the_connection_goes_on(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy(PII)
    body = chat("echo: hi")
    [old] = await send_raw(proxy, request_bytes("POST", CHAT, body, TRAILERS, version="1.0"))
    assert old.status == 200
    assert not old.chunked
    assert not old.trailers
    assert "Trailer" not in old.headers
    assert orjson.loads(old.body)["choices"][0]["message"]["content"] == "hi"
    # On one connection: a trailer, none (not asked), a trailer: each answer framed apart.
    answers = await send_raw(
        proxy,
        request_bytes("POST", CHAT, body, TRAILERS, close=False),
        request_bytes("POST", CHAT, body, close=False),
        request_bytes("POST", CHAT, body, TRAILERS),
    )
    assert [(a.chunked, "Server-Timing" in a.trailers) for a in answers] == [
        (True, True), (False, False), (True, True)
    ]  # fmt: skip
    for answer in answers:
        assert orjson.loads(answer.body)["choices"][0]["message"]["content"] == "hi"
