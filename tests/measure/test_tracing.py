"""Traces: the span tree of a request, built from its timeline, and trace context propagation."""

from __future__ import annotations

import aiohttp
import orjson
from aiohttp.test_utils import TestServer
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id

from proxy.config.schema import parse_config
from proxy.measure import genai_attrs as A
from tests.loopback import ProxyFactory, echoed_headers, post_json
from tests.otlp_receiver import Decoded, Traced

CHAT = {"model": "m", "messages": [{"role": "user", "content": "echo: hello"}]}
SYNTHETIC_20MS = {
    "filters": [
        {"name": "slow", "type": "synthetic", "stages": ["input"], "params": {"wall_ms": 20}}
    ]
}
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


def by_kind(spans: list[Decoded], kind: SpanKind) -> list[Decoded]:
    return [s for s in spans if s.kind == kind]


def duration_s(span: Decoded) -> float:
    assert span.start_time is not None
    assert span.end_time is not None
    return (span.end_time - span.start_time) / 1e9


async def test_span_tree_with_real_times(
    start_proxy: ProxyFactory,
    traced: Traced,
) -> None:
    proxy = await start_proxy(SYNTHETIC_20MS, tracing=traced.setup)
    status, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
    assert status == 200
    spans = await traced.spans()
    assert len(spans) == 3
    (server,) = by_kind(spans, SpanKind.SERVER)
    (upstream,) = by_kind(spans, SpanKind.CLIENT)
    (guard,) = by_kind(spans, SpanKind.INTERNAL)
    assert server.name == "chat chat_completions"
    assert server.parent is None
    assert upstream.name == "chat m"
    assert guard.name == "apply_guardrail slow"
    for child in (upstream, guard):
        assert child.parent is not None
        assert child.parent.span_id == server.context.span_id
        assert child.context.trace_id == server.context.trace_id
    # The synthetic filter sleeps 20 ms (the loop's clock, cached per iteration,
    # may end it a little early); the sleep ended up to 3.4 ms late on a 2-core
    # host at load 2.4 (0.2 ms when idle). A span of two calls, or of the filter
    # and the model, would be 40 ms and more.
    assert 0.019 <= duration_s(guard) < 0.028
    assert guard.attributes is not None
    assert guard.attributes[A.GUARDRAIL_NAME] == "slow"
    assert guard.attributes[A.GUARDRAIL_STAGE] == "input"
    assert guard.attributes[A.GUARDRAIL_MODE] == "enforce"
    assert guard.attributes[A.GUARDRAIL_ACTION] == "allow"
    # Children lie within the server span, in the order they happened.
    assert server.start_time is not None
    assert server.end_time is not None
    assert guard.start_time is not None
    assert upstream.start_time is not None
    assert server.start_time <= guard.start_time < upstream.start_time
    assert upstream.end_time is not None
    assert upstream.end_time <= server.end_time

    attrs = server.attributes
    assert attrs is not None
    assert attrs[A.OPERATION_NAME] == "chat"
    assert attrs[A.REQUEST_MODEL] == "m"
    assert attrs[A.REQUEST_STREAM] is False
    assert attrs[A.RESPONSE_FINISH_REASONS] == ("stop",)
    assert isinstance(attrs[A.USAGE_INPUT_TOKENS], int)
    assert isinstance(attrs[A.USAGE_OUTPUT_TOKENS], int)
    assert attrs[A.VARIANT] == "default"
    assert attrs[A.ROUTE] == "chat_completions"
    assert attrs[A.OUTCOME] == "ok"
    assert attrs[A.HTTP_STATUS] == 200
    assert A.ERROR_TYPE not in attrs
    # The same figures as the metrics, and the span's length is the total.
    tax_sum = proxy.value(
        "taxmeter_latency_tax_seconds_sum", route="chat_completions", variant="default"
    )
    assert attrs[A.TAX_S] == tax_sum
    assert abs(duration_s(server) - float(attrs[A.TOTAL_S])) < 1e-6
    # The model server's span is exactly the upstream figure.
    assert abs(duration_s(upstream) - float(attrs[A.UPSTREAM_S])) < 1e-6
    # No prompt or completion text unless asked for.
    everything = orjson.dumps([dict(s.attributes or {}) for s in spans]).decode()
    assert "hello" not in everything


