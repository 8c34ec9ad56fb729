"""`taxmeter serve` exports its traces over OTLP (HTTP and gRPC), configured by OTEL_* variables."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent import futures

import aiohttp
import grpc
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from proxy.config.checks import ConfigError
from proxy.measure.tracing_setup import EXPORT_BATCH_SPANS, batching_from_env, tracing_from_env
from tests.loopback import ServerFactory
from tests.server.test_serve_cli import read_announcement


class Received:
    """Spans a receiver got, with their service name; thread-safe (gRPC serves in threads)."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, Span]] = []
        self.batches: list[int] = []  # spans per export
        self.server_span_seen = threading.Event()
        self._lock = threading.Lock()

    def add(self, export: ExportTraceServiceRequest) -> None:
        with self._lock:
            self.batches.append(sum(len(s.spans) for r in export.resource_spans
                                    for s in r.scope_spans))  # fmt: skip
            for resource_spans in export.resource_spans:
                service = next(
                    a.value.string_value
                    for a in resource_spans.resource.attributes
                    if a.key == "service.name"
                )
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend((service, span) for span in scope_spans.spans)
            if any(s.kind == Span.SPAN_KIND_SERVER for _, s in self.spans):
                self.server_span_seen.set()


async def http_receiver(aiohttp_server: ServerFactory, received: Received) -> str:
    async def traces(request: web.Request) -> web.Response:
        received.add(ExportTraceServiceRequest.FromString(await request.read()))
        body = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=body, content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    collector = await aiohttp_server(app)
    return str(collector.make_url("")).rstrip("/")


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(  # the generated service names it so
        self, request: ExportTraceServiceRequest, context: object
    ) -> ExportTraceServiceResponse:
        self.received.add(request)
        return ExportTraceServiceResponse()


@contextlib.contextmanager
def grpc_receiver(received: Received) -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    service = _TraceService(received)
    # The generated gRPC module has no annotations.
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(service, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


BODY = {"model": "mock-model", "messages": [{"role": "user", "content": "echo: hi"}]}


@contextlib.asynccontextmanager
async def serving(env: dict[str, str]) -> AsyncIterator[str]:
    """`taxmeter serve` on the embedded default; its URL. Stopped by SIGTERM (exit 0)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "serve",
        "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        yield (await read_announcement(process))["proxy"]
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def serve_one_request(endpoint: str, protocol: str, received: Received) -> None:
    """`taxmeter serve` exporting to ``endpoint``; one chat completion through it."""
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_SERVICE_NAME": "taxmeter-test",
    }
    async with serving(env) as url, aiohttp.ClientSession() as session:
        async with session.post(f"{url}/v1/chat/completions", json=BODY) as response:
            assert response.status == 200
        seen = await asyncio.to_thread(received.server_span_seen.wait, 10)
        assert seen, f"no server span arrived over {protocol}"


def assert_one_trace(received: Received) -> None:
    assert {service for service, _ in received.spans} == {"taxmeter-test"}
    spans = [span for _, span in received.spans]
    assert len({span.trace_id for span in spans}) == 1
    (server,) = [s for s in spans if s.kind == Span.SPAN_KIND_SERVER]
    (upstream,) = [s for s in spans if s.kind == Span.SPAN_KIND_CLIENT]
    guards = [s for s in spans if s.name.startswith("apply_guardrail ")]
    assert server.name == "chat chat_completions"
    assert upstream.name == "chat mock-model"
    assert {g.name for g in guards} == {"apply_guardrail denylist", "apply_guardrail pii"}
    for child in (upstream, *guards):
        assert child.parent_span_id == server.span_id


async def test_serve_exports_one_trace_over_otlp_http(aiohttp_server: ServerFactory) -> None:
    received = Received()
    endpoint = await http_receiver(aiohttp_server, received)
    await serve_one_request(endpoint, "http/protobuf", received)
    assert_one_trace(received)


async def test_serve_exports_one_trace_over_otlp_grpc() -> None:
    received = Received()
    with grpc_receiver(received) as endpoint:
        await serve_one_request(endpoint, "grpc", received)
    assert_one_trace(received)


async def test_exports_go_in_batches_and_sigterm_flushes_the_rest(
    aiohttp_server: ServerFactory,
) -> None:
    received = Received()
    endpoint = await http_receiver(aiohttp_server, received)
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "64",
        "OTEL_BSP_SCHEDULE_DELAY": "600000",  # no timed export: full batches, then SIGTERM
    }
    async with serving(env) as url, aiohttp.ClientSession() as session:
        for _ in range(60):  # 5 spans each: 3 filter calls, upstream, server
            async with session.post(f"{url}/v1/chat/completions", json=BODY) as response:
                assert response.status == 200
    # serving() ends with SIGTERM, which flushes what is left: every span arrived.
    assert len(received.spans) == 60 * 5
    assert received.batches == [64, 64, 64, 64, 44], received.batches
    assert batching_from_env({}).max_export_batch_size == EXPORT_BATCH_SPANS == 512


def test_tracing_is_off_unless_an_exporter_is_configured() -> None:
    assert tracing_from_env({}) is None
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert tracing_from_env({**endpoint, "OTEL_SDK_DISABLED": "true"}) is None
    assert tracing_from_env({**endpoint, "OTEL_TRACES_EXPORTER": "none"}) is None
    for protocol in ("http/protobuf", "grpc"):
        tracing = tracing_from_env({**endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol})
        assert tracing is not None
        tracing.shutdown()


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("OTEL_BSP_SCHEDULE_DELAY", "soon", "expected a positive whole number, got 'soon'"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "0", "expected a positive whole number, got '0'"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4096", "at most OTEL_BSP_MAX_QUEUE_SIZE (2048)"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "expected http/protobuf or grpc"),
        ("OTEL_TRACES_EXPORTER", "zipkin", "expected otlp, console or none"),
    ],
)
def test_bad_tracing_settings_are_named(name: str, value: str, says: str) -> None:
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", name: value}
    with pytest.raises(ConfigError) as raised:
        tracing_from_env(environ)
    assert raised.value.key == name
    assert says in str(raised.value)


def test_the_sampler_is_the_one_otel_traces_sampler_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    tracing = tracing_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert tracing is not None
    description = tracing.sampler.get_description()
    tracing.shutdown()
    assert description.startswith("ParentBased{root:TraceIdRatioBased{0.25}"), description
