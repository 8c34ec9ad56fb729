"""A micro-batcher: concurrent calls share one run of a batch function on a thread of its own.

A filter that runs a model pays a fixed cost per forward pass on top of the
cost per input, so calls that arrive together are cheaper when they are
embedded together. :class:`MicroBatcher` owns one worker thread. Each call
submits its items and awaits its own future; the thread takes the first
waiting call, gathers the calls that are already waiting and those that
arrive within ``window_s`` of it, up to ``max_items`` items, runs ``work``
once on all their items and hands each call its slice of the results.

Waiting out the window is a bet that company is coming, so it is made only
while calls overlap: after a batch of one call, the next lone call runs at
once (one call at a time, as ``taxmeter evaluate`` sends them, would
otherwise pay the window every time and share nothing). Calls that queue up
while a batch runs are taken together regardless, so under load batches fill
as before; the first batch with company turns the window back on.

Futures are ``concurrent.futures.Future``s, completed on the worker thread,
so a caller may await from any event loop on any thread: the proxy's loop,
an offload thread's loop, a test's loop. ``work`` only ever runs on the one
worker thread, so it needs no locking of its own (a tokenizer that must not
be used from two threads at once is safe here).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from time import monotonic
from typing import Generic, TypeVar

T = TypeVar("T")

# How long close() lets the worker finish the batch it is running.
_JOIN_TIMEOUT_S = 10.0


@dataclass(slots=True)
class _Job(Generic[T]):
    items: Sequence[str]
    future: Future[list[T]] = field(default_factory=Future)
    enqueued: float = field(default_factory=monotonic)


class MicroBatcher(Generic[T]):
    """Runs ``work(items) -> one result per item`` in batches on a worker thread.

    ``on_start`` runs first on the worker thread (thread-local settings such as
    a library's thread count). ``batches`` counts calls of ``work``.
    """

    def __init__(
        self,
        work: Callable[[list[str]], list[T]],
        *,
        window_s: float,
        max_items: int,
        name: str,
        on_start: Callable[[], None] | None = None,
    ) -> None:
        self._work = work
        self._window_s = window_s
        self._max_items = max_items
        self._on_start = on_start
        self._queue: queue.SimpleQueue[_Job[T] | None] = queue.SimpleQueue()
        # Held while checking `_closed` and enqueueing, so that no job can land
        # behind the stop marker and wait forever.
        self._lock = threading.Lock()
        self._closed = False
        self._overlapping = True  # until a batch of one says otherwise
        self.batches = 0
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def submit(self, items: Sequence[str]) -> Future[list[T]]:
        """Queue ``items``; the future holds their results, in order."""
        job: _Job[T] = _Job(items)
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._thread.name} is closed")
            self._queue.put(job)
        return job.future

    async def run(self, items: Sequence[str]) -> list[T]:
        """``submit`` and await the results on the running loop.

        Cancelling the awaiting task cancels the job if it has not started,
        so a call that timed out costs no forward pass.
        """
        return await asyncio.wrap_future(self.submit(items))

    def close(self) -> None:
        """Stop after the running batch; jobs still waiting fail with RuntimeError."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)

    async def aclose(self) -> None:
        self.close()
        await asyncio.to_thread(self._thread.join, _JOIN_TIMEOUT_S)

    def _serve(self) -> None:
        if self._on_start is not None:
            self._on_start()
        carry: _Job[T] | None = None
        while not self._closed:
            first = carry if carry is not None else self._queue.get()
            carry = None
            if first is None:
                break
            batch, count = [first], len(first.items)
            deadline = first.enqueued + (self._window_s if self._overlapping else 0.0)
            while count < self._max_items:
                # Jobs that queued up during the last batch are taken at once:
                # only a lone job waits out the window for company.
                try:
                    job = self._queue.get(timeout=max(0.0, deadline - monotonic()))
                except queue.Empty:
                    break
                if job is None:
                    break
                if count + len(job.items) > self._max_items:
                    carry = job
                    break
                batch.append(job)
                count += len(job.items)
            if self._closed:
                self._fail(batch)
                break
            self._overlapping = len(batch) > 1 or carry is not None
            self._run(batch)
        self._fail([carry] if carry is not None else [])
        while True:  # only jobs queued before the stop marker can be left
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                self._fail([job])

    def _run(self, batch: list[_Job[T]]) -> None:
        live = [job for job in batch if job.future.set_running_or_notify_cancel()]
        if not live:
            return
        items = [item for job in live for item in job.items]
        self.batches += 1
        try:
            results = self._work(items)
            if len(results) != len(items):
                raise RuntimeError(f"work returned {len(results)} results for {len(items)} items")
        except Exception as exc:
            for job in live:
                job.future.set_exception(exc)
            return
        start = 0
        for job in live:
            job.future.set_result(results[start : start + len(job.items)])
            start += len(job.items)

    def _fail(self, jobs: list[_Job[T]]) -> None:
        for job in jobs:
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(RuntimeError(f"{self._thread.name} is closed"))
