"""Traces: one span tree per request, written from its finished timeline, off the event loop.

On the request's path there is only propagation and the sampling decision:
:meth:`Tracing.begin` continues the client's W3C trace context
(``traceparent``, ``tracestate``, ``baggage``), chooses the ids of the server
span and of the upstream call's span and asks the configured sampler once;
:meth:`Tracing.inject` puts the upstream span's context in the upstream request, so
the model server's spans join the trace. When the request is recorded,
:meth:`Tracing.export` hands a sampled one to the exporter thread
(:mod:`proxy.measure.tracing_export`), which writes its spans as OTLP
protobuf (:mod:`proxy.measure.tracing_spans`) with the timeline's real marks
as their times, converted to the epoch by the timeline's one wall-clock
offset. No span object of the OpenTelemetry SDK is made: the SDK's sampler,
resource, propagators and exporters are used, its span pipeline is not.

Attribute names live in :mod:`proxy.measure.genai_attrs`. No prompt or completion
text is recorded unless ``telemetry.trace_content`` is true.
"""

from __future__ import annotations

from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    TraceFlags,
    get_current_span,
    set_span_in_context,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from yarl import URL

from proxy.measure import genai_attrs as A
from proxy.measure.served import Served
from proxy.measure.timeline import Breakdown
from proxy.measure.trace_start import TraceStart
from proxy.measure.tracing_finished import Finished
from proxy.measure.tracing_setup import TracingSetup

_NO_CONTEXT = Context()  # what extracting headers without trace context gives (never changed)


class Tracing:
    """Begins each request's trace and hands the sampled ones to the exporter (one per app)."""

    def __init__(self, setup: TracingSetup, upstream_url: str, content: bool) -> None:
        self._export = setup.export
        self._sampler = setup.sampler
        self._propagator = CompositePropagator(
            [TraceContextTextMapPropagator(), W3CBaggagePropagator()]
        )
        self._ids = RandomIdGenerator()
        self._content = content
        url = URL(upstream_url)
        self._server: dict[str, Any] = {
            A.SERVER_ADDRESS: url.host or "",
            A.SERVER_PORT: url.port or 0,
        }

    def begin(self, headers: CIMultiDictProxy[str], route: str, method: str) -> TraceStart:
        """At the request's start: continue the client's trace, or start one."""
        if "traceparent" in headers or "baggage" in headers:
            context = self._propagator.extract(headers)
        else:
            context = _NO_CONTEXT
        parent = get_current_span(context).get_span_context()
        trace_id = parent.trace_id if parent.is_valid else self._ids.generate_trace_id()
        operation = A.OPERATIONS.get(route)
        name = f"{operation} {route}" if operation else f"{method} {route}"
        result = self._sampler.should_sample(context, trace_id, name, SpanKind.SERVER)
        sampled = result.decision is Decision.RECORD_AND_SAMPLE
        ids = (self._ids.generate_span_id(), self._ids.generate_span_id())
        start = TraceStart(context, trace_id, ids, name, method, sampled)
        if sampled:
            if parent.is_valid:
                start.parent_span_id = parent.span_id
                start.parent_is_remote = parent.is_remote
            if result.trace_state is not None:
                start.trace_state = result.trace_state.to_header()
            if result.attributes:
                start.sampler_attributes = dict(result.attributes)
        return start

    def inject(self, start: TraceStart, headers: CIMultiDict[str]) -> None:
        """Put the upstream span's context (and the client's baggage) in the upstream headers."""
        if start.context is _NO_CONTEXT:
            # The propagators would write this one header: no client state, no baggage.
            flags = "01" if start.sampled else "00"
            span = f"{start.trace_id:032x}-{start.upstream_span_id:016x}"
            headers["traceparent"] = f"00-{span}-{flags}"
            return
        flags_ = TraceFlags(TraceFlags.SAMPLED if start.sampled else TraceFlags.DEFAULT)
        span_context = SpanContext(start.trace_id, start.upstream_span_id, False, flags_)
        upstream = set_span_in_context(NonRecordingSpan(span_context), start.context)
        self._propagator.inject(headers, upstream)

    def export(self, ex: Served, figures: Breakdown) -> str | None:
        """Hand the request's trace to the exporter; its trace id (hex) when it was sampled."""
        start = ex.trace
        if start is None or not start.sampled:
            return None
        self._export.put(Finished(ex, figures, self._content), self._server)
        return f"{start.trace_id:032x}"
