"""Keeping the garbage collector's pauses off the request path, and showing them.

Everything built at start-up (the imported libraries, the apps, the
filters and their models) lives as long as the process: tens of thousands
of objects that every full collection walked, while every request in flight
waited. Under 64 concurrent streams a full collection ran about every 16 s
and took 29 ms: a pause as long as a filter's whole budget, charged to
whichever requests were in flight. :func:`freeze_startup_heap` moves them to
the permanent generation (``gc.freeze()``), so collections see only what
requests create; measured under the same load, no full collection ran at all.

Objects frozen this way are still freed by reference counting; only cycles
among them would outlive their use (a filter set replaced by a reload that
holds a cycle of its own).

What collections still cost is measured, not assumed:
``taxmeter_gc_pause_seconds{generation}`` observes every pause, and
``taxmeter_gc_frozen_objects`` says how much was frozen.
"""

from __future__ import annotations

import asyncio
import gc
from time import perf_counter_ns
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram

# From a young collection's tenth of a millisecond to a full one's tens of ms.
_PAUSE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)


def freeze_startup_heap() -> None:
    """Collect once, then put every surviving object out of the collector's sight."""
    gc.collect()
    gc.freeze()


class GcPauses:
    """Every collection's pause, by generation; started and stopped with the proxy.

    The collector calls back in the middle of whatever allocated: possibly
    inside prometheus-client, holding the lock of the very value an observe
    would take (with ``--workers`` its files' lock: a deadlock, seen). So the
    callback only appends to a list, and the pauses reach the histogram from
    the event loop, once a second.
    """

    FLUSH_EVERY_S = 1.0

    def __init__(self, registry: CollectorRegistry) -> None:
        pauses = Histogram(
            "taxmeter_gc_pause_seconds",
            "Pauses of Python's garbage collector in the proxy process, by generation.",
            ("generation",),
            buckets=_PAUSE_BUCKETS,
            registry=registry,
        )
        self._by_generation = [pauses.labels(str(g)) for g in range(3)]
        frozen = Gauge(
            "taxmeter_gc_frozen_objects",
            "Objects built at start-up and kept out of the collector's sight (gc.freeze).",
            registry=registry,
        )
        frozen.set_function(gc.get_freeze_count)
        self._started_ns = 0
        self._pending: list[tuple[int, int]] = []  # (generation, pause ns)
        self._timer: asyncio.TimerHandle | None = None

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started_ns = perf_counter_ns()
        else:
            self._pending.append((info["generation"], perf_counter_ns() - self._started_ns))

    def flush(self) -> None:
        """Observe the pauses noted since the last flush."""
        pending, self._pending = self._pending, []
        for generation, pause_ns in pending:
            self._by_generation[generation].observe(pause_ns / 1e9)

    def _flush_and_again(self) -> None:
        self.flush()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.FLUSH_EVERY_S, self._flush_and_again)

    def start(self) -> None:
        """Start noting pauses (on the running loop, which flushes them)."""
        gc.callbacks.append(self._on_collection)
        self._timer = asyncio.get_running_loop().call_later(
            self.FLUSH_EVERY_S, self._flush_and_again
        )

    def stop(self) -> None:
        if self._on_collection in gc.callbacks:
            gc.callbacks.remove(self._on_collection)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flush()
