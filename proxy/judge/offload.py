"""Running CPU-bound filters off the event loop.

A filter class (or instance) with ``cpu_bound = True`` is called on a worker
thread, each thread with an event loop of its own for the filter's
coroutine, so the proxy's loop keeps serving other requests meanwhile. This
helps fully for work that releases the GIL (model inference in torch or
ONNX Runtime, most C extensions, hashing, compression); pure-Python work
still takes the GIL in turns, which bounds how long it can stall the loop
to the interpreter's switch interval rather than the whole call.

A call that outlives its ``timeout_ms`` is abandoned, not stopped: the thread
finishes it and the result is dropped. Filters that are called this way must
be safe to call from several threads at once.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from time import thread_time_ns

from filters.base import Filter, FilterContext, Verdict


class ThreadOffload:
    """A small pool of threads, each running filter coroutines on its own loop.

    Its owner makes one and shares it among all the chains it builds (the
    proxy's :class:`proxy.control.runtime.Runtime`, across reloads; the
    ``evaluate`` command), and closes it when done. Its threads start at the
    first offloaded call.
    """

    def __init__(self, workers: int | None = None) -> None:
        self._workers = workers or min(4, os.cpu_count() or 1)
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._loops: list[asyncio.AbstractEventLoop] = []  # to close with the pool
        self._lock = threading.Lock()

    def _thread_loop(self) -> asyncio.AbstractEventLoop:
        loop: asyncio.AbstractEventLoop | None = getattr(self._local, "loop", None)
        if loop is None:
            loop = self._local.loop = asyncio.new_event_loop()
            with self._lock:
                self._loops.append(loop)
        return loop

    def _call(self, instance: Filter, ctx: FilterContext) -> tuple[Verdict, int]:
        started = thread_time_ns()  # this worker thread runs only this call meanwhile
        verdict = self._thread_loop().run_until_complete(instance.check(ctx))
        return verdict, thread_time_ns() - started

    async def check(self, instance: Filter, ctx: FilterContext) -> tuple[Verdict, int]:
        """The filter's verdict, and the CPU its call used on the worker thread."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="taxmeter-filter")
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, self._call, instance, ctx
        )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        with self._lock:
            loops, self._loops = self._loops, []
        for loop in loops:
            # One still running a call that outlived its timeout is left to it.
            if not loop.is_running():
                loop.close()
