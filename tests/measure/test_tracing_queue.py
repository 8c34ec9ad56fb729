"""The exporter's queue is bounded: when the receiver is slow, spans are dropped and counted."""

from __future__ import annotations

import asyncio

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

from proxy.measure.tracing_export import Batching, SpanExport
from proxy.measure.tracing_senders import HttpSender
from proxy.measure.tracing_setup import TracingSetup, resource_and_scope
from tests.loopback import ProxyFactory, ServerFactory, post_json
from tests.otlp_receiver import Received

CHAT = {"model": "m", "messages": [{"role": "user", "content": "echo: hello"}]}


async def test_a_full_queue_drops_and_counts_and_never_slows_requests(
    start_proxy: ProxyFactory, aiohttp_server: ServerFactory
) -> None:
    received = Received()
    release = asyncio.Event()

    async def slow_traces(request: web.Request) -> web.Response:
        await release.wait()  # a collector that does not answer yet
        received.add(ExportTraceServiceRequest.FromString(await request.read()))
        return web.Response(body=ExportTraceServiceResponse().SerializeToString())

    app = web.Application()
    app.router.add_post("/v1/traces", slow_traces)
    collector = await aiohttp_server(app)
    sender = HttpSender(endpoint=str(collector.make_url("/v1/traces")))
    # Two spans a request (server, upstream): the queue holds two requests.
    batching = Batching(max_export_batch_size=2, max_queue_size=4, schedule_delay_s=600)
    export = SpanExport(sender, resource_and_scope(Resource.create()), batching)
    proxy = await start_proxy(tracing=TracingSetup(export, ParentBased(ALWAYS_ON)))
    for _ in range(8):
        status, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
        assert status == 200  # answered while the exporter waits on the collector
    await asyncio.sleep(0.1)  # the last request recorded
    assert export.dropped_spans >= 4
    release.set()
    assert await asyncio.to_thread(export.flush, 10)
    assert export.sent_spans + export.dropped_spans == 8 * 2
    assert len(received.spans) == export.sent_spans
    # The same counts, scraped.
    assert proxy.value("taxmeter_trace_spans_dropped_total") == export.dropped_spans
    assert proxy.value("taxmeter_trace_spans_exported_total") == export.sent_spans
    assert proxy.value("taxmeter_trace_exports_failed_total") == 0
    await asyncio.to_thread(export.shutdown)