async def test_content_only_when_enabled_and_after_redaction(
    start_proxy: ProxyFactory,
    traced: Traced,
) -> None:
    config = {
        "telemetry": {"trace_content": True},
        "filters": [{"name": "pii", "type": "pii", "stages": ["input", "output"]}],
    }
    proxy = await start_proxy(config, tracing=traced.setup)
    body = {"model": "m", "messages": [{"role": "user", "content": "echo: hi bob@example.com"}]}
    status, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", body)
    assert status == 200
    (server,) = by_kind(await traced.spans(), SpanKind.SERVER)
    assert server.attributes is not None
    prompt = str(server.attributes[A.INPUT_MESSAGES])
    completion = str(server.attributes[A.OUTPUT_MESSAGES])
    assert "[EMAIL]" in prompt
    assert "bob@" not in prompt
    assert "[EMAIL]" in completion
    assert "bob@" not in completion


async def test_blocked_input_and_upstream_failure(
    start_proxy: ProxyFactory,
    traced: Traced,
) -> None:
    config = {"filters": [{"name": "deny", "type": "denylist", "params": {"words": ["forbidden"]}}]}
    proxy = await start_proxy(config, upstream="http://127.0.0.1:9", tracing=traced.setup)
    blocked = {"model": "m", "messages": [{"role": "user", "content": "forbidden"}]}
    status, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", blocked)
    assert status == 400
    spans = await traced.spans()
    assert not by_kind(spans, SpanKind.CLIENT)  # never reached the model server
    (server,) = by_kind(spans, SpanKind.SERVER)
    assert server.attributes is not None
    assert server.attributes[A.OUTCOME] == "blocked"
    (guard,) = by_kind(spans, SpanKind.INTERNAL)
    assert guard.attributes is not None
    assert guard.attributes[A.GUARDRAIL_ACTION] == "block"
    traced.clear()

    status, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
    assert status == 502
    spans = await traced.spans()
    (server,) = by_kind(spans, SpanKind.SERVER)
    (upstream,) = by_kind(spans, SpanKind.CLIENT)
    assert server.attributes is not None
    assert upstream.attributes is not None
    assert server.attributes[A.ERROR_TYPE] == "upstream_error"
    assert upstream.attributes[A.ERROR_TYPE] == "upstream_error"
    assert not server.status.is_ok


async def test_stream_has_first_token_event_and_holdback(
    start_proxy: ProxyFactory,
    traced: Traced,
) -> None:
    config = {"filters": [{"name": "pii", "type": "pii", "stages": ["stream"]}]}
    proxy = await start_proxy(config, tracing=traced.setup)
    body = {**CHAT, "messages": [{"role": "user", "content": "echo: a b c d"}], "stream": True}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{proxy.url}/v1/chat/completions", json=body) as response,
    ):
        assert response.status == 200
        await response.read()
    spans = await traced.spans()
    (server,) = by_kind(spans, SpanKind.SERVER)
    (upstream,) = by_kind(spans, SpanKind.CLIENT)
    assert server.attributes is not None
    assert server.attributes[A.REQUEST_STREAM] is True
    assert server.attributes[A.RESPONSE_FINISH_REASONS] == ("stop",)
    assert A.TTFT_TAX_S in server.attributes
    assert [e.name for e in upstream.events] == [A.EVENT_UPSTREAM_HEADERS, A.EVENT_FIRST_TOKEN]
    assert upstream.attributes is not None
    assert A.UPSTREAM_TTFT_S in upstream.attributes
    (holdback,) = [s for s in spans if s.name == A.HOLDBACK_SPAN]
    assert holdback.attributes is not None
    assert f"{A.HOLDBACK_PREFIX}pii" in holdback.attributes


