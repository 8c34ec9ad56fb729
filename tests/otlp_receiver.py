"""A real OTLP/HTTP trace receiver on loopback: what a collector would get, decoded."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.proto.trace.v1.trace_pb2 import Status as Status_
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import SpanKind

from proxy.measure.tracing_export import Batching, SpanExport
from proxy.measure.tracing_senders import HttpSender
from proxy.measure.tracing_setup import TracingSetup, resource_and_scope
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


@dataclass(frozen=True)
class Ids:
    trace_id: int
    span_id: int


@dataclass(frozen=True)
class Event:
    name: str
    timestamp: int


@dataclass(frozen=True)
class Status:
    is_ok: bool


@dataclass(frozen=True)
class Decoded:
    """A received span, read the way the SDK's ReadableSpan reads (what the tests assert on)."""

    name: str
    kind: SpanKind
    context: Ids
    parent: Ids | None
    start_time: int
    end_time: int
    attributes: dict[str, Any]
    events: list[Event]
    status: Status

    @classmethod
    def of(cls, span: Span) -> Decoded:
        trace_id = int.from_bytes(span.trace_id, "big")
        parent = None
        if span.parent_span_id:
            parent = Ids(trace_id, int.from_bytes(span.parent_span_id, "big"))
        return cls(
            name=span.name,
            kind=SPAN_KINDS[span.kind],
            context=Ids(trace_id, int.from_bytes(span.span_id, "big")),
            parent=parent,
            start_time=span.start_time_unix_nano,
            end_time=span.end_time_unix_nano,
            attributes={a.key: python_value(a.value) for a in span.attributes},
            events=[Event(e.name, e.time_unix_nano) for e in span.events],
            status=Status(span.status.code != Status_.STATUS_CODE_ERROR),
        )


SPAN_KINDS = {
    Span.SPAN_KIND_INTERNAL: SpanKind.INTERNAL,
    Span.SPAN_KIND_SERVER: SpanKind.SERVER,
    Span.SPAN_KIND_CLIENT: SpanKind.CLIENT,
}


def python_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(python_value(v) for v in value.array_value.values)
    return getattr(value, kind) if kind else None


class Traced:
    """Tracing into a receiver on loopback, every request sampled (unless the client said not)."""

    def __init__(self, setup: TracingSetup, received: Received) -> None:
        self.setup = setup
        self.received = received

    async def spans(self, requests: int = 1) -> list[Decoded]:
        """Every span received, once ``requests`` traces arrived."""
        return [Decoded.of(s) for s in await self.received.spans_of(requests)]

    async def nothing_more(self) -> list[Decoded]:
        """Every span received after a moment and a flush (to see that none came)."""
        await asyncio.sleep(0.05)
        assert await asyncio.to_thread(self.setup.export.flush, 10)
        return [Decoded.of(s) for s in self.received.spans]

    def clear(self) -> None:
        self.received.clear()


@pytest.fixture
async def traced(aiohttp_server: ServerFactory) -> AsyncIterator[Traced]:
    received = Received()
    url = await http_receiver(aiohttp_server, received)
    sender = HttpSender(endpoint=f"{url}/v1/traces")
    export = SpanExport(
        sender, resource_and_scope(Resource.create()), Batching(schedule_delay_s=0.02)
    )
    setup = TracingSetup(export, ParentBased(ALWAYS_ON))
    yield Traced(setup, received)
    await asyncio.to_thread(setup.shutdown)
