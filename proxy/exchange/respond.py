"""Writing responses to the client, marking the timeline as the bytes go out.

Responses are written here (prepare, write, write_eof) rather than returned
for aiohttp to write, so the last mark is taken after the last byte.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiohttp import web

from proxy.config.control import OVERRIDE_HEADER
from proxy.exchange.exchange import Exchange
from proxy.exchange.headers import client_response_headers
from proxy.exchange.trailer import TRAILER, finish, unsized, wants_trailer
from proxy.formats.errors import error_body
from proxy.upstream.call import UpstreamError, classify_failure
from proxy.upstream.response import UpstreamResponse

log = logging.getLogger("taxmeter.proxy")


async def send(request: web.Request, ex: Exchange, response: web.Response) -> web.StreamResponse:
    """Send a response whose body is complete (chunked, when a trailer follows it)."""
    trailer = wants_trailer(request, response.status)
    sent: web.StreamResponse = response
    body = b""
    if trailer:
        sent, body = unsized(response)
    stamp(sent, ex, trailer)
    ex.timeline.mark_egress()
    try:
        await sent.prepare(request)
        ex.timeline.mark_client_first_byte()
        if body:
            await sent.write(body)
        await finish(request, sent, ex.timeline, ex.streamed, trailer)
    except ConnectionResetError:
        return client_gone(request, ex, sent)
    return sent


async def send_error(
    request: web.Request,
    ex: Exchange,
    status: int,
    code: str,
    message: str,
    outcome: str | None = None,
    close: bool = False,
    headers: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    """An error in the surface's own shape; the outcome defaults to client_error
    (see :meth:`Exchange.refused`), ``outcome`` is one of its own.

    ``close``: end the connection after it (the rest of the request is unread);
    ``headers``: the error's own (a 405's ``Allow``).
    """
    if outcome is None:
        ex.refused()
    else:
        ex.failed(outcome)
    if ex.surface is None:
        body = error_body(message, code)
    else:  # in the API's own shape, which may depend on the status (Anthropic's does)
        body = ex.surface.error_body(message, code, status=status)
    response = web.Response(
        status=status, body=body, content_type="application/json", headers=headers
    )
    if close:
        response.force_close()
    return await send(request, ex, response)


async def send_upstream_failure(
    request: web.Request, ex: Exchange, exc: BaseException
) -> web.StreamResponse:
    failure = classify_failure(exc)
    log.warning("upstream request failed (%s): %r", failure.code, exc)
    return await send_error(
        request, ex, failure.status, failure.code, failure.message, failure.outcome
    )


async def pass_through(
    request: web.Request, ex: Exchange, upstream: UpstreamResponse, keep: int = 0
) -> web.StreamResponse:
    """Pass the upstream response through chunk by chunk, adding no buffering.

    ``keep``: a JSON answer of at most this many bytes (as read) is also kept,
    as the chunks it came in, for the record (its usage and finish reasons are
    read from it once the last byte has gone out); 0 keeps nothing.
    """
    decoded = upstream.decoded
    kept: list[bytes] | None = [] if keep and _keepable(upstream, keep) else None
    kept_bytes = 0
    response = web.StreamResponse(
        status=upstream.status,
        reason=upstream.reason,
        headers=client_response_headers(upstream.headers, decoded),
    )
    trailer = wants_trailer(request, upstream.status)
    if (
        upstream.content_length is not None
        and not trailer
        and not (decoded and "Content-Encoding" in upstream.headers)
    ):
        response.content_length = upstream.content_length
    ex.streamed = upstream.headers.get("Content-Type", "").startswith("text/event-stream")
    stamp(response, ex, trailer)
    await response.prepare(request)
    timeline = ex.timeline
    try:
        while True:
            # Reads and writes fail apart: a reset client is not an upstream error.
            try:
                chunk = await upstream.read_chunk()
            except (UpstreamError, TimeoutError) as exc:
                ex.failed(classify_failure(exc).outcome)
                log.warning("upstream failed mid-response: %r", exc)
                return abort(request, response, upstream)
            if not chunk:
                break
            timeline.mark_upstream_first_byte()
            if kept is not None:
                kept_bytes += len(chunk)
                if kept_bytes <= keep:
                    kept.append(chunk)
                else:
                    kept = None  # too long to read for the record: its usage goes uncounted
            await response.write(chunk)
            timeline.mark_client_first_byte()
        timeline.mark_upstream_last_byte(upstream.last_read_ns)
        timeline.mark_egress()
        await finish(request, response, timeline, ex.streamed, trailer)
    except ConnectionResetError:
        return client_gone(request, ex, response, upstream)
    if kept is not None:
        ex.response_body = kept[0] if len(kept) == 1 else b"".join(kept)
    return response


def _keepable(upstream: UpstreamResponse, keep: int) -> bool:
    """A JSON answer read as plain text, not stated to be longer than ``keep``."""
    length = upstream.content_length
    if length is not None and length > keep:
        return False
    if "Content-Encoding" in upstream.headers and not upstream.decoded:
        return False
    kind = upstream.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


def stamp(response: web.StreamResponse, ex: Exchange, trailer: bool = False) -> None:
    """Our headers on a response about to be sent; ``trailer``: Server-Timing follows it too."""
    ex.status = response.status
    ex.response = response
    response.headers["X-Request-Id"] = ex.request_id
    response.headers["Server-Timing"] = ex.timeline.server_timing()
    if trailer:
        response.headers["Trailer"] = TRAILER
    if ex.expose_variant:
        response.headers[OVERRIDE_HEADER] = ex.variant


def client_gone(
    request: web.BaseRequest,
    ex: Exchange,
    response: web.StreamResponse,
    upstream: UpstreamResponse | None = None,
) -> web.StreamResponse:
    """The client went away while its answer was being written (a write raised
    ConnectionResetError): the model server is let go and the connection closed."""
    ex.disconnected()
    if upstream is None:
        request.protocol.force_close()
        return response
    return abort(request, response, upstream)


def abort(
    request: web.BaseRequest, response: web.StreamResponse, upstream: UpstreamResponse
) -> web.StreamResponse:
    """End a response already under way so the client sees it is incomplete."""
    upstream.close()
    request.protocol.force_close()
    return response
