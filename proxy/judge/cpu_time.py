"""The CPU a filter's own code uses: its coroutine's steps on the thread's CPU clock.

A filter that awaits (a moderation call, a batch of model passes) lets other
tasks run on the same thread meanwhile; a wall clock around the call, or the
process's CPU clock, would charge it for them. Here every step of the
filter's coroutine (each ``send`` into it, up to its next suspension) is
timed on the thread's CPU clock, so only the filter's own work counts: a
filter that sleeps 20 ms reads about no CPU, one that spins 5 ms reads 5 ms.
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from time import thread_time_ns
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")


class Counter(Protocol):
    cpu_ns: int


async def cpu_timed(coroutine: Coroutine[Any, Any, T], counter: Counter) -> T:
    """Await ``coroutine``, adding the CPU of each of its steps to ``counter.cpu_ns``.

    Most filters finish in their first step: that one is run here, with two
    clock reads and nothing else; only a filter that suspends is handed to
    :class:`CpuTimed` for the rest of its steps.
    """
    # The first step inline, not through _step: this is the path of nearly every
    # call, and a function call and a tuple are a good part of what it costs.
    started = thread_time_ns()
    try:
        suspended = coroutine.send(None)
    except StopIteration as done:
        counter.cpu_ns += thread_time_ns() - started
        result: T = done.value
        return result
    except BaseException:
        counter.cpu_ns += thread_time_ns() - started
        raise
    counter.cpu_ns += thread_time_ns() - started
    return await CpuTimed(coroutine, counter, suspended)


def _step(
    coroutine: Coroutine[Any, Any, Any], counter: Counter, sent: Any, thrown: BaseException | None
) -> tuple[bool, Any]:
    """Run one step on the CPU clock: (finished, its result or what it suspended on)."""
    started = thread_time_ns()
    try:
        out = coroutine.send(sent) if thrown is None else coroutine.throw(thrown)
    except StopIteration as done:
        return True, done.value
    finally:
        counter.cpu_ns += thread_time_ns() - started
    return False, out


class CpuTimed(Generic[T]):
    """The rest of a suspended coroutine, the CPU of each step added to ``counter``."""

    __slots__ = ("_coroutine", "_counter", "_suspended")

    def __init__(self, coroutine: Coroutine[Any, Any, T], counter: Counter, suspended: Any) -> None:
        self._coroutine = coroutine
        self._counter = counter
        self._suspended = suspended

    def __await__(self) -> Generator[Any, Any, T]:
        suspended = self._suspended
        while True:
            sent: Any = None
            thrown: BaseException | None = None
            try:
                sent = yield suspended
            except BaseException as exc:  # a cancellation, or a timeout's: passed on in
                thrown = exc
            finished, suspended = _step(self._coroutine, self._counter, sent, thrown)
            if finished:
                result: T = suspended
                return result
