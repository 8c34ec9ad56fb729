"""One request's state on its way through the proxy, and how its outcome is decided.

The outcome is what the metrics, the span and the access log count the request
as. It starts ``ok`` and is changed only through the methods below, each named
for what happened, so that the rule of which outcome wins is in one place:

* :meth:`Exchange.answered`: the upstream's status decides, unless something
  already did (a 5xx is ``upstream_error``, a 4xx ``client_error``);
* :meth:`Exchange.refused`: a request the proxy turned down is a
  ``client_error``, unless a filter already blocked it;
* :meth:`Exchange.blocked`, :meth:`Exchange.failed` and
  :meth:`Exchange.disconnected`: what happened last wins (a client that goes
  away while its refusal is being sent is a ``client_disconnect``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from proxy.measure.timeline import Timeline

if TYPE_CHECKING:
    from proxy.judge.observe import Later
    from proxy.measure.trace_start import TraceStart
    from proxy.surfaces.base import Surface, Usage


@dataclass(slots=True)
class Exchange:
    """One request's state; what the telemetry reads of it is proxy.measure.served.Served."""

    timeline: Timeline
    route: str
    variant: str
    request_id: str
    outcome: str = "ok"  # changed through the methods below only
    method: str = ""
    streamed: bool = False
    expose_variant: bool = False
    body: Any = None  # the parsed request body, when it was read
    later: Later | None = None  # what deferred observers will judge
    trace: TraceStart | None = None  # None: tracing is off
    status: int = 0  # the status sent to the client
    upstream_status: int = 0
    request_raw: bytes | None = None  # a body forwarded unread, kept for its span
    response_body: Any = None  # the upstream's JSON answer when it was read (bytes or parsed)
    finish_reasons: list[str] = field(default_factory=list)  # of a judged stream
    usage: Usage | None = None  # of a judged stream that reported it
    admitted: bool = False  # holds a max_concurrent_requests slot
    rejected: bool = False  # turned away for want of a slot: counted apart, not recorded
    response: web.StreamResponse | None = None  # the response under way, once stamped
    surface: Surface | None = None  # the API surface judged; None: forwarded unjudged
    judge_answer: bool = True  # False: the surface judges the prompt only (a token count)

    def answered(self, status: int) -> None:
        """The upstream answered with ``status``."""
        self.upstream_status = status
        if self.outcome == "ok":
            self.outcome = outcome_of_status(status)

    def refused(self) -> None:
        """The proxy turned the request down (a bad request, a refused route)."""
        if self.outcome == "ok":
            self.outcome = "client_error"

    def blocked(self) -> None:
        """A filter (or the policy) kept the prompt from the model or the answer from the client."""
        self.outcome = "blocked"

    def failed(self, outcome: str) -> None:
        """The request failed as ``outcome`` says (an upstream failure, an error of ours)."""
        self.outcome = outcome

    def disconnected(self) -> None:
        """The client went away before its answer was complete."""
        self.outcome = "client_disconnect"


def outcome_of_status(status: int) -> str:
    """The outcome of a request the upstream answered with ``status``."""
    if status >= 500:
        return "upstream_error"
    if status >= 400:
        return "client_error"
    return "ok"