async def test_client_context_is_continued_and_passed_upstream(
    start_proxy: ProxyFactory,
    echo_server: TestServer,
    traced: Traced,
) -> None:
    proxy = await start_proxy(
        upstream=str(echo_server.make_url("")).rstrip("/"), tracing=traced.setup
    )
    headers = {
        "traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01",
        "tracestate": "vendor=x",
        "baggage": "tenant=acme",
    }
    status, _, raw = await post_json(f"{proxy.url}/v1/chat/completions", CHAT, headers)
    assert status == 200
    seen = echoed_headers(orjson.loads(raw))
    spans = await traced.spans()
    (server,) = by_kind(spans, SpanKind.SERVER)
    (upstream,) = by_kind(spans, SpanKind.CLIENT)
    assert format_trace_id(server.context.trace_id) == CLIENT_TRACE
    assert server.parent is not None
    assert format_span_id(server.parent.span_id) == CLIENT_SPAN
    # The model server is told to continue from the upstream call's span.
    span_id = format_span_id(upstream.context.span_id)
    assert seen["traceparent"] == f"00-{CLIENT_TRACE}-{span_id}-01"
    assert seen["tracestate"] == "vendor=x"
    assert seen["baggage"] == "tenant=acme"


async def test_unsampled_client_trace_builds_no_spans(
    start_proxy: ProxyFactory,
    echo_server: TestServer,
    traced: Traced,
) -> None:
    proxy = await start_proxy(
        upstream=str(echo_server.make_url("")).rstrip("/"), tracing=traced.setup
    )
    headers = {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-00"}
    status, _, raw = await post_json(f"{proxy.url}/v1/chat/completions", CHAT, headers)
    assert status == 200
    assert await traced.nothing_more() == []
    traceparent = echoed_headers(orjson.loads(raw))["traceparent"]
    assert traceparent.startswith(f"00-{CLIENT_TRACE}-")
    assert traceparent.endswith("-00")


async def test_tracing_off_leaves_headers_alone(
    start_proxy: ProxyFactory, echo_server: TestServer
) -> None:
    proxy = await start_proxy(upstream=str(echo_server.make_url("")).rstrip("/"))
    status, _, raw = await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
    assert status == 200
    assert "traceparent" not in echoed_headers(orjson.loads(raw))
    given = {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"}
    status, _, raw = await post_json(f"{proxy.url}/v1/chat/completions", CHAT, given)
    assert echoed_headers(orjson.loads(raw))["traceparent"] == given["traceparent"]


async def test_exemplars_carry_the_trace_id(
    start_proxy: ProxyFactory,
    traced: Traced,
) -> None:
    proxy = await start_proxy(SYNTHETIC_20MS, tracing=traced.setup)
    status, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
    assert status == 200
    (server,) = by_kind(await traced.spans(), SpanKind.SERVER)
    trace_id = format_trace_id(server.context.trace_id)
    accept = {"Accept": "application/openmetrics-text; version=1.0.0"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{proxy.metrics_url}/metrics", headers=accept) as response,
    ):
        text = await response.text()
    exemplar = f'# {{trace_id="{trace_id}"}}'
    for name in (
        "taxmeter_request_duration_seconds_bucket",
        "taxmeter_latency_tax_seconds_bucket",
        "taxmeter_filter_duration_seconds_bucket",
    ):
        assert any(line.startswith(name) and exemplar in line for line in text.splitlines())
    # The classic text format carries none.
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{proxy.metrics_url}/metrics") as response,
    ):
        assert "trace_id" not in await response.text()


def test_trace_content_is_off_unless_enabled() -> None:
    assert parse_config({}).telemetry.trace_content is False
    enabled = parse_config({"telemetry": {"trace_content": True}}).telemetry
    assert enabled.trace_content is True
    assert enabled.metrics is True
