"""When a request arrived: its first byte on the wire, less the time it waited for the loop.

A client connection carries a :class:`ConnectionClock` (the server's wire
tap is one, see :mod:`proxy.server.wire`). The handler takes the arrival
with :func:`take_arrival` when it starts and frees the clock with
:func:`request_done` when it ends, so the first byte of the next request on
a keep-alive connection starts the next clock, and body bytes read while a
request is served never do.
"""

from __future__ import annotations

from time import perf_counter_ns
from typing import NamedTuple

from aiohttp import web

from proxy.measure.loop_watch import LoopWatch


class Arrival(NamedTuple):
    """When a request's first byte was read, and how long it had waited for the loop."""

    read_ns: int
    waited_ns: int


def arrival_now(idle_since_ns: int, loop_watch: LoopWatch | None) -> Arrival:
    """The arrival of a request whose first byte is being read now.

    ``idle_since_ns``: when its connection was last idle (no byte of this
    request can have arrived before), which bounds the wait charged;
    ``loop_watch``: the app's, which says how late the loop ran (None: on time).
    """
    now = perf_counter_ns()
    return Arrival(now, 0 if loop_watch is None else loop_watch.waited(now, idle_since_ns))


class ConnectionClock:
    """A client connection's clock: the arrival of the request being read, and
    since when the connection has been idle (no byte of a request before it)."""

    __slots__ = ("arrival", "idle_since_ns")

    def __init__(self) -> None:
        self.arrival: Arrival | None = None
        self.idle_since_ns = 0


def _clock(request: web.BaseRequest) -> ConnectionClock | None:
    transport = request.transport
    if transport is None:
        return None
    protocol = transport.get_protocol()
    return protocol if isinstance(protocol, ConnectionClock) else None


def take_arrival(request: web.BaseRequest) -> Arrival | None:
    """When this request's first byte arrived (None: not served behind a clock)."""
    clock = _clock(request)
    return None if clock is None else clock.arrival


def request_done(request: web.BaseRequest) -> None:
    """The request is answered: the next byte on its connection starts a new request."""
    clock = _clock(request)
    if clock is not None:
        clock.arrival = None
        clock.idle_since_ns = perf_counter_ns()
