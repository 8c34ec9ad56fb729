"""The answers the proxy gives instead of the model's: blocked, refused, too busy, failed.

Each is sent in the surface's own error shape (see
:func:`proxy.exchange.respond.send_error`) and sets the request's outcome.
"""

from __future__ import annotations

import logging

from aiohttp import web

from proxy.exchange.exchange import Exchange
from proxy.exchange.limits import busy_message, too_busy
from proxy.exchange.request_body import BodyError
from proxy.exchange.respond import send_error, stamp

log = logging.getLogger("taxmeter.proxy")


async def blocked(request: web.Request, ex: Exchange, reason: str | None) -> web.StreamResponse:
    ex.blocked()
    message = f"the request was blocked by a content filter: {reason}"
    return await send_error(request, ex, 400, "content_filter", message)


async def uninspected(request: web.Request, ex: Exchange, kinds: list[str]) -> web.StreamResponse:
    ex.blocked()
    what = ", ".join(sorted(set(kinds)))
    message = f"the request has parts no content filter can inspect ({what}); uninspected: block"
    return await send_error(request, ex, 400, "uninspected_content", message)


async def refused_body(request: web.Request, ex: Exchange, exc: BodyError) -> web.StreamResponse:
    # After a 413, aiohttp reads and drops the rest of the body (for up to its
    # lingering time), so the client, still sending, gets to read the answer.
    # After a silence or an undecodable body the rest is not worth waiting for.
    if exc.status == 413:
        return await send_error(request, ex, exc.status, exc.code, str(exc))
    response = await send_error(request, ex, exc.status, exc.code, str(exc), close=True)
    # aiohttp would go on reading the unread body (for its lingering time, 10 s)
    # before closing; a client that stopped sending gets the close now.
    if request.transport is not None:
        request.transport.close()
    return response


async def refused_busy(request: web.Request, ex: Exchange, limit: int) -> web.StreamResponse:
    body = None
    if ex.surface is not None:  # in the API's own error shape
        message = busy_message(limit)
        body = ex.surface.error_body(message, "concurrency_limit", "rate_limit_error", status=429)
    response = too_busy(limit, body)
    stamp(response, ex)
    await response.prepare(request)
    await response.write_eof()
    return response


async def internal_error(request: web.Request, ex: Exchange, exc: Exception) -> web.StreamResponse:
    """A bug of ours: answered in the API's shape, logged once."""
    ex.failed("internal_error")
    log.error(
        "internal error serving %s %s (request %s)",
        request.method,
        ex.route,
        ex.request_id,
        exc_info=exc,
    )
    response = ex.response
    if response is not None and response.prepared:
        # Part of an answer went out: the client must see it cut, not complete.
        if request.transport is not None:
            request.transport.abort()
        return response
    message = f"taxmeter failed to serve this request (request id {ex.request_id})"
    return await send_error(request, ex, 500, "internal_error", message, "internal_error")
