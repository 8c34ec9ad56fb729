"""The upstream side: one shared keep-alive client session, and what its failures mean.

Failure tree of an upstream call, and what the client gets::

    TimeoutError (connect, read silence, total)  -> 504 upstream_timeout  (outcome timeout)
    aiohttp.ClientError
    ├── ClientConnectorError (refused, DNS)      -> 502 upstream_unreachable
    ├── ServerDisconnectedError, ClientOSError   -> 502 upstream_reset
    ├── ClientResponseError, ClientPayloadError  -> 502 upstream_malformed
    └── anything else                            -> 502 upstream_error
"""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from proxy.config import UpstreamConfig
from proxy.timeline import Timeline
from proxy.wire import UpstreamTap, tap_upstream


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
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamFailure(
            502, "upstream_unreachable", "upstream_error", "cannot connect to the model server"
        )
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError):
        return UpstreamFailure(
            502, "upstream_reset", "upstream_error", "the model server closed the connection"
        )
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ClientPayloadError):
        return UpstreamFailure(
            502,
            "upstream_malformed",
            "upstream_error",
            "the model server sent a malformed response",
        )
    return UpstreamFailure(502, "upstream_error", "upstream_error", "the model server failed")


# The timeline of the request whose upstream call runs in this task, and the
# tap of the connection it was given.
_TIMELINE: ContextVar[Timeline | None] = ContextVar("taxmeter_timeline", default=None)
_TAP: ContextVar[UpstreamTap | None] = ContextVar("taxmeter_upstream_tap", default=None)


class _TransparentRequest(aiohttp.ClientRequest):
    """A client request that adds none of aiohttp's default headers.

    A transparent proxy forwards the client's headers and adds only its own
    (X-Forwarded-*, X-Request-Id). ``skip_auto_headers`` would do the same but
    rebuilds its set on every request; this shares one, built once.
    """

    _NONE: CIMultiDict[None] = CIMultiDict(
        [(name, None) for name in ("Accept", "Accept-Encoding", "Content-Type", "User-Agent")]
    )

    def update_auto_headers(self, skip_auto_headers: Iterable[str] | None) -> None:
        self._skip_auto_headers = self._NONE

    async def write_bytes(self, writer: Any, conn: Any, content_length: int | None = None) -> None:
        # The model's time starts when the whole request is on the wire; on
        # Python 3.11 aiohttp writes it from a task of its own, a loop turn later.
        await super().write_bytes(writer, conn, content_length)
        timeline = _TIMELINE.get()
        if timeline is not None:
            timeline.mark_upstream_written()


class _TimedConnector(aiohttp.TCPConnector):
    """Marks how long a request waited for a pooled connection or a new one.

    Cheaper than a TraceConfig's connection hooks, which build trace objects
    and await several signals for every request.
    """

    async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:  # noqa: ASYNC109
        timeline = _TIMELINE.get()
        if timeline is None:
            return await super().connect(req, traces, timeout)
        timeline.mark_connect_start()
        connection = await super().connect(req, traces, timeout)
        timeline.mark_connect_end()
        _TAP.set(tap_upstream(connection.protocol))
        return connection


def new_session(config: UpstreamConfig) -> aiohttp.ClientSession:
    """The one client session every request shares (keep-alive pool)."""
    connector = _TimedConnector(limit=config.max_connections, limit_per_host=0)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(
            total=config.total_timeout_s,
            sock_connect=config.connect_timeout_s,
            sock_read=config.read_timeout_s,
        ),
        request_class=_TransparentRequest,
        auto_decompress=False,  # bodies pass as they are, unless the proxy must read them
        cookie_jar=aiohttp.DummyCookieJar(),
    )


def last_read_ns() -> int | None:
    """When this task's upstream connection last read bytes (None: not known here)."""
    tap = _TAP.get()
    return None if tap is None else tap.read_ns


def upstream_url(base: str, request: web.BaseRequest) -> URL:
    """The upstream URL of a request; only its path and query are taken from it."""
    raw = request.raw_path
    if not raw.startswith("/"):
        # Absolute-form request target: keep the path, never the client's host.
        raw = request.rel_url.raw_path_qs
    return URL(base + raw, encoded=True)


class Fetched:
    """An upstream response with what was read of it before anything went to the client.

    For a judged stream the first chunk is read, and for a judged JSON answer
    the whole body, as soon as they arrive, so their marks are true even when
    the client's response is held for parallel input filters.
    """

    __slots__ = ("body", "first_arrived_ns", "first_chunk", "response", "stream")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.stream = response.headers.get("Content-Type", "").startswith("text/event-stream")
        self.first_chunk = b""
        self.first_arrived_ns = 0
        self.body: bytes | None = None

    @property
    def judgeable_json(self) -> bool:
        return self.response.status == 200 and self.response.headers.get(
            "Content-Type", ""
        ).startswith("application/json")

    def close(self) -> None:
        """Release a connection that was read to the end; close any other."""
        if self.response.content.at_eof():
            self.response.release()
        else:
            self.response.close()


async def fetch(
    session: aiohttp.ClientSession,
    request: web.BaseRequest,
    url: URL,
    headers: CIMultiDict[str],
    data: Any,
    timeline: Timeline,
    judged: bool,
) -> Fetched:
    """Send the request upstream and read what must be read before answering."""
    _TIMELINE.set(timeline)
    _TAP.set(None)
    timeline.mark_upstream_sent()
    response = await session.request(
        request.method,
        url,
        headers=headers,
        data=data,
        allow_redirects=False,
        auto_decompress=judged,
    )
    timeline.mark_upstream_headers()
    fetched = Fetched(response)
    try:
        if judged and fetched.stream and response.status == 200:
            fetched.first_chunk = await response.content.readany()
            fetched.first_arrived_ns = timeline.now()
            timeline.mark_upstream_first_byte(fetched.first_arrived_ns)
        elif judged and fetched.judgeable_json:
            fetched.body = await response.read()
            timeline.mark_upstream_last_byte(last_read_ns())
    except BaseException:
        response.close()
        raise
    return fetched
