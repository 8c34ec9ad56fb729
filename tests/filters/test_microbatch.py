"""MicroBatcher: concurrent calls share one run of the batch function, on its own thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable

import pytest

from filters.microbatch import MicroBatcher


class Recorder:
    """A batch function that records each batch and can be held back by a gate."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.threads: set[str] = set()
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, items: list[str]) -> list[str]:
        self.gate.wait(5)
        self.threads.add(threading.current_thread().name)
        self.batches.append(items)
        if "boom" in items:
            raise ValueError("boom")
        return [item.upper() for item in items]


Factory = Callable[..., MicroBatcher[str]]


@pytest.fixture
async def make() -> AsyncIterator[Factory]:
    made: list[MicroBatcher[str]] = []

    def factory(work: Recorder, window_ms: float = 20.0, max_items: int = 32) -> MicroBatcher[str]:
        batcher = MicroBatcher(work, window_s=window_ms / 1000, max_items=max_items, name="mb")
        made.append(batcher)
        return batcher

    yield factory
    for batcher in made:
        await batcher.aclose()


async def test_each_caller_gets_its_own_results_in_order(make: Factory) -> None:
    work = Recorder()
    batcher = make(work)
    calls = [[f"a{i}", f"b{i}"] for i in range(10)]
    results = await asyncio.gather(*(batcher.run(items) for items in calls))
    assert results == [[s.upper() for s in items] for items in calls]
    assert len(work.batches) < 10
    assert work.threads == {"mb"}  # never the caller's thread


async def test_calls_within_the_window_share_a_batch(make: Factory) -> None:
    work = Recorder()
    batcher = make(work, window_ms=200)
    first = asyncio.ensure_future(batcher.run(["x"]))
    await asyncio.sleep(0.02)
    assert await batcher.run(["y"]) == ["Y"]
    assert await first == ["X"]
    assert work.batches == [["x", "y"]]


async def test_max_items_caps_a_batch_and_the_rest_waits_for_the_next(make: Factory) -> None:
    work = Recorder()
    work.gate.clear()  # hold the first batch so the others queue up behind it
    batcher = make(work, window_ms=0, max_items=4)
    first = asyncio.ensure_future(batcher.run(["a"]))
    await asyncio.sleep(0.02)
    rest = [asyncio.ensure_future(batcher.run([f"{i}1", f"{i}2"])) for i in range(4)]
    await asyncio.sleep(0.02)
    work.gate.set()
    await asyncio.gather(first, *rest)
    assert [len(b) for b in work.batches] == [1, 4, 4]


async def test_a_call_larger_than_max_items_runs_alone(make: Factory) -> None:
    work = Recorder()
    batcher = make(work, window_ms=0, max_items=2)
    assert await batcher.run(["a", "b", "c"]) == ["A", "B", "C"]


async def test_an_error_reaches_every_caller_of_that_batch_only(make: Factory) -> None:
    work = Recorder()
    batcher = make(work, window_ms=100)
    bad = asyncio.ensure_future(batcher.run(["boom"]))
    good = asyncio.ensure_future(batcher.run(["ok"]))
    results = await asyncio.gather(bad, good, return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results)
    assert await batcher.run(["fine"]) == ["FINE"]  # the thread survived


async def test_a_cancelled_call_costs_nothing(make: Factory) -> None:
    work = Recorder()
    work.gate.clear()
    batcher = make(work, window_ms=0)
    running = asyncio.ensure_future(batcher.run(["first"]))
    await asyncio.sleep(0.02)
    waiting = asyncio.ensure_future(batcher.run(["dropped"]))
    await asyncio.sleep(0.01)
    waiting.cancel()
    await asyncio.sleep(0.01)  # the cancellation reaches the job through loop callbacks
    work.gate.set()
    assert await running == ["FIRST"]
    assert await batcher.run(["next"]) == ["NEXT"]
    assert ["dropped"] not in work.batches


async def test_callers_on_other_loops_and_threads(make: Factory) -> None:
    batcher = make(Recorder(), window_ms=50)

    def elsewhere(text: str) -> list[str]:
        return asyncio.run(batcher.run([text]))

    here = batcher.run(["here"])
    there = asyncio.to_thread(elsewhere, "there")
    from_here, from_there = await asyncio.gather(here, there)
    assert (from_here, from_there) == (["HERE"], ["THERE"])


async def test_after_close_calls_are_refused_and_waiting_ones_fail(make: Factory) -> None:
    work = Recorder()
    work.gate.clear()
    batcher = make(work, window_ms=0)
    running = asyncio.ensure_future(batcher.run(["a"]))
    await asyncio.sleep(0.02)
    waiting = asyncio.ensure_future(batcher.run(["b"]))
    await asyncio.sleep(0.01)
    batcher.close()
    work.gate.set()
    assert await running == ["A"]
    with pytest.raises(RuntimeError, match="closed"):
        await waiting
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit(["c"])


async def test_a_lone_call_waits_for_company_only_while_calls_overlap(make: Factory) -> None:
    work = Recorder()
    batcher = make(work, window_ms=300)
    await batcher.run(["first"])  # a fresh batcher expects company, and waits for it
    start = time.perf_counter()
    for text in ("one", "by", "one"):
        await batcher.run([text])
    # Three lone calls after a lone one: none waited out the 300 ms window.
    assert time.perf_counter() - start < 0.3
    work.gate.clear()  # two calls that overlap: the second queues behind the first
    first = asyncio.ensure_future(batcher.run(["a"]))
    await asyncio.sleep(0.02)
    second = asyncio.ensure_future(batcher.run(["b"]))
    third = asyncio.ensure_future(batcher.run(["c"]))
    await asyncio.sleep(0.02)
    work.gate.set()
    await asyncio.gather(first, second, third)
    assert work.batches[-1] == ["b", "c"]
    # Calls overlapped: a lone call waits again, and one arriving soon after joins it.
    late = asyncio.ensure_future(batcher.run(["x"]))
    await asyncio.sleep(0.05)
    assert await batcher.run(["y"]) == ["Y"]
    assert await late == ["X"]
    assert work.batches[-1] == ["x", "y"]
