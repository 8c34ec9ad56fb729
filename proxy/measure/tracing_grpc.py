"""OTLP/gRPC: the SDK's gRPC exporter sending the export requests taxmeter wrote.

Its own module so that grpc (tens of MB) is imported only when
``OTEL_EXPORTER_OTLP_PROTOCOL=grpc`` chooses it.
"""

from __future__ import annotations

from typing import Any, cast

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as _Grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export import SpanExportResult


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
