"""Tracing as ``serve`` configures it, by the standard OTEL_* variables.

Off (no work on the request path) unless ``OTEL_EXPORTER_OTLP_ENDPOINT``
(or ``_TRACES_ENDPOINT``) or ``OTEL_TRACES_EXPORTER`` is set, and always
when ``OTEL_SDK_DISABLED=true``. ``OTEL_TRACES_EXPORTER``: otlp (default),
console or none; ``OTEL_EXPORTER_OTLP_PROTOCOL``: http/protobuf (default) or
grpc. The SDK reads the rest as it always did: OTEL_SERVICE_NAME and
OTEL_RESOURCE_ATTRIBUTES (the resource), OTEL_TRACES_SAMPLER(_ARG) (the
sampler), the exporters' OTEL_EXPORTER_OTLP_*. The batch settings
(OTEL_BSP_*) are read here, with the SDK's meanings and defaults but for the
export batch's, 512 as the SDK's own (:data:`EXPORT_BATCH_SPANS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace.sampling import Sampler, _get_from_env_or_default

from proxy.config.checks import ConfigError
from proxy.measure import tracing_wire as W
from proxy.measure.tracing_export import Batching, Sender, SpanExport

# Spans per OTLP export unless OTEL_BSP_MAX_EXPORT_BATCH_SIZE says otherwise: the
# SDK's default. Each export is an HTTP request of about 1 ms of CPU whatever its
# size, so big batches are cheap; writing them no longer holds the GIL for long
# (the SDK's encoder did: taxmeter's default was 64 then).
EXPORT_BATCH_SPANS = 512
SCOPE_NAME = "taxmeter"  # the instrumentation scope of every span


@dataclass(frozen=True)
class TracingSetup:
    """Where spans go and which requests are sampled: built once, shut down by the caller."""

    export: SpanExport
    sampler: Sampler

    def shutdown(self) -> None:
        """Flush the spans not yet exported (SIGTERM) and stop the exporter thread."""
        self.export.shutdown()


def tracing_from_env(environ: Mapping[str, str]) -> TracingSetup | None:
    """The tracing ``serve`` runs with; None when it is off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporter_name = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if exporter_name == "none" or (not exporter_name and not endpoint):
        return None
    batching = batching_from_env(environ)  # before anything starts: its errors first
    sender = _sender(exporter_name, environ)
    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "taxmeter"}))
    export = SpanExport(sender, resource_and_scope(resource), batching)
    return TracingSetup(export, _get_from_env_or_default())


def _sender(exporter_name: str, environ: Mapping[str, str]) -> Sender:
    from proxy.measure import tracing_senders

    if exporter_name == "console":
        return tracing_senders.ConsoleSender()
    if exporter_name not in ("", "otlp"):
        raise ConfigError(
            "OTEL_TRACES_EXPORTER", f"expected otlp, console or none, got {exporter_name!r}"
        )
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol == "grpc":
        from proxy.measure.tracing_grpc import GrpcSender

        return GrpcSender()
    if protocol == "http/protobuf":
        return tracing_senders.HttpSender()
    raise ConfigError(
        "OTEL_EXPORTER_OTLP_PROTOCOL", f"expected http/protobuf or grpc, got {protocol!r}"
    )


def resource_and_scope(resource: Resource) -> tuple[bytes, bytes]:
    """The ResourceSpans' resource and schema fields and the ScopeSpans' scope, encoded once."""
    attributes = W.Attributes(b"\x0a").encode(dict(resource.attributes))
    head = W.field(b"\x0a", attributes)
    if resource.schema_url:
        head += W.field(b"\x1a", resource.schema_url.encode())
    scope = W.field(b"\x0a", InstrumentationScope(name=SCOPE_NAME).SerializeToString())
    return head, scope


def batching_from_env(environ: Mapping[str, str]) -> Batching:
    """OTEL_BSP_*: batch and queue sizes in spans, delay and timeout in milliseconds."""
    batch = _positive(environ, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", EXPORT_BATCH_SPANS)
    queue = _positive(environ, "OTEL_BSP_MAX_QUEUE_SIZE", 2048)
    if batch > queue:
        raise ConfigError(
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
            f"must be at most OTEL_BSP_MAX_QUEUE_SIZE ({queue}), got {batch}",
        )
    delay_ms = _positive(environ, "OTEL_BSP_SCHEDULE_DELAY", 5000)
    timeout_ms = _positive(environ, "OTEL_BSP_EXPORT_TIMEOUT", 30000)
    return Batching(batch, queue, delay_ms / 1000, timeout_ms / 1000)


def _positive(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(name, f"expected a positive whole number, got {text!r}")
    return value
