"""Synthetic: a filter that costs a configured time, for calibration and demos.

``wall_ms`` is spent awaiting, so other requests keep running; ``cpu_ms`` is
burned on the event-loop thread, blocking it the way a synchronous regex or
model call would. A check costs roughly their sum. Reading the clock here
implements the cost; it is not a measurement of it.
"""

from __future__ import annotations

import asyncio
import math
import time

from filters.base import FilterContext, Stage, Verdict
from filters.params import flag, number, one_of, string

# uvloop timers have millisecond granularity and may fire up to a tick early
# or late, so the last stretch before the deadline is spent yielding instead.
_SPIN_S = 0.0015


def _duration_ms(name: str, value: object) -> float:
    value = number(name, value, "a number of milliseconds")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    return float(value)


async def _sleep_until(deadline: float) -> None:
    """Return at ``deadline`` (a perf_counter value), yielding to the loop meanwhile."""
    coarse = deadline - _SPIN_S - time.perf_counter()
    if coarse > 0:
        await asyncio.sleep(coarse)
    # A deliberate busy wait: an Event or timer could not wake us this precisely.
    while time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0)


def _burn_cpu(seconds: float) -> None:
    """Spin until this thread has used ``seconds`` of CPU time."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


class Synthetic:
    """Costs ``cpu_ms`` of blocking CPU then ``wall_ms`` of awaiting, then
    returns ``action``: allow, block with ``reason``, or redact the whole text
    to ``[SYNTHETIC]``."""

    stages: tuple[Stage, ...] = ("input", "output", "stream")

    def __init__(
        self,
        *,
        wall_ms: float = 0,
        cpu_ms: float = 0,
        action: str = "allow",
        reason: str = "synthetic",
        cpu_bound: bool = False,
    ) -> None:
        self._wall_s = _duration_ms("wall_ms", wall_ms) / 1000
        self._cpu_s = _duration_ms("cpu_ms", cpu_ms) / 1000
        one_of("action", action, ("allow", "block", "redact"))
        # Any string but the empty one (white space too): the reason is the test's own.
        if not string("reason", reason):
            raise ValueError("reason: expected a non-empty string")
        # Declares itself CPU-bound: the runner then calls it on a worker thread.
        self.cpu_bound = flag("cpu_bound", cpu_bound)
        self._verdict = {
            "allow": Verdict.allow(),
            "block": Verdict.block(reason),
            "redact": Verdict.redact("[SYNTHETIC]", reason),
        }[action]

    async def check(self, ctx: FilterContext) -> Verdict:
        if self._cpu_s:
            _burn_cpu(self._cpu_s)
        if self._wall_s:
            # The deadline starts after the burn: wall_ms adds to cpu_ms.
            await _sleep_until(time.perf_counter() + self._wall_s)
        return self._verdict
