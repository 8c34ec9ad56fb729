"""The wire clock: a request's time starts when its first byte is read from the connection.

aiohttp calls a handler only after the bytes were read, parsed and a task was
scheduled; time spent there is invisible from inside the handler. Every
listener that serves the proxy runs aiohttp's protocol behind a
:class:`WireTap`, which notes when the first byte of each request arrived
(and how late the event loop was running then, see
:class:`proxy.measure.loop_watch.LoopWatch`) before passing the bytes on unchanged.

Connections to the upstream note when they read bytes themselves (see
:mod:`proxy.upstream.connection`), so the time a read answer then waits for the
handler's task to resume is the proxy's, not the model's.

The tap belongs to the connection and is its clock
(:class:`proxy.measure.arrival.ConnectionClock`): the handler takes the
arrival when it starts and frees the clock when it ends, so the first byte of
the next request on a keep-alive connection starts the next clock, and body
bytes read while a request is served never do.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from proxy.exchange.limits import REJECTIONS
from proxy.measure.arrival import ConnectionClock, arrival_now
from proxy.measure.loop_watch import LoopWatch
from proxy.measure.timeline import Timeline
from proxy.server.client_limits import (
    CLIENT_LIMITS,
    DEFAULT_LIMITS,
    ClientLimits,
    Refused,
    request_timeout,
)
from proxy.server.http_errors import CleanErrors, new_handler
from proxy.server.server_header import AnonymousRequest

log = logging.getLogger("taxmeter.http")

# The app's loop watch, which the connections' clocks read (none: the loop is on time).
LOOP_WATCH = web.AppKey("loop_watch", LoopWatch)

# Loop timers have millisecond resolution: one due sooner is waited for this long.
_MIN_WAIT_NS = 1_000_000


class WireHandler(CleanErrors):
    """aiohttp's connection handler (see proxy.server.http_errors), telling its tap
    when answers end."""

    __slots__ = ("tap",)

    tap: WireTap

    def log_access(
        self, request: web.BaseRequest, response: web.StreamResponse, time: float | None
    ) -> None:
        # aiohttp calls this once it has written each answer, access log or not: the one
        # place that sees the end of every answer, a 429 or a parser's 400 included.
        self.tap.answered()
        super().log_access(request, response, time)


class WireTap(ConnectionClock, asyncio.Protocol):
    """aiohttp's request handler protocol, with the arrival of each request's first byte.

    Everything passes straight on; ``connection_made``, ``data_received`` and
    ``connection_lost`` also keep the connection's clock and its one timer.
    """

    __slots__ = ("_listener", "_timer", "busy", "fresh", "handler")

    def __init__(self, handler: WireHandler, listener: _Listener) -> None:
        super().__init__()  # the clock: no arrival yet
        self.handler = handler
        handler.tap = self
        self.busy = False  # a request's head is complete and its answer not yet written
        self.fresh = True  # nothing answered yet: the first head's time counts from the opening
        self._listener = listener
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.idle_since_ns = Timeline.now()
        self.handler.connection_made(transport)
        self._wait(self._listener.shortest_ns)

    def data_received(self, data: bytes) -> None:
        if self.arrival is None:
            self.arrival = arrival_now(self.idle_since_ns, self._listener.loop_watch)
        self.handler.data_received(data)

    def eof_received(self) -> None:
        self.handler.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._listener.open -= 1
        self.handler.connection_lost(exc)

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()

    def answered(self) -> None:
        """An answer is written: the connection is idle from now, until a next byte."""
        self.busy = False
        self.fresh = False
        self.arrival = None
        self.idle_since_ns = Timeline.now()

    def _wait(self, wait_ns: int) -> None:
        self._timer = asyncio.get_running_loop().call_later(wait_ns / 1e9, self._check)

    def _check(self) -> None:
        """The connection's timer: act on the deadline that applies now, if it passed."""
        self._timer = None
        handler = self.handler
        if handler.transport is None:
            return  # closing already
        listener = self._listener
        if self.busy:  # the handler's business (client_body_timeout_s, its own timeouts)
            self._wait(listener.shortest_ns)
            return
        arrival = self.arrival
        if arrival is None:
            wait = listener.shortest_ns if self.fresh else listener.keepalive_ns
            deadline = self.idle_since_ns + wait
        else:
            start = self.idle_since_ns if self.fresh else arrival.read_ns
            deadline = start + listener.header_ns
        now = Timeline.now()
        if now < deadline:
            # Never further ahead than the shortest timeout: a deadline that begins
            # while this timer waits (a first byte, an answer's end) ends after it.
            self._wait(max(min(deadline - now, listener.shortest_ns), _MIN_WAIT_NS))
        elif arrival is None:
            handler.force_close()  # idle: nothing is owed
        else:
            log.debug("a request head from %s took too long", handler.peername)
            if listener.rejections is not None:
                listener.rejections.count("header_timeout")
            handler.transport.write(request_timeout(listener.limits))
            handler.force_close()  # closes once the 408 is written


class _Listener:
    """A listener's protocol factory: aiohttp's server's protocols, each behind a tap
    (and answering parser errors cleanly, see proxy.server.http_errors), no more at once
    than ``max_client_connections``."""

    def __init__(self, server: web.Server, app: web.Application, limits: ClientLimits) -> None:
        self.server = server
        self.app = app
        self.limits = limits
        self.rejections = app.get(REJECTIONS)
        self.loop_watch = app.get(LOOP_WATCH)
        self.open = 0
        self.header_ns = limits.header_ns
        self.keepalive_ns = limits.keepalive_ns
        # A silent new connection's wait, and the longest a connection's timer ever waits.
        self.shortest_ns = min(self.header_ns, self.keepalive_ns)
        # Each head parsed asks this for its request object (see AnonymousRequest).
        server.request_factory = self._make_request

    def __call__(self) -> asyncio.Protocol:
        if self.open >= self.limits.max_connections:
            return Refused(self.rejections)
        self.open += 1  # counted here, not once connected: a burst is accepted in one go
        return WireTap(new_handler(self.server, WireHandler), self)

    def _make_request(
        self,
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> web.BaseRequest:
        cast(WireHandler, protocol).tap.busy = True
        # The app's own factory (what aiohttp would call), with the request class chosen.
        return self.app._make_request(
            message, payload, protocol, writer, task, _cls=AnonymousRequest
        )

    def __getattr__(self, name: str) -> Any:
        # Sites read the server's other attributes (e.g. its connections).
        return getattr(self.server, name)


class WireRunner(web.AppRunner):
    """An AppRunner whose sites serve every connection behind a :class:`WireTap`,
    within the app's :class:`ClientLimits` (its ``CLIENT_LIMITS``, or the defaults)."""

    __slots__ = ("_listener", "limits")

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        self.limits = app.get(CLIENT_LIMITS, DEFAULT_LIMITS)
        self._listener: _Listener | None = None
        kwargs.setdefault("keepalive_timeout", self.limits.backstop_s)
        super().__init__(app, **kwargs)

    @property
    def open_connections(self) -> int:
        """Client connections open now (those turned away are never counted)."""
        return 0 if self._listener is None else self._listener.open

    @property
    def server(self) -> Any:
        inner = super().server
        if inner is None:
            return None
        if self._listener is None or self._listener.server is not inner:
            self._listener = _Listener(inner, self.app, self.limits)
        return self._listener
