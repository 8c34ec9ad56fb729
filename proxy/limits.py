"""Admission: how many requests the proxy serves at once, and how large a body it takes.

A sidecar that accepts everything turns a burst into a queue in front of the
model server and into memory in the proxy. With ``max_concurrent_requests``
set, a request beyond it is answered at once, before its body is read, with
429 ``concurrency_limit`` and ``Retry-After``; OpenAI's SDKs retry on that.
Those requests never reach the handler, so they are counted apart
(``taxmeter_rejected_requests_total{reason="concurrency"}``), not in the
latency histograms they would distort.

A body is refused with 413 ``body_too_large`` when it is over
``max_body_bytes``: at once when Content-Length says so, and as soon as the
count passes the limit for a chunked body (:func:`limited_chunks`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from proxy.errors import error_body

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Long enough for a slot to free up on a loaded model server, short enough
# that a client retrying does not wait for nothing.
RETRY_AFTER_S = 1


class BodyTooLarge(Exception):
    """A chunked request body grew past max_body_bytes while it was being forwarded."""


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

    def wrap(self, handler: Handler) -> Handler:
        if not self._limit:
            return handler

        async def admitted(request: web.Request) -> web.StreamResponse:
            if self.active >= self._limit:
                self._rejected.count("concurrency")
                return too_busy(self._limit)
            self.active += 1
            try:
                return await handler(request)
            finally:
                self.active -= 1

        return admitted


def too_busy(limit: int) -> web.Response:
    message = f"taxmeter is serving its maximum of {limit} concurrent requests; retry shortly"
    return web.Response(
        status=429,
        body=error_body(message, "concurrency_limit", "rate_limit_error"),
        content_type="application/json",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def too_large(length: int | None, limit: int) -> bool:
    """Whether a declared Content-Length is over the limit."""
    return length is not None and length > limit


async def limited_chunks(request: web.BaseRequest, limit: int) -> AsyncIterator[bytes]:
    """The request body as it arrives; BodyTooLarge once it passes ``limit`` bytes."""
    seen = 0
    async for chunk in request.content.iter_any():
        seen += len(chunk)
        if seen > limit:
            raise BodyTooLarge(f"the request body is over {limit} bytes")
        yield chunk
