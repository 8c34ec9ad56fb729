"""Admission: how many requests the proxy serves at once.

A sidecar that accepts everything turns a burst into a queue in front of the
model server and into memory in the proxy. Beyond ``max_concurrent_requests``
(default 1,024) a request is answered 429 ``concurrency_limit`` with
``Retry-After``; OpenAI's SDKs retry on that. Those requests are counted
apart (``taxmeter_rejected_requests_total{reason="concurrency"}``), not in
the latency histograms they would distort.

A slot is taken only once the request's body has been read (a judged body)
or when forwarding begins (a body passed through as it arrives): a client
that sends its body one byte a second holds a connection, bounded by
``client_body_timeout_s``, but no slot, so slow uploads cannot lock other
clients out. Body size limits are :mod:`proxy.exchange.request_body`'s.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from proxy.formats.errors import error_body

# Long enough for a slot to free up on a loaded model server, short enough
# that a client retrying does not wait for nothing.
RETRY_AFTER_S = 1


# Why a request or connection was turned away before a handler judged it.
REJECTION_REASONS = ("concurrency", "client_connections", "header_timeout", "body_timeout")


class Rejections:
    """``taxmeter_rejected_requests_total{reason}``: one counter for every listener part."""

    __slots__ = ("_children", "_counter")

    def __init__(self, registry: CollectorRegistry) -> None:
        self._counter = Counter(
            "taxmeter_rejected_requests",
            "Requests (or connections) turned away before the handler judged them, by reason.",
            ("reason",),
            registry=registry,
        )
        # Every series exists from the start, and is looked up once.
        self._children = {reason: self._counter.labels(reason) for reason in REJECTION_REASONS}

    def count(self, reason: str) -> None:
        self._children[reason].inc()


# Where a listener's parts (the connection protocol, the handler) find the counter.
REJECTIONS = web.AppKey("rejections", Rejections)


class Admission:
    """Counts the requests being served and turns away those beyond the limit."""

    __slots__ = ("_limit", "_rejected", "active")

    def __init__(self, max_concurrent: int | None, rejections: Rejections) -> None:
        self._limit = max_concurrent or 0  # 0: no limit
        self.active = 0
        self._rejected = rejections

    def enter(self) -> bool:
        """Take a slot; False (and counted) when every slot is taken."""
        if self._limit and self.active >= self._limit:
            self._rejected.count("concurrency")
            return False
        self.active += 1
        return True

    def leave(self) -> None:
        self.active -= 1

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def rejections(self) -> Rejections:
        return self._rejected


def busy_message(limit: int) -> str:
    return f"taxmeter is serving its maximum of {limit} concurrent requests; retry shortly"


def too_busy(limit: int, body: bytes | None = None) -> web.Response:
    """The 429; ``body``: the error in the route's API shape (OpenAI's by default)."""
    if body is None:
        body = error_body(busy_message(limit), "concurrency_limit", "rate_limit_error")
    return web.Response(
        status=429,
        body=body,
        content_type="application/json",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )
