"""The loop watch: how late the event loop runs, all the time.

A request's first byte or an upstream's answer handled right after the loop
was blocked or saturated waited for it; that wait is the proxy's, and the
watch says how long it was (:meth:`LoopWatch.waited`). Its lateness also
feeds the event-loop lag metric.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import perf_counter_ns

NS_PER_S = 1_000_000_000

# The loop watch's timer period; lateness under the slack is timer rounding
# (uvloop's timers have millisecond resolution; on an idle loop 99% of
# wake-ups are less late than this), not waiting.
TICK_S = 0.005
SLACK_NS = 500_000
# An event handled this soon after the loop caught up was queued behind the stall.
BACKLOG_NS = 2_000_000


class LoopWatch:
    """How late the event loop runs, all the time: a timer every ``TICK_S``.

    Each wake-up's lateness goes to the observers (the event-loop lag
    metric). The last late wake-up is kept, so that an event handled right
    after the loop was blocked or saturated (a request's first byte, an
    upstream answer) can be charged the time it waited for the loop: see
    :meth:`waited`. One per proxy app, made where the app is built and
    handed to what reads it (its connections' clocks, its requests' timelines).
    """

    def __init__(self) -> None:
        self.observers: list[Callable[[float], None]] = []
        self._due_ns = 0
        self._late: tuple[int, int] | None = None  # (due, ran) of the last late wake-up
        self._handle: asyncio.TimerHandle | None = None

    def start(self, observe: Callable[[float], None]) -> None:
        self.observers.append(observe)
        if self._handle is None:
            self._due_ns = perf_counter_ns()
            self._tick()

    def stop(self, observe: Callable[[float], None]) -> None:
        self.observers.remove(observe)
        if not self.observers and self._handle is not None:
            self._handle.cancel()
            self._handle = None
            self._late = None

    def _tick(self) -> None:
        now = perf_counter_ns()
        lateness = max(0, now - self._due_ns)
        self._late = (self._due_ns, now) if lateness > SLACK_NS else None
        for observe in self.observers:
            observe(lateness / NS_PER_S)
        self._due_ns = now + int(TICK_S * NS_PER_S)
        self._handle = asyncio.get_running_loop().call_later(TICK_S, self._tick)

    def waited(self, now_ns: int, since_ns: int) -> int:
        """How long an event handled at ``now_ns``, not ready before ``since_ns``, waited.

        Either a wake-up is overdue now (the loop is late at this moment), or
        the last one was late and the event is handled in the backlog right
        after it; otherwise the loop was on time and nothing is charged.
        """
        if self._handle is None:
            return 0
        if now_ns - self._due_ns > SLACK_NS:
            start, end = self._due_ns, now_ns
        elif self._late is not None and now_ns - self._late[1] < BACKLOG_NS:
            start, end = self._late
        else:
            return 0
        return max(0, end - max(start, since_ns))
