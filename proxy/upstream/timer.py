"""The read timer of one upstream connection: silence past the read timeout fails the wait.

One timer per connection, moved lazily: a stream waits for bytes a hundred
times, and arming and cancelling a timer each time cost more than the rest
of the wait. The timer fires at the earliest time it was set for and, if the
current wait ends later, sets itself again.
"""

from __future__ import annotations

import asyncio
from typing import Any


class ReadTimer:
    """Fails the one future being watched with TimeoutError when its time is up."""

    __slots__ = ("_at", "_handle", "_loop", "_read_by", "_watched")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._watched: asyncio.Future[Any] | None = None
        self._read_by = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._at = 0.0

    def watch(self, waiter: asyncio.Future[Any], when: float) -> None:
        """Fail ``waiter`` at loop time ``when`` unless it is done first (whoever
        awaits it stops the watch when it is)."""
        self._watched, self._read_by = waiter, when
        if self._handle is None or self._at > when:
            if self._handle is not None:
                self._handle.cancel()
            self._arm(when)

    def unwatch(self) -> None:
        self._watched = None

    def cancel(self) -> None:
        """The connection is gone: no more timer."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self, when: float) -> None:
        self._handle, self._at = self._loop.call_at(when, self._check), when

    def _check(self) -> None:
        self._handle = None
        waiter = self._watched
        if waiter is None or waiter.done():
            return  # nobody waits: no timer until someone does
        if self._loop.time() >= self._read_by:
            waiter.set_exception(TimeoutError())
        else:
            self._arm(self._read_by)
