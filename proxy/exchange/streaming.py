"""Relaying a server-sent event stream of any surface through the stream stage.

Each read from the upstream is parsed into events, the events go through the
:class:`~proxy.judge.stream_judge.StreamJudge`, and what it releases is written at
once. How a stream ends:

* the surface's terminal event (``data: [DONE]``, ``response.completed``,
  ``message_stop``): what is left is judged and sent, the client's response
  ends at once, and the upstream's own end is read so its connection is reused.
* the upstream's EOF: what is left is judged and sent.
* a block: the surface's blocked ending (a last chunk with ``finish_reason:
  "content_filter"`` and ``data: [DONE]``, a refusal...); the upstream
  connection is closed so the model stops.
* the upstream fails, goes silent past ``read_timeout_s`` or sends something
  that is not a stream of the surface: an error event in the surface's shape,
  then the end of the stream.
* the client goes away: the upstream connection is closed.

With ``TE: trailers`` the final Server-Timing figures follow as a trailer
(:mod:`proxy.exchange.trailer`).
"""

from __future__ import annotations

import logging

from aiohttp import web

from proxy.exchange.exchange import Exchange
from proxy.exchange.headers import client_response_headers
from proxy.exchange.respond import client_gone, stamp
from proxy.exchange.trailer import finish, wants_trailer
from proxy.formats.errors import error_body
from proxy.formats.sse import SseError, SseParser, encode_event
from proxy.judge.stream_judge import StreamJudge, StreamMalformed
from proxy.upstream.call import UpstreamError, UpstreamFailure, classify_failure
from proxy.upstream.response import UpstreamMalformed, UpstreamResponse

log = logging.getLogger("taxmeter.proxy")

# How a chunk that ends on an event's end ends (a lone CR is parsed to be sure).
_EVENT_ENDS = (b"\n\n", b"\r\n\r\n")
# What is read of a stream after its terminal event, at most, to reuse the connection.
_DRAIN_BYTES = 64 * 1024
_DRAIN_S = 1.0


async def relay_stream(
    request: web.Request,
    ex: Exchange,
    judge: StreamJudge,
    upstream: UpstreamResponse,
    first_chunk: bytes,
    first_arrived_ns: int,
) -> web.StreamResponse:
    response = web.StreamResponse(
        status=upstream.status,
        reason=upstream.reason,
        headers=client_response_headers(upstream.headers, decoded=True),
    )
    trailer = wants_trailer(request, upstream.status)
    ex.streamed = True
    stamp(response, ex, trailer)
    timeline = ex.timeline
    await response.prepare(request)

    parser = SseParser()
    chunk, arrived = first_chunk, first_arrived_ns
    failure: UpstreamFailure | None = None
    try:
        while True:
            out: bytes | bytearray = bytearray()
            try:
                if (
                    chunk
                    and not parser.buffered
                    and chunk.endswith(_EVENT_ENDS)
                    and (judge.relays_unparsed(chunk))
                ):
                    out = chunk  # whole events nothing judges or counts: as they came
                elif chunk:
                    for event in parser.feed(chunk):
                        out += await judge.on_event(event, arrived)
                        if judge.blocked is not None or judge.terminal:
                            break  # nothing after the end goes to the client
                else:
                    timeline.mark_upstream_last_byte(upstream.last_read_ns)
                    for event in parser.flush():
                        out += await judge.on_event(event, arrived)
                    if judge.blocked is None:
                        out += await judge.finish()
            except (SseError, StreamMalformed) as exc:
                failure = classify_failure(UpstreamMalformed(str(exc)))
                log.warning("upstream sent a malformed stream: %s", exc)
            if out:
                await response.write(out)
                timeline.mark_client_first_byte()
                if judge.content_sent:
                    timeline.mark_client_first_content()
            if judge.blocked is not None:
                ex.blocked()
                timeline.mark_upstream_last_byte()
                upstream.close()  # the model server stops generating
                break
            if judge.terminal:
                # The answer is complete at its terminal event, whatever follows it.
                timeline.mark_upstream_last_byte(upstream.last_read_ns)
                break
            if failure is not None or not chunk:
                break
            try:
                chunk = await upstream.read_chunk()
            except (UpstreamError, TimeoutError) as exc:
                failure = classify_failure(exc)
                log.warning("upstream failed mid-stream (%s): %r", failure.code, exc)
                break
            arrived = timeline.now()
            timeline.mark_upstream_first_byte(arrived)
        if judge.blocked_at_end and ex.outcome == "ok":
            ex.blocked()
        if failure is not None:
            ex.failed(failure.outcome)
            upstream.close()
            await response.write(_error_event(ex, failure))
        timeline.mark_egress()
        await finish(request, response, timeline, ex.streamed, trailer)
    except ConnectionResetError:
        return client_gone(request, ex, response, upstream)
    if judge.terminal:
        # Off the request's path: the answer is recorded as done now.
        upstream.finish_in_background(_DRAIN_BYTES, _DRAIN_S)
    return response


def _error_event(ex: Exchange, failure: UpstreamFailure) -> bytes:
    """The event that says the stream broke off, in the surface's shape."""
    if ex.surface is None:
        return encode_event(error_body(failure.message, failure.code))
    return ex.surface.error_event(failure.message, failure.code, failure.status)
