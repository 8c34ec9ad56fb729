"""The exporter thread's own counts as metrics: spans exported, dropped, failed exports.

Read when Prometheus scrapes (the counts are plain integers the exporter
keeps), so the request's path does nothing for them.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from proxy.measure.tracing_export import SpanExport


class _ExportCounts(Collector):
    def __init__(self, export: SpanExport) -> None:
        self._export = export

    def collect(self) -> Iterator[CounterMetricFamily]:
        export = self._export
        yield CounterMetricFamily(
            "taxmeter_trace_spans_exported",
            "Spans accepted by the trace collector.",
            value=export.sent_spans,
        )
        yield CounterMetricFamily(
            "taxmeter_trace_spans_dropped",
            "Spans dropped because the export queue was full (OTEL_BSP_MAX_QUEUE_SIZE).",
            value=export.dropped_spans,
        )
        yield CounterMetricFamily(
            "taxmeter_trace_exports_failed",
            "Export requests the collector did not accept (after the exporter's retries).",
            value=export.failed_exports,
        )


def register_trace_counts(registry: CollectorRegistry, export: SpanExport) -> None:
    registry.register(_ExportCounts(export))
