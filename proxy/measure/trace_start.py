"""What was decided of a request's trace when it arrived: its context, ids and sampling.

Made by :meth:`proxy.measure.tracing.Tracing.begin`, carried by the request to
its end, where the spans are written from it (and read by
:mod:`proxy.measure.span_attrs`, which is why it is a module of its own).
"""

from __future__ import annotations

from typing import Any

from opentelemetry.context import Context


class TraceStart:
    """What was decided when the request arrived: its context, ids and sampling."""

    __slots__ = (
        "context",
        "method",
        "name",
        "parent_is_remote",
        "parent_span_id",
        "sampled",
        "sampler_attributes",
        "server_span_id",
        "trace_id",
        "trace_state",
        "upstream_span_id",
    )

    def __init__(
        self,
        context: Context,
        trace_id: int,
        span_ids: tuple[int, int],
        name: str,
        method: str,
        sampled: bool,
    ) -> None:
        self.context = context  # the client's, as extracted (empty when it sent none)
        self.trace_id = trace_id
        self.server_span_id, self.upstream_span_id = span_ids
        self.name = name
        self.method = method
        self.sampled = sampled
        self.parent_span_id: int | None = None  # the client's span, when it sent one
        self.parent_is_remote = False
        self.trace_state = ""  # W3C tracestate of the spans (the sampler's say), header form
        self.sampler_attributes: dict[str, Any] = {}  # the sampler's, first on the server span
