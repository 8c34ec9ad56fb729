"""A sampled request as its spans need it, taken on the request's path when it is recorded.

The exporter thread writes the spans later (:mod:`proxy.measure.tracing_spans`):
what it reads must not change meanwhile, and the queue must not keep the
request's parsed bodies alive (they can be large, and every object kept
is one more for the garbage collector to walk). So the facts of parsed bodies
are read here, cheaply (a few dictionary lookups); raw bytes, which are
neither copied nor walked, are kept and parsed on the thread; the rest is
scalars, the timeline (its marks and filter calls) and the figures.
"""

from __future__ import annotations

from typing import Any

from proxy.measure.served import Served
from proxy.measure.span_attrs import content_attributes, request_facts, response_facts
from proxy.measure.timeline import NS_PER_S, Breakdown, Timeline
from proxy.measure.trace_start import TraceStart
from proxy.surfaces.base import Surface, Usage


class Finished:
    """One finished, sampled request (a :class:`~proxy.measure.served.Served`, bodies aside)."""

    __slots__ = (
        "content",
        "end_ns",
        "figures",
        "finish_reasons",
        "interval",
        "kept_bytes",
        "method",
        "outcome",
        "request",
        "request_id",
        "request_raw",
        "response",
        "response_body",
        "route",
        "spans",
        "status",
        "streamed",
        "surface",
        "timeline",
        "trace",
        "upstream_status",
        "usage",
        "variant",
    )

    body = None  # read here (``request``); never kept

    def __init__(self, ex: Served, figures: Breakdown, content: bool) -> None:
        tl = ex.timeline
        self.timeline: Timeline = tl
        self.figures = figures
        self.trace: TraceStart | None = ex.trace
        self.route, self.variant, self.method = ex.route, ex.variant, ex.method
        self.request_id, self.outcome, self.streamed = ex.request_id, ex.outcome, ex.streamed
        self.status, self.upstream_status = ex.status, ex.upstream_status
        self.surface: Surface | None = ex.surface
        self.finish_reasons: list[str] = list(ex.finish_reasons)
        self.usage: Usage | None = ex.usage
        # Marks read now, not on the exporter thread later (an unfinished one means "now").
        end_ns = tl.client_last_byte_ns
        if end_ns is None:
            end_ns = tl.received_ns + round(figures.total * NS_PER_S)
        self.end_ns = end_ns
        self.interval = tl.upstream_interval()
        self.request_raw: bytes | None = ex.request_raw  # parsed on the thread
        self.request: dict[str, Any] | None = None
        if ex.request_raw is None:
            self.request = request_facts(ex.body)
        answer = ex.response_body
        self.response_body: bytes | None = None
        self.response: dict[str, Any] | None = None
        if isinstance(answer, bytes) and not content:
            self.response_body = answer  # parsed on the thread
        else:
            self.response = response_facts(ex)
        self.content: dict[str, str] = {}
        if content:
            assert self.response is not None
            self.content = content_attributes(ex, self.response)
        if self.response is not None:
            # Its facts are taken: the parsed answer (up to max_response_bytes) is let go,
            # or a queue a slow collector keeps full would hold thousands of them.
            del self.response["_body"]
        # The spans it will make, for the queue's bound (the holdback counted when it may be).
        self.spans = 1 + len(tl.filter_calls) + (self.interval is not None)
        self.spans += bool(figures.holdback)
        # The raw bytes it keeps until the thread parses them, for the queue's other bound.
        self.kept_bytes = len(self.request_raw or b"") + len(self.response_body or b"")
