"""The end of a response, and the Server-Timing trailer for a client that asks for it.

The ``Server-Timing`` header is written before the body, so its figures stop
there (:meth:`~proxy.measure.timeline.Timeline.server_timing`). A client that
sends ``TE: trailers`` over HTTP/1.1 gets every response that has a body
chunked, announced with ``Trailer: Server-Timing``, and after its last chunk
a ``Server-Timing`` trailer with the request's final figures
(:meth:`~proxy.measure.timeline.Breakdown.server_timing`).

The request's last mark is taken as the trailer is composed, so the trailer
carries the very figures the metrics, the span and the access log record
for the request; writing the trailer's own few bytes is after that mark, in
no figure.
"""

from __future__ import annotations

from aiohttp import HttpVersion11, web
from aiohttp.helpers import must_be_empty_body
from aiohttp.http_writer import StreamWriter

from proxy.measure.timeline import Timeline

TRAILER = "Server-Timing"


def wants_trailer(request: web.BaseRequest, status: int) -> bool:
    """The client accepts trailers and this response will have a chunked body to carry one."""
    if request.version != HttpVersion11 or must_be_empty_body(request.method, status):
        return False
    accepted = ",".join(request.headers.getall("TE", ()))
    return any(part.split(";", 1)[0].strip().lower() == "trailers" for part in accepted.split(","))


def unsized(response: web.Response) -> tuple[web.StreamResponse, bytes]:
    """A whole response as one to write in chunks (no length: its trailer follows the body)."""
    chunked = web.StreamResponse(
        status=response.status, reason=response.reason, headers=response.headers
    )
    if response.keep_alive is False:
        chunked.force_close()
    body = response.body
    assert body is None or isinstance(body, bytes), "a whole response's body is bytes"
    return chunked, body or b""


async def finish(
    request: web.BaseRequest,
    response: web.StreamResponse,
    timeline: Timeline,
    streamed: bool,
    trailer: bool,
) -> None:
    """End the response, and take the request's last mark (see the module docstring)."""
    writer = request.writer
    if not (trailer and isinstance(writer, StreamWriter) and writer.chunked):
        await response.write_eof()
        timeline.mark_client_last_byte()
        return
    timeline.mark_client_last_byte()
    timing = timeline.breakdown(streamed).server_timing()
    # aiohttp writes no trailers, so the last chunk is framed here.
    writer.chunked = False
    await writer.write(f"0\r\n{TRAILER}: {timing}\r\n\r\n".encode("ascii"))
    await response.write_eof()
