"""The upstream side: what a failed call means for the client, and one call made.

The connections themselves are :mod:`proxy.upstream.pool` and
:mod:`proxy.upstream.connection`. Failure tree of an upstream call, and what the
client gets::

    TimeoutError (connect, read silence, total)  -> 504 upstream_timeout  (outcome timeout)
    UpstreamError
    ├── UpstreamUnreachable (refused, DNS, TLS)  -> 502 upstream_unreachable
    ├── UpstreamReset (closed, reset)            -> 502 upstream_reset
    ├── UpstreamMalformed (broken HTTP, or not
    │   the OpenAI answer the proxy must judge)  -> 502 upstream_malformed
    ├── UpstreamTooLarge (an answer the proxy
    │   reads, over upstream.max_response_bytes
    │   once inflated, or a compression bomb)    -> 502 upstream_response_too_large
    ├── BodyLengthMismatch (the client's body is
    │   not as long as its Content-Length)       -> 400 invalid_body  (outcome client_error)
    └── anything else                            -> 502 upstream_error
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from dataclasses import dataclass

from aiohttp import web
from multidict import CIMultiDict

from proxy.formats.json_pieces import EncodedDocument
from proxy.formats.paths import origin_form
from proxy.measure.timeline import Timeline
from proxy.upstream.pool import BodyLengthMismatch, UpstreamPool
from proxy.upstream.response import (
    UpstreamError,
    UpstreamMalformed,
    UpstreamReset,
    UpstreamResponse,
    UpstreamTooLarge,
    UpstreamUnreachable,
)

__all__ = ["UpstreamError", "UpstreamFailure", "UpstreamPool", "classify_failure", "fetch"]


@dataclass(frozen=True, slots=True)
class UpstreamFailure:
    status: int
    code: str
    outcome: str
    message: str


def classify_failure(exc: BaseException) -> UpstreamFailure:
    """What an exception raised by the upstream call means for the client."""
    if isinstance(exc, TimeoutError):
        return UpstreamFailure(504, "upstream_timeout", "timeout", "the model server timed out")
    if isinstance(exc, UpstreamUnreachable):
        return UpstreamFailure(
            502, "upstream_unreachable", "upstream_error", "cannot connect to the model server"
        )
    if isinstance(exc, UpstreamReset):
        return UpstreamFailure(
            502, "upstream_reset", "upstream_error", "the model server closed the connection"
        )
    if isinstance(exc, UpstreamMalformed):
        return UpstreamFailure(
            502,
            "upstream_malformed",
            "upstream_error",
            "the model server sent a malformed response",
        )
    if isinstance(exc, BodyLengthMismatch):
        return UpstreamFailure(
            400,
            "invalid_body",
            "client_error",
            "the request body does not match its Content-Length",
        )
    if isinstance(exc, UpstreamTooLarge):
        return UpstreamFailure(
            502,
            "upstream_response_too_large",
            "upstream_error",
            "the model server's response is too large, or inflates like a compression bomb"
            " (upstream.max_response_bytes)",
        )
    return UpstreamFailure(502, "upstream_error", "upstream_error", "the model server failed")


def upstream_target(request: web.BaseRequest) -> str:
    """The path and query sent upstream, as the route was matched; never the client's host.

    Only targets :mod:`proxy.config.routes` found canonical get here (others are refused).
    """
    target = origin_form(request.raw_path)
    assert target is not None, "a request target with no path is refused before it is forwarded"
    return target


class Fetched:
    """An upstream response with what was read of it before anything went to the client.

    For a judged stream the first chunk is read, and for a judged JSON answer
    the whole body, as soon as they arrive, so their marks are true even when
    the client's response is held for parallel input filters.
    """

    __slots__ = ("body", "first_arrived_ns", "first_chunk", "response", "stream")

    def __init__(self, response: UpstreamResponse) -> None:
        self.response = response
        self.stream = response.headers.get("Content-Type", "").startswith("text/event-stream")
        self.first_chunk = b""
        self.first_arrived_ns = 0
        self.body: bytes | None = None

    @property
    def json(self) -> bool:
        kind = self.response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        return kind == "application/json" or kind.endswith("+json")

    def close(self) -> None:
        """Release a connection that was read to the end; close any other."""
        self.response.close()


async def fetch(
    pool: UpstreamPool,
    method: str,
    target: str,
    headers: CIMultiDict[str],
    data: bytes | EncodedDocument | AsyncIterable[bytes] | None,
    timeline: Timeline,
    judged: bool,
    reads_whole: bool = True,
) -> Fetched:
    """Send the request upstream and read what must be read before answering.

    ``judged``: the answer's surface reads it (a stream through the stream
    judge); ``reads_whole``: output filters judge a whole answer, so it is read
    whole (else it is relayed as it arrives, see :func:`proxy.exchange.respond.relay`).
    """
    timeline.mark_upstream_sent()
    response = await pool.request(
        method, target, headers, data, timeline, decode=judged, decode_whole=reads_whole
    )
    timeline.mark_upstream_headers()
    fetched = Fetched(response)
    try:
        answered = 200 <= response.status < 300
        if judged and fetched.stream and answered:
            fetched.first_chunk = await response.read_chunk()
            fetched.first_arrived_ns = timeline.now()
            timeline.mark_upstream_first_byte(fetched.first_arrived_ns)
        elif judged and reads_whole and answered and fetched.json:
            fetched.body = await response.read()
            timeline.mark_upstream_last_byte(response.last_read_ns)
    except BaseException:
        response.close()
        raise
    return fetched
