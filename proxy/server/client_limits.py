"""Client limits: how long a request head may take, how long a connection may idle, how many.

Without these a client holds a connection, and the proxy's memory for it, for
as long as it likes: half a request head sent and never finished (slowloris),
or a connection opened and left silent. The names and meanings are nginx's:

- ``client_header_timeout_s``: the request line and headers must be complete
  this long after the request's first byte, or, for a connection's first
  request, after the connection opened (so a connection that sends nothing, or
  one byte a minute, is cut after it too). Beyond it the client gets 408
  ``client_header_timeout`` (OpenAI's SDKs retry on 408) and the connection is
  closed; it counts in ``taxmeter_rejected_requests_total{reason="header_timeout"}``.
- ``keepalive_timeout_s``: a connection with no request under way is closed
  this long after its last answer, without a word (clients reopen one). A new
  connection that never sends a byte is closed after the shorter of the two.
- ``max_client_connections``: a connection beyond it is closed as soon as it is
  accepted (``reason="client_connections"``), before anything is read or
  allocated for it. Counted per listener, so per worker with ``--workers``.

:mod:`proxy.server.wire` enforces them, one timer per connection. The proxy app
carries its limits under :data:`CLIENT_LIMITS`; a listener without them (the
metrics and admin listeners) gets :data:`DEFAULT_LIMITS`.
"""

from __future__ import annotations

import asyncio
import email.utils
from dataclasses import dataclass
from typing import cast

from aiohttp import web

from proxy.config.schema import Config
from proxy.exchange.limits import Rejections
from proxy.formats.errors import error_body

_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """A listener's limits on its clients' connections (see the module docstring)."""

    header_timeout_s: float = 60.0
    keepalive_timeout_s: float = 75.0
    max_connections: int = 10_000

    @classmethod
    def from_config(cls, config: Config) -> ClientLimits:
        return cls(
            config.client_header_timeout_s,
            config.keepalive_timeout_s,
            config.max_client_connections,
        )

    @property
    def backstop_s(self) -> float:
        """aiohttp's own keep-alive timeout: later than any of ours, so that ours decide.

        aiohttp's cannot be turned off (0 closes every connection once idle); it
        counts from the last answer even once the next request has begun, and
        would cut a request head short without the 408.
        """
        return self.header_timeout_s + self.keepalive_timeout_s + 1.0

    @property
    def header_ns(self) -> int:
        return int(self.header_timeout_s * _NS)

    @property
    def keepalive_ns(self) -> int:
        return int(self.keepalive_timeout_s * _NS)


DEFAULT_LIMITS = ClientLimits()
CLIENT_LIMITS = web.AppKey("client_limits", ClientLimits)


def request_timeout(limits: ClientLimits) -> bytes:
    """The whole 408 answer to a request whose head did not arrive in time (then: close)."""
    body = error_body(
        f"the request line and headers did not arrive within {limits.header_timeout_s:g} s",
        "client_header_timeout",
    )
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        f"Date: {email.utils.formatdate(usegmt=True)}\r\n\r\n"
    )
    return head.encode("ascii") + body


class Refused(asyncio.Protocol):
    """A connection beyond ``max_client_connections``: counted and closed on arrival."""

    __slots__ = ("_rejections",)

    def __init__(self, rejections: Rejections | None) -> None:
        self._rejections = rejections

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._rejections is not None:
            self._rejections.count("client_connections")
        # abort, not close: nothing is owed to this peer, and its socket is freed at once.
        cast(asyncio.Transport, transport).abort()
