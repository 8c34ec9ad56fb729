"""A real OTLP/HTTP trace receiver on loopback: what a collector would get, decoded."""

from __future__ import annotations

import asyncio
import threading
import time

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.loopback import ServerFactory


class Received:
    """Export requests a receiver got; thread-safe (the gRPC receiver serves in threads)."""

    def __init__(self) -> None:
        self.exports: list[ExportTraceServiceRequest] = []
        self._lock = threading.Lock()

    def add(self, export: ExportTraceServiceRequest) -> None:
        with self._lock:
            self.exports.append(export)

    @property
    def spans(self) -> list[Span]:
        with self._lock:
            return [
                span
                for export in self.exports
                for resource_spans in export.resource_spans
                for scope_spans in resource_spans.scope_spans
                for span in scope_spans.spans
            ]

    @property
    def batches(self) -> list[int]:
        """Spans per export request."""
        with self._lock:
            exports = list(self.exports)
        return [sum(len(s.spans) for r in e.resource_spans for s in r.scope_spans) for e in exports]

    def servers(self) -> list[Span]:
        return [s for s in self.spans if s.kind == Span.SPAN_KIND_SERVER]

    def clear(self) -> None:
        with self._lock:
            self.exports.clear()

    def wait_for_servers(self, count: int, timeout_s: float = 10.0) -> list[Span]:
        """Block until ``count`` server spans (requests) arrived; all spans so far."""
        deadline = time.monotonic() + timeout_s
        while len(self.servers()) < count:
            assert time.monotonic() < deadline, f"{len(self.servers())} of {count} traces arrived"
            time.sleep(0.01)
        return self.spans

    async def spans_of(self, count: int) -> list[Span]:
        """Every span received once ``count`` requests' traces arrived."""
        return await asyncio.to_thread(self.wait_for_servers, count)


async def http_receiver(aiohttp_server: ServerFactory, received: Received) -> str:
    """A receiver of OTLP/HTTP exports on loopback; its base URL."""

    async def traces(request: web.Request) -> web.Response:
        received.add(ExportTraceServiceRequest.FromString(await request.read()))
        body = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=body, content_type="application/x-protobuf")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", traces)
    collector = await aiohttp_server(app)
    return str(collector.make_url("")).rstrip("/")
