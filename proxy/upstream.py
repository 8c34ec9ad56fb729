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

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from yarl import URL

from proxy.config import UpstreamConfig


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


def new_session(config: UpstreamConfig) -> aiohttp.ClientSession:
    """The one client session every request shares (keep-alive pool)."""
    connector = aiohttp.TCPConnector(limit=config.max_connections, limit_per_host=0)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(
            total=config.total_timeout_s,
            sock_connect=config.connect_timeout_s,
            sock_read=config.read_timeout_s,
        ),
        # A transparent proxy adds no headers of its own and passes bodies as they are.
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )


def upstream_url(base: str, request: web.BaseRequest) -> URL:
    """The upstream URL of a request; only its path and query are taken from it."""
    raw = request.raw_path
    if not raw.startswith("/"):
        # Absolute-form request target: keep the path, never the client's host.
        raw = request.rel_url.raw_path_qs
    return URL(base + raw, encoded=True)


async def body_chunks(request: web.BaseRequest) -> AsyncIterator[bytes]:
    """The request body as it arrives, for bodies forwarded without being read."""
    async for chunk in request.content.iter_any():
        yield chunk
