"""The proxy's spans in the SDK's InMemorySpanExporter, as SDK ReadableSpans.

The proxy writes OTLP bytes itself (no SDK span objects): this sender reads
each export request the exporter thread sends back into the SDK's
``ReadableSpan`` (events and their attributes included) and hands them to an
``InMemorySpanExporter``, so tests assert on what the SDK's own tooling sees.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

from proxy.measure.tracing_export import Batching, SpanExport
from proxy.measure.tracing_setup import TracingSetup, resource_and_scope
from tests.otlp_receiver import SPAN_KINDS, python_value


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: python_value(pair.value) for pair in pairs if isinstance(pair, KeyValue)}


def readable(span: Span, resource: Resource) -> ReadableSpan:
    trace_id = int.from_bytes(span.trace_id, "big")
    flags = TraceFlags(TraceFlags.SAMPLED)
    parent = None
    if span.parent_span_id:
        parent = SpanContext(trace_id, int.from_bytes(span.parent_span_id, "big"), False, flags)
    code = StatusCode.ERROR if span.status.code == 2 else StatusCode.UNSET
    return ReadableSpan(
        name=span.name,
        context=SpanContext(trace_id, int.from_bytes(span.span_id, "big"), False, flags),
        parent=parent,
        resource=resource,
        attributes=_attributes(span.attributes),
        events=[Event(e.name, _attributes(e.attributes), e.time_unix_nano) for e in span.events],
        kind=SPAN_KINDS[span.kind],
        status=Status(code),
        start_time=span.start_time_unix_nano,
        end_time=span.end_time_unix_nano,
    )


class InMemorySender:
    """A sender (:class:`proxy.measure.tracing_export.Sender`) into an InMemorySpanExporter."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.exporter = exporter

    def send(self, payload: bytes, spans: int) -> bool:
        export = ExportTraceServiceRequest.FromString(payload)
        for resource_spans in export.resource_spans:
            resource = Resource(_attributes(resource_spans.resource.attributes))
            for scope_spans in resource_spans.scope_spans:
                self.exporter.export([readable(s, resource) for s in scope_spans.spans])
        return True

    def shutdown(self) -> None:
        self.exporter.shutdown()


class InMemory:
    """Tracing into an InMemorySpanExporter, every request sampled."""

    def __init__(self, setup: TracingSetup, exporter: InMemorySpanExporter) -> None:
        self.setup = setup
        self.exporter = exporter

    def _servers(self) -> list[ReadableSpan]:
        spans = self.exporter.get_finished_spans()
        return [s for s in spans if s.kind == SpanKind.SERVER]

    def _wait(self, requests: int, timeout_s: float) -> tuple[ReadableSpan, ...]:
        deadline = time.monotonic() + timeout_s
        while len(self._servers()) < requests:
            assert time.monotonic() < deadline, f"{len(self._servers())} of {requests} traces"
            time.sleep(0.01)
        return self.exporter.get_finished_spans()

    async def spans(self, requests: int = 1) -> tuple[ReadableSpan, ...]:
        """Every span exported, once ``requests`` traces arrived."""
        return await asyncio.to_thread(self._wait, requests, 10.0)

    async def server_spans(self, requests: int = 1) -> list[ReadableSpan]:
        await self.spans(requests)
        return self._servers()

    def clear(self) -> None:
        self.exporter.clear()


@pytest.fixture
async def in_memory() -> AsyncIterator[InMemory]:
    exporter = InMemorySpanExporter()
    export = SpanExport(
        InMemorySender(exporter),
        resource_and_scope(Resource.create()),
        Batching(schedule_delay_s=0.02),
    )
    setup = TracingSetup(export, ParentBased(ALWAYS_ON))
    yield InMemory(setup, exporter)
    await asyncio.to_thread(setup.shutdown)
