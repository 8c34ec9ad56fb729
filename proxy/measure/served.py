"""What the telemetry reads of a request once it is served: the record it is derived from.

The handler's :class:`~proxy.exchange.exchange.Exchange` is that record. The
metrics, the span tree and the access log know it by this protocol only, so
that measuring does not depend on the request path it measures: the path
calls into measure/, never the other way round.
"""

from __future__ import annotations

from typing import Any, Protocol

from proxy.measure.timeline import Timeline
from proxy.measure.trace_start import TraceStart
from proxy.surfaces.base import Surface, Usage


class Served(Protocol):
    """One finished request, read-only."""

    @property
    def timeline(self) -> Timeline: ...

    @property
    def route(self) -> str: ...

    @property
    def variant(self) -> str: ...

    @property
    def request_id(self) -> str: ...

    @property
    def method(self) -> str: ...

    @property
    def outcome(self) -> str: ...

    @property
    def status(self) -> int: ...  # sent to the client

    @property
    def upstream_status(self) -> int: ...

    @property
    def streamed(self) -> bool: ...

    @property
    def body(self) -> Any: ...  # the parsed request body, when it was read

    @property
    def request_raw(self) -> bytes | None: ...  # a body forwarded unread, kept for its span

    @property
    def response_body(self) -> Any: ...  # the upstream's JSON answer when it was read

    @property
    def finish_reasons(self) -> list[str]: ...  # of a judged stream

    @property
    def usage(self) -> Usage | None: ...  # of a judged stream that reported it

    @property
    def surface(self) -> Surface | None: ...  # None: forwarded unjudged

    @property
    def trace(self) -> TraceStart | None: ...  # None: tracing is off
