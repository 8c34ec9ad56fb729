"""Traces: one span tree per request, built from its finished timeline.

On the request's path there is only propagation: :meth:`Tracing.begin`
continues the client's W3C trace context (``traceparent``, ``tracestate``,
``baggage``), chooses the ids of the server span and of the upstream call's
span and asks the sampler once; :func:`inject` puts the upstream span's
context in the upstream request, so the model server's spans join the trace.
The spans themselves are built at the end (:meth:`Tracing.export`, called
from the handler's one recording place) with the timeline's real marks as
their start and end times, converted to the epoch by the timeline's one
wall-clock offset. Tree::

    SERVER   "chat chat_completions"      received .. client last byte
    ├── INTERNAL "apply_guardrail NAME"   each filter call (start .. end)
    ├── CLIENT   "chat MODEL"             upstream sent .. upstream last byte
    └── INTERNAL "stream holdback"        upstream first content .. client first content

Attribute names live in :mod:`proxy.measure.genai_attrs`. No prompt or completion
text is recorded unless ``telemetry.trace_content`` is true.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.trace import Tracer, TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
    format_trace_id,
    get_current_span,
    set_span_in_context,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from yarl import URL

from proxy.config.checks import ConfigError
from proxy.measure import genai_attrs as A
from proxy.measure.served import Served
from proxy.measure.span_attrs import (
    add_content,
    parse_json,
    request_facts,
    response_facts,
    server_attributes,
)
from proxy.measure.timeline import NS_PER_S, Breakdown, Timeline
from proxy.measure.trace_start import TraceStart

PROPAGATOR = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
# Outcomes that are the server's failure (5xx): the span's status is ERROR.
_SERVER_FAILURES = frozenset({"upstream_error", "timeout"})


class _PresetIds(IdGenerator):
    """Hands out the ids chosen at the request's start, once each; random otherwise.

    Spans are created after the fact, but the upstream span's id went out in
    the upstream request's ``traceparent`` while the request was running.
    """

    def __init__(self, inner: IdGenerator) -> None:
        self.inner = inner
        self.trace_id: int | None = None
        self.span_id: int | None = None

    def generate_span_id(self) -> int:
        span_id, self.span_id = self.span_id, None
        return self.inner.generate_span_id() if span_id is None else span_id

    def generate_trace_id(self) -> int:
        trace_id, self.trace_id = self.trace_id, None
        return self.inner.generate_trace_id() if trace_id is None else trace_id

    def is_trace_id_random(self) -> bool:
        return self.inner.is_trace_id_random()


def inject(start: TraceStart, headers: CIMultiDict[str]) -> None:
    """Put the upstream span's context (and the client's baggage) in the upstream headers."""
    flags = TraceFlags(TraceFlags.SAMPLED if start.sampled else TraceFlags.DEFAULT)
    span_context = SpanContext(start.trace_id, start.upstream_span_id, False, flags)
    PROPAGATOR.inject(headers, set_span_in_context(NonRecordingSpan(span_context), start.context))


class Tracing:
    """Builds the span trees of finished requests on one provider (built once per app)."""

    def __init__(self, provider: TracerProvider, upstream_url: str, content: bool) -> None:
        tracer = provider.get_tracer("taxmeter")
        assert isinstance(tracer, Tracer)
        if not isinstance(tracer.id_generator, _PresetIds):
            tracer.id_generator = _PresetIds(tracer.id_generator)
        self._ids: _PresetIds = tracer.id_generator
        self._tracer = tracer
        self._sampler = provider.sampler
        self._content = content
        url = URL(upstream_url)
        self._server = {A.SERVER_ADDRESS: url.host or "", A.SERVER_PORT: url.port or 0}

    def begin(self, headers: CIMultiDictProxy[str], route: str, method: str) -> TraceStart:
        """At the request's start: continue the client's trace, or start one."""
        context = PROPAGATOR.extract(headers)
        parent = get_current_span(context).get_span_context()
        trace_id = parent.trace_id if parent.is_valid else self._ids.inner.generate_trace_id()
        operation = A.OPERATIONS.get(route)
        name = f"{operation} {route}" if operation else f"{method} {route}"
        result = self._sampler.should_sample(context, trace_id, name, SpanKind.SERVER)
        sampled = result.decision is Decision.RECORD_AND_SAMPLE
        return TraceStart(context, trace_id, self._ids.inner, name, method, sampled)

    def export(self, ex: Served, figures: Breakdown) -> str | None:
        """Build the request's span tree; its trace id (hex) when it was sampled."""
        start = ex.trace
        if start is None or not start.sampled:
            return None
        tl = ex.timeline
        end_ns = tl.client_last_byte_ns
        if end_ns is None:
            end_ns = tl.received_ns + round(figures.total * NS_PER_S)
        self._ids.trace_id, self._ids.span_id = start.trace_id, start.server_span_id
        server = self._tracer.start_span(
            start.name, start.context, SpanKind.SERVER, start_time=tl.epoch_ns(tl.received_ns)
        )
        self._ids.trace_id = self._ids.span_id = None
        if not server.is_recording():
            return None
        request = request_facts(ex.body if ex.request_raw is None else parse_json(ex.request_raw))
        response = response_facts(ex)
        server.set_attributes(server_attributes(ex, figures, start, request, response))
        if self._content:
            add_content(server, ex, response)
        if ex.outcome in _SERVER_FAILURES:
            server.set_status(StatusCode.ERROR)
        parent = set_span_in_context(server, start.context)
        for call in tl.filter_calls:
            span = self._tracer.start_span(
                f"{A.GUARDRAIL_OPERATION} {call.filter}",
                parent,
                start_time=tl.epoch_ns(call.start_ns),
                attributes={
                    A.OPERATION_NAME: A.GUARDRAIL_OPERATION,
                    A.GUARDRAIL_NAME: call.filter,
                    A.GUARDRAIL_STAGE: call.stage,
                    A.GUARDRAIL_MODE: call.mode,
                    A.GUARDRAIL_ACTION: call.action,
                    A.FILTER_CRITICAL: call.critical,
                },
            )
            if call.action in ("error", "timeout"):
                span.set_attribute(A.ERROR_TYPE, call.action)
                span.set_status(StatusCode.ERROR)
            span.end(tl.epoch_ns(call.end_ns))
        interval = tl.upstream_interval()
        if interval is not None:
            self._upstream_span(ex, figures, start, parent, request, interval)
        _holdback_span(self._tracer, tl, figures, parent)
        server.end(tl.epoch_ns(end_ns))
        return format_trace_id(start.trace_id)

    def _upstream_span(
        self,
        ex: Served,
        figures: Breakdown,
        start: TraceStart,
        parent: Context,
        request: dict[str, Any],
        interval: tuple[int, int],
    ) -> None:
        tl = ex.timeline
        operation = A.OPERATIONS.get(ex.route)
        model = request.get(A.REQUEST_MODEL)
        name = f"{operation} {model}" if operation and model else operation or start.method
        attributes: dict[str, Any] = {**request, **self._server}
        if operation:
            attributes[A.OPERATION_NAME] = operation
        if ex.upstream_status:
            attributes[A.HTTP_STATUS] = ex.upstream_status
        if figures.upstream_ttft is not None:
            attributes[A.UPSTREAM_TTFT_S] = figures.upstream_ttft
        self._ids.span_id = start.upstream_span_id
        span = self._tracer.start_span(
            name, parent, SpanKind.CLIENT, attributes, start_time=tl.epoch_ns(interval[0])
        )
        self._ids.span_id = None
        if tl.upstream_headers_ns is not None:
            span.add_event(A.EVENT_UPSTREAM_HEADERS, timestamp=tl.epoch_ns(tl.upstream_headers_ns))
        first = tl.upstream_first_content_ns or tl.upstream_first_byte_ns
        if ex.streamed and first is not None:
            span.add_event(A.EVENT_FIRST_TOKEN, timestamp=tl.epoch_ns(first))
        if ex.outcome in _SERVER_FAILURES:
            span.set_attribute(A.ERROR_TYPE, ex.outcome)
            span.set_status(StatusCode.ERROR)
        span.end(tl.epoch_ns(interval[1]))


