"""Sending encoded export requests: through the SDK's OTLP exporters, or to the console.

The SDK's exporters take span objects and encode them; these take the bytes
taxmeter wrote (:mod:`proxy.measure.tracing_wire`) and keep the rest of the
exporters: the OTEL_EXPORTER_OTLP_* endpoint, headers, certificates,
compression and timeout they read, their retries and backoff, and their logs.
"""

from __future__ import annotations

import sys
from typing import Any, cast

import orjson
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as _Grpc
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as _Http
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export import SpanExportResult


class HttpSender(_Http):
    """OTLP/HTTP (``http/protobuf``): the exporter's client posts the bytes as they are."""

    def send(self, payload: bytes, spans: int) -> bool:
        if self._shutdown:
            return False
        return bool(self._client.export(payload).success)


class GrpcSender(_Grpc):
    """OTLP/gRPC: the exporter's export with its retries; the request parsed back once
    (in C, microseconds) because its stub serializes a message."""

    def _translate_data(self, data: Any) -> ExportTraceServiceRequest:
        request: ExportTraceServiceRequest = ExportTraceServiceRequest.FromString(data[0])
        return request

    def _count_data(self, data: Any) -> int:
        return int(data[1])

    def send(self, payload: bytes, spans: int) -> bool:
        return bool(self._export(cast(Any, (payload, spans))) == SpanExportResult.SUCCESS)


class ConsoleSender:
    """``OTEL_TRACES_EXPORTER=console``: each span as one JSON line on stdout (for a look)."""

    def send(self, payload: bytes, spans: int) -> bool:
        export = ExportTraceServiceRequest.FromString(payload)
        for resource_spans in export.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    sys.stdout.write(orjson.dumps(_readable(span)).decode() + "\n")
        sys.stdout.flush()
        return True

    def shutdown(self) -> None:
        pass


def _readable(span: Any) -> dict[str, Any]:
    return {
        "name": span.name,
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex() or None,
        "kind": int(span.kind),
        "start_time_unix_nano": span.start_time_unix_nano,
        "end_time_unix_nano": span.end_time_unix_nano,
        "attributes": {a.key: _value(a.value) for a in span.attributes},
        "events": [[e.name, e.time_unix_nano] for e in span.events],
        "status_code": int(span.status.code),
    }


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None
