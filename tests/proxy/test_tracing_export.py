"""`taxmeter serve` exports its traces over OTLP/HTTP, configured by the OTEL_* variables."""

from __future__ import annotations

import asyncio
import os
import sys

import aiohttp
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from proxy.tracing import tracer_provider_from_env
from tests.proxy.conftest import ServerFactory
from tests.proxy.test_serve_cli import read_announcement


async def test_serve_exports_one_trace_over_otlp_http(aiohttp_server: ServerFactory) -> None:
    received: list[tuple[str, Span]] = []
    server_span_seen = asyncio.Event()

    async def traces(request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest.FromString(await request.read())
        for resource_spans in export.resource_spans:
            service = next(
                a.value.string_value
                for a in resource_spans.resource.attributes
                if a.key == "service.name"
            )
            for scope_spans in resource_spans.scope_spans:
                received.extend((service, span) for span in scope_spans.spans)
        if any(s.kind == Span.SPAN_KIND_SERVER for _, s in received):
            server_span_seen.set()
        body = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=body, content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    collector = await aiohttp_server(app)
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "OTEL_EXPORTER_OTLP_ENDPOINT": str(collector.make_url("")).rstrip("/"),
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_SERVICE_NAME": "taxmeter-test",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "serve",
        "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        where = await read_announcement(process)
        body = {"model": "mock-model", "messages": [{"role": "user", "content": "echo: hi"}]}
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{where['proxy']}/v1/chat/completions", json=body) as response,
        ):
            assert response.status == 200
        await asyncio.wait_for(server_span_seen.wait(), timeout=10)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert {service for service, _ in received} == {"taxmeter-test"}
    spans = [span for _, span in received]
    assert len({span.trace_id for span in spans}) == 1
    (server,) = [s for s in spans if s.kind == Span.SPAN_KIND_SERVER]
    (upstream,) = [s for s in spans if s.kind == Span.SPAN_KIND_CLIENT]
    guards = [s for s in spans if s.name.startswith("apply_guardrail ")]
    assert server.name == "chat chat_completions"
    assert upstream.name == "chat mock-model"
    assert {g.name for g in guards} == {"apply_guardrail denylist", "apply_guardrail pii"}
    for child in (upstream, *guards):
        assert child.parent_span_id == server.span_id


def test_tracing_is_off_unless_an_exporter_is_configured() -> None:
    assert tracer_provider_from_env({}) is None
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert tracer_provider_from_env({**endpoint, "OTEL_SDK_DISABLED": "true"}) is None
    assert tracer_provider_from_env({**endpoint, "OTEL_TRACES_EXPORTER": "none"}) is None
    for protocol in ("http/protobuf", "grpc"):
        provider = tracer_provider_from_env({**endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol})
        assert provider is not None
        provider.shutdown()
