"""What an OTLP receiver gets, field by field, against the shape the SDK-built spans had.

``otlp_golden.json`` was captured from the OpenTelemetry SDK's span objects and
exporter (before taxmeter encoded its spans itself): names, kinds, parents,
flags, trace state, status, attribute keys in order with their values (floats
and ids by type), events, the resource and the scope; the server span's
``gen_ai.evaluation.result`` events came later, written by taxmeter alone
(the SDK's spans never had them). Times are checked by
their relations (each child inside its server span, events after their span's start,
the server span as long as ``taxmeter.total_s``), which hold on any run.
Regenerate with TAXMETER_WRITE_GOLDEN=1 only when the shape is meant to change.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestServer
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from proxy.measure import genai_attrs as A
from proxy.measure.tracing_setup import tracing_from_env
from tests.loopback import ProxyFactory, ServerFactory, echoed_headers, post_json
from tests.otlp_receiver import Received, http_receiver

GOLDEN = Path(__file__).with_name("otlp_golden.json")
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
ECHO_TRACE = "0af7651916cd43dd8448eb211c80319c"
FILTERS = {
    "telemetry": {"trace_content": True},
    "filters": [
        {"name": "deny", "type": "denylist", "params": {"words": ["forbidden"]}},
        {"name": "pii", "type": "pii", "stages": ["input", "output", "stream"]},
    ],
}
# Values that differ on every run: compared by their type.
_VARYING_KEYS = {A.REQUEST_ID, A.SERVER_PORT}
_VARYING_RESOURCE = {"telemetry.sdk.version", "service.instance.id"}


def _value(key: str, value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(key, v) for v in value.array_value.values]
    if kind == "double_value" or key in _VARYING_KEYS:
        return f"<{kind}>"
    return [kind, getattr(value, kind)] if kind else None


def _attributes(attributes: list[KeyValue]) -> list[Any]:
    return [[a.key, _value(a.key, a.value)] for a in attributes]


def _shape(span: Span, labels: dict[bytes, str]) -> dict[str, Any]:
    return {
        "name": span.name,
        "kind": Span.SpanKind.Name(span.kind),
        "span": labels.get(span.span_id, "child"),
        "parent": labels.get(span.parent_span_id, "?") if span.parent_span_id else "",
        "trace_state": span.trace_state,
        "flags": span.flags,
        "status": [span.HasField("status"), span.status.code, span.status.message],
        "attributes": _attributes(list(span.attributes)),
        "events": [[e.name, _attributes(list(e.attributes))] for e in span.events],
        "links": len(span.links),
        "dropped": [span.dropped_attributes_count, span.dropped_events_count],
    }


def _check_times(spans: list[Span]) -> None:
    (server,) = [s for s in spans if s.kind == Span.SPAN_KIND_SERVER]
    total = next(a.value.double_value for a in server.attributes if a.key == A.TOTAL_S)
    assert abs((server.end_time_unix_nano - server.start_time_unix_nano) / 1e9 - total) < 1e-6
    for span in spans:
        assert server.start_time_unix_nano <= span.start_time_unix_nano
        assert span.start_time_unix_nano <= span.end_time_unix_nano <= server.end_time_unix_nano
        for event in span.events:
            # Not within its own span: the upstream span ends less the loop's wait.
            assert span.start_time_unix_nano <= event.time_unix_nano <= server.end_time_unix_nano


def shape_of(received: Received) -> dict[str, Any]:
    """Everything but times and run-dependent values; traces in the order they ended."""
    (export, *_) = received.exports
    resource = export.resource_spans[0]
    scope = resource.scope_spans[0]
    traces: dict[bytes, list[Span]] = {}
    for span in received.spans:
        traces.setdefault(span.trace_id, []).append(span)
    shaped = []
    for spans in traces.values():
        _check_times(spans)
        (server,) = [s for s in spans if s.kind == Span.SPAN_KIND_SERVER]
        labels = {server.span_id: "server", bytes.fromhex(CLIENT_SPAN): "client"}
        shaped.append([_shape(span, labels) for span in spans])
    resource_attributes = [
        [a.key, "<varies>" if a.key in _VARYING_RESOURCE else a.value.string_value]
        for a in resource.resource.attributes
    ]
    return {
        "resource": [resource_attributes, resource.schema_url, len(export.resource_spans)],
        "scope": [scope.scope.name, scope.scope.version, len(scope.scope.attributes)],
        "scope_schema_url": scope.schema_url,
        "traces": shaped,
    }


@pytest.fixture
async def receiver(
    aiohttp_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> tuple[Received, dict[str, str]]:
    received = Received()
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": await http_receiver(aiohttp_server, received),
        "OTEL_BSP_SCHEDULE_DELAY": "20",
        "OTEL_SERVICE_NAME": "taxmeter-golden",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return received, env


async def test_what_a_receiver_gets_is_what_the_sdk_sent(
    start_proxy: ProxyFactory,
    echo_server: TestServer,
    receiver: tuple[Received, dict[str, str]],
) -> None:
    received, env = receiver
    tracing = tracing_from_env(env)
    assert tracing is not None
    proxy = await start_proxy(FILTERS, tracing=tracing)
    client = {
        "traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01",
        "tracestate": "vendor=x",
        "baggage": "tenant=acme",
    }
    email = {"model": "m", "messages": [{"role": "user", "content": "echo: hi bob@example.com"}]}
    status, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", email, client)
    assert status == 200
    await received.spans_of(1)
    stream = {**email, "stream": True}
    status, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", stream)
    assert status == 200
    await received.spans_of(2)
    forbidden = {"model": "m", "messages": [{"role": "user", "content": "forbidden"}]}
    status, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", forbidden)
    assert status == 400
    await received.spans_of(3)

    failing = await start_proxy(FILTERS, upstream="http://127.0.0.1:9", tracing=tracing)
    status, _, _ = await post_json(f"{failing.url}/v1/chat/completions", email)
    assert status == 502
    await received.spans_of(4)

    echo = str(echo_server.make_url("")).rstrip("/")
    echoing = await start_proxy(upstream=echo, tracing=tracing)
    client["traceparent"] = f"00-{ECHO_TRACE}-{CLIENT_SPAN}-01"
    status, _, raw = await post_json(f"{echoing.url}/v1/chat/completions", email, client)
    assert status == 200
    spans = await received.spans_of(5)
    # The upstream span is the one the model server was told to continue from.
    trace_id = bytes.fromhex(ECHO_TRACE)
    (sent,) = [s for s in spans if s.kind == Span.SPAN_KIND_CLIENT and s.trace_id == trace_id]
    traceparent = echoed_headers(orjson.loads(raw))["traceparent"]
    assert traceparent == f"00-{ECHO_TRACE}-{sent.span_id.hex()}-01"
    assert spans[0].trace_id.hex() == CLIENT_TRACE

    shape = shape_of(received)
    if os.environ.get("TAXMETER_WRITE_GOLDEN") == "1":
        GOLDEN.write_bytes(orjson.dumps(shape, option=orjson.OPT_INDENT_2) + b"\n")
    assert shape == orjson.loads(GOLDEN.read_bytes())
