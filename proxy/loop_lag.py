"""Event-loop lag: how late the loop runs a timer, measured all the time.

A filter (or anything else) that blocks the event loop delays every request
on it, in ways no request's own timeline attributes to the culprit. This
monitor wakes every ``interval_s`` and records how much later than asked it
woke, so saturation and blocking show up as their own metric
(``taxmeter_event_loop_lag_seconds``) instead of disappearing into overhead.
"""

from __future__ import annotations

import asyncio
from time import perf_counter

from prometheus_client import Histogram


async def watch_loop_lag(histogram: Histogram, interval_s: float = 0.1) -> None:
    """Run until cancelled, observing each wake-up's lateness in seconds."""
    while True:
        asked = perf_counter() + interval_s
        await asyncio.sleep(interval_s)
        histogram.observe(max(0.0, perf_counter() - asked))