def _holdback_span(tracer: Tracer, tl: Timeline, figures: Breakdown, parent: Context) -> None:
    first_in = tl.upstream_first_content_ns or tl.upstream_first_byte_ns
    first_out = tl.client_first_content_ns or tl.client_first_byte_ns
    if not figures.holdback or first_in is None or first_out is None or first_out < first_in:
        return
    attributes = {A.HOLDBACK_PREFIX + name: s for name, s in figures.holdback.items()}
    span = tracer.start_span(
        A.HOLDBACK_SPAN, parent, attributes=attributes, start_time=tl.epoch_ns(first_in)
    )
    span.add_event(A.EVENT_CLIENT_FIRST_TOKEN, timestamp=tl.epoch_ns(first_out))
    span.end(tl.epoch_ns(first_out))


# Spans per OTLP export unless OTEL_BSP_MAX_EXPORT_BATCH_SIZE says otherwise (the
# SDK's default is 512). The batch processor encodes a batch in pure Python on
# its thread, which holds the core and the GIL meanwhile: at 512 that held the
# event loop for about 10 ms at p99 with every request sampled, at 64 for about
# 5 ms at the same throughput (docs/benchmarks.md, README "What tracing costs").
EXPORT_BATCH_SPANS = 64


def tracer_provider_from_env(environ: Mapping[str, str]) -> TracerProvider | None:
    """The provider ``serve`` exports with, configured by the standard OTEL_* variables.

    None (tracing off, no work on the request path) unless
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``_TRACES_ENDPOINT``) or
    ``OTEL_TRACES_EXPORTER`` is set, and always when ``OTEL_SDK_DISABLED=true``.
    ``OTEL_TRACES_EXPORTER``: otlp (default), console or none;
    ``OTEL_EXPORTER_OTLP_PROTOCOL``: http/protobuf (default) or grpc. The SDK
    reads the rest itself: OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
    OTEL_TRACES_SAMPLER(_ARG), OTEL_BSP_*, the exporters' OTEL_EXPORTER_OTLP_*;
    only the export batch's default size is ours (:data:`EXPORT_BATCH_SPANS`).
    """
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporter_name = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if exporter_name == "none" or (not exporter_name and not endpoint):
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    exporter: SpanExporter
    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    elif exporter_name not in ("", "otlp"):
        raise ConfigError(
            "OTEL_TRACES_EXPORTER", f"expected otlp, console or none, got {exporter_name!r}"
        )
    else:
        protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
        )
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )

            exporter = GrpcExporter()
        elif protocol == "http/protobuf":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        else:
            raise ConfigError(
                "OTEL_EXPORTER_OTLP_PROTOCOL", f"expected http/protobuf or grpc, got {protocol!r}"
            )
    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "taxmeter"}))
    provider = TracerProvider(resource=resource)
    batch = None if "OTEL_BSP_MAX_EXPORT_BATCH_SIZE" in environ else EXPORT_BATCH_SPANS
    provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=batch))
    return provider
