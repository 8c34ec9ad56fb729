"""What a client can make tracing hold or write: bounded whatever it sends.

A client chooses the request's model name and body; a collector that is slow
or gone keeps the exporter's queue full. Neither may let the spans carry
unbounded client text or the queue keep unbounded bytes alive, and a
client's sampled flag must not force a trace on an operator who refused it.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind

from proxy.measure import genai_attrs as A
from proxy.measure.span_attrs import MAX_ATTRIBUTE_CHARS
from proxy.measure.tracing_export import Batching, SpanExport
from proxy.measure.tracing_senders import HttpSender
from proxy.measure.tracing_setup import TracingSetup, resource_and_scope
from tests.loopback import ProxyFactory, ServerFactory, post_json
from tests.otlp_receiver import Traced
from tests.surfaces.conftest import Scripted

CHAT = {"model": "m", "messages": [{"role": "user", "content": "echo: hello"}]}
JUDGED = {"filters": [{"name": "denylist", "type": "denylist", "params": {"words": ["sesame"]}}]}


async def test_a_clients_model_name_reaches_spans_bounded(
    start_proxy: ProxyFactory, traced: Traced
) -> None:
    # A judged prompt is parsed: its model is the span's. The mock model echoes it.
    proxy = await start_proxy(JUDGED, tracing=traced.setup)
    huge = "m" * 200_000  # a model name is the client's text, of any length
    await post_json(f"{proxy.url}/v1/chat/completions", {**CHAT, "model": huge})
    spans = await traced.spans()
    (server,) = [s for s in spans if s.kind == SpanKind.SERVER]
    (upstream,) = [s for s in spans if s.kind == SpanKind.CLIENT]
    model = server.attributes[A.REQUEST_MODEL]
    assert model == huge[:MAX_ATTRIBUTE_CHARS]  # cut, as the SDK's length limit cuts
    assert upstream.attributes[A.REQUEST_MODEL] == model
    assert upstream.name == f"chat {model}"
    assert server.attributes[A.RESPONSE_MODEL] == model  # the upstream's, cut alike
    for span in spans:
        for value in span.attributes.values():
            assert not isinstance(value, str) or len(value) <= MAX_ATTRIBUTE_CHARS


async def _stalled_export(
    aiohttp_server: ServerFactory, release: asyncio.Event, batching: Batching
) -> SpanExport:
    """An exporter whose collector does not answer until ``release``."""

    async def slow_traces(request: web.Request) -> web.Response:
        await release.wait()
        await request.read()
        return web.Response(body=ExportTraceServiceResponse().SerializeToString())

    app = web.Application(client_max_size=1 << 30)
    app.router.add_post("/v1/traces", slow_traces)
    collector = await aiohttp_server(app)
    sender = HttpSender(endpoint=str(collector.make_url("/v1/traces")))
    return SpanExport(sender, resource_and_scope(Resource.create()), batching)


async def test_the_queue_is_bounded_in_the_bytes_it_keeps(
    start_proxy: ProxyFactory, aiohttp_server: ServerFactory, scripted: Scripted
) -> None:
    release = asyncio.Event()
    # Room for many requests' spans, but for only one of these answers' bytes.
    batching = Batching(max_queue_size=2048, max_queue_bytes=1 << 20, schedule_delay_s=600)
    export = await _stalled_export(aiohttp_server, release, batching)
    setup = TracingSetup(export, ParentBased(ALWAYS_ON))
    proxy = await start_proxy(upstream=scripted.url, tracing=setup)
    # No output filter: each answer is relayed unparsed, and a copy kept for its span.
    scripted.answer = {
        "id": "c",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "x" * 700_000}}],
    }
    for _ in range(4):
        status, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
        assert status == 200
    await asyncio.sleep(0.1)  # the last request recorded
    assert export.dropped_spans >= 3 * 2  # three requests' spans (server and upstream)
    release.set()
    assert await asyncio.to_thread(export.flush, 10)
    assert export.sent_spans + export.dropped_spans == 4 * 2
    await asyncio.to_thread(export.shutdown)


async def test_the_queue_keeps_no_parsed_answer(
    start_proxy: ProxyFactory, aiohttp_server: ServerFactory
) -> None:
    release = asyncio.Event()
    export = await _stalled_export(aiohttp_server, release, Batching(schedule_delay_s=600))
    proxy = await start_proxy(JUDGED, tracing=TracingSetup(export, ParentBased(ALWAYS_ON)))
    status, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
    assert status == 200
    await asyncio.sleep(0.1)
    queued = [done for done, _ in export._queue]
    assert len(queued) == 1
    # The answer was parsed to judge it; its facts are taken, the document let go.
    (done,) = queued
    assert done.response is not None
    assert done.response.get(A.RESPONSE_FINISH_REASONS) == ["stop"]
    assert "_body" not in done.response
    release.set()
    await asyncio.to_thread(export.shutdown)


async def test_an_operator_can_refuse_a_clients_sampled_flag(
    start_proxy: ProxyFactory, traced: Traced
) -> None:
    # traceidratio, not parentbased_traceidratio: the client's flag is not obeyed.
    setup = TracingSetup(traced.setup.export, TraceIdRatioBased(0.0))
    proxy = await start_proxy(tracing=setup)
    sampled = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    status, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", CHAT, sampled)
    assert status == 200
    assert await traced.nothing_more() == []
    # The parent-based sampler, the SDK's default, obeys it (what the docs warn of).
    obeying = TracingSetup(traced.setup.export, ParentBased(TraceIdRatioBased(0.0)))
    proxy = await start_proxy(tracing=obeying)
    await post_json(f"{proxy.url}/v1/chat/completions", CHAT, sampled)
    assert len(await traced.spans()) == 2


async def test_malformed_or_huge_trace_headers_start_a_fresh_trace(
    start_proxy: ProxyFactory, traced: Traced
) -> None:
    proxy = await start_proxy(tracing=traced.setup)
    good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    attempts = [
        {"traceparent": "00-" + "f" * 8000},  # one field near aiohttp's 8190-byte bound
        {"traceparent": "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
        {"traceparent": "00-00000000000000000000000000000000-00f067aa0ba902b7-01"},
        {"traceparent": good.upper()},
        {"traceparent": good, "tracestate": ",".join(f"k{i}=v" for i in range(1000))},
        {"baggage": ",".join(f"k{i}={'v' * 20}" for i in range(300))},
    ]
    for headers in attempts:
        status, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", CHAT, headers)
        assert status == 200
    spans = await traced.spans(len(attempts))
    servers = [s for s in spans if s.kind == SpanKind.SERVER]
    assert len(servers) == len(attempts)
    # None of the malformed ones is continued; a tracestate over W3C's 32 members is
    # dropped (not carried into the spans), whatever its length.
    assert sum(s.parent is not None for s in servers) == 1
    assert all(not span.trace_state for span in traced.received.spans)
