"""The wire clock: a request's time starts when its first byte is read from the connection.

aiohttp calls a handler only after the bytes were read, parsed and a task was
scheduled; time spent there is invisible from inside the handler. Every
listener that serves the proxy runs aiohttp's protocol behind a
:class:`WireTap`, which notes when the first byte of each request arrived
(and how late the event loop was running then, see
:class:`proxy.timeline.LoopWatch`) before passing the bytes on unchanged.

Connections to the upstream note when they read bytes themselves (see
:mod:`proxy.upstream_conn`), so the time a read answer then waits for the
handler's task to resume is the proxy's, not the model's.

The tap belongs to the connection; the handler takes the arrival with
:func:`take_arrival` when it starts and frees the tap with
:func:`request_done` when it ends, so the first byte of the next request on
a keep-alive connection starts the next clock, and body bytes read while a
request is served never do.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from proxy.http_errors import new_handler
from proxy.timeline import Arrival, Timeline, arrival_now


class WireTap(asyncio.Protocol):
    """aiohttp's request handler protocol, with the arrival of each request's first byte.

    Everything but ``connection_made`` and ``data_received`` passes straight on.
    """

    __slots__ = ("arrival", "handler", "idle_since_ns")

    def __init__(self, handler: RequestHandler) -> None:
        self.handler = handler
        self.arrival: Arrival | None = None
        self.idle_since_ns = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.idle_since_ns = Timeline.now()
        self.handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.arrival is None:
            self.arrival = arrival_now(self.idle_since_ns)
        self.handler.data_received(data)

    def eof_received(self) -> None:
        self.handler.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.handler.connection_lost(exc)

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()


class _TapFactory:
    """A protocol factory: aiohttp's server's protocols, each behind a tap (and
    answering parser errors cleanly, see proxy.http_errors)."""

    def __init__(self, server: web.Server) -> None:
        self.server = server

    def __call__(self) -> WireTap:
        return WireTap(new_handler(self.server))

    def __getattr__(self, name: str) -> Any:
        # Sites read the server's other attributes (e.g. its connections).
        return getattr(self.server, name)


class WireRunner(web.AppRunner):
    """An AppRunner whose sites serve every connection behind a :class:`WireTap`."""

    @property
    def server(self) -> Any:
        inner = super().server
        return None if inner is None else _TapFactory(inner)


def _tap(request: web.BaseRequest) -> WireTap | None:
    transport = request.transport
    if transport is None:
        return None
    protocol = transport.get_protocol()
    return protocol if isinstance(protocol, WireTap) else None


def take_arrival(request: web.BaseRequest) -> Arrival | None:
    """When this request's first byte arrived (None: not served behind a tap)."""
    tap = _tap(request)
    return None if tap is None else tap.arrival


def request_done(request: web.BaseRequest) -> None:
    """The request is answered: the next byte on its connection starts a new request."""
    tap = _tap(request)
    if tap is not None:
        tap.arrival = None
        tap.idle_since_ns = Timeline.now()
