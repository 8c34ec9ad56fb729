"""Sending encoded export requests: through the SDK's OTLP/HTTP exporter, or to the console.

The SDK's exporters take span objects and encode them; these take the bytes
taxmeter wrote (:mod:`proxy.measure.tracing_wire`) and keep the rest of the
exporters: the OTEL_EXPORTER_OTLP_* endpoint, headers, certificates,
compression and timeout they read, their retries and backoff, and their logs.
gRPC's is :mod:`proxy.measure.tracing_grpc` (grpc is imported only when chosen).
"""

from __future__ import annotations

import sys
from typing import Any

import orjson
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as _Http
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


class HttpSender(_Http):
    """OTLP/HTTP (``http/protobuf``): the exporter's client posts the bytes as they are."""

    def send(self, payload: bytes, spans: int) -> bool:
        if self._shutdown:
            return False
        return bool(self._client.export(payload).success)


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
