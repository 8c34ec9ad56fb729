"""What was decided of a request's trace when it arrived: its context, ids and sampling.

Made by :meth:`proxy.measure.tracing.Tracing.begin`, carried by the request to
its end, where the spans are built from it (and read by
:mod:`proxy.measure.span_attrs`, which is why it is a module of its own).
"""

from __future__ import annotations

from opentelemetry.context import Context
from opentelemetry.sdk.trace.id_generator import IdGenerator


class TraceStart:
    """What was decided when the request arrived: its context, ids and sampling."""

    __slots__ = (
        "context",
        "method",
        "name",
        "sampled",
        "server_span_id",
        "trace_id",
        "upstream_span_id",
    )

    def __init__(
        self,
        context: Context,
        trace_id: int,
        ids: IdGenerator,
        name: str,
        method: str,
        sampled: bool,
    ) -> None:
        self.context = context
        self.trace_id = trace_id
        self.server_span_id = ids.generate_span_id()
        self.upstream_span_id = ids.generate_span_id()
        self.name = name
        self.method = method
        self.sampled = sampled
