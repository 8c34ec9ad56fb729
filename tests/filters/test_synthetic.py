from __future__ import annotations

import asyncio
import re
import statistics
import time
from typing import Any

import pytest

from filters.base import STAGES, Filter, Stage
from filters.synthetic import Synthetic
from tests.filters.helpers import make_ctx


async def _durations_ms(synthetic: Synthetic, calls: int) -> list[float]:
    ctx = make_ctx("hello")
    durations = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        await synthetic.check(ctx)
        durations.append((time.perf_counter_ns() - start) / 1e6)
    return durations


def test_wall_ms_is_accurate_on_uvloop(uvloop_runner: asyncio.Runner) -> None:
    uvloop_runner.run(_durations_ms(Synthetic(wall_ms=1), 3))  # warm up the loop and imports
    durations = uvloop_runner.run(_durations_ms(Synthetic(wall_ms=20), 10))
    # Never early; and not late by design: a busy host delays some wake-ups (so
    # no mean or median), but the fastest of ten shows what the filter itself does.
    assert 20.0 <= min(durations) <= 20.5, durations
    assert statistics.median(durations) < 25.0, durations


def test_wall_ms_does_not_block_the_loop(uvloop_runner: asyncio.Runner) -> None:
    synthetic = Synthetic(wall_ms=30)

    async def five_at_once() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(synthetic.check(make_ctx("x")) for _ in range(5)))
        return time.perf_counter() - start

    assert uvloop_runner.run(five_at_once()) < 0.030 * 2


async def test_cpu_ms_burns_cpu_on_the_calling_thread() -> None:
    start = time.thread_time()
    await Synthetic(cpu_ms=15).check(make_ctx("x"))
    assert time.thread_time() - start >= 0.015


def test_cpu_ms_blocks_the_loop(uvloop_runner: asyncio.Runner) -> None:
    synthetic = Synthetic(cpu_ms=10)

    async def three_at_once() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(synthetic.check(make_ctx("x")) for _ in range(3)))
        return time.perf_counter() - start

    assert uvloop_runner.run(three_at_once()) >= 0.030


async def test_wall_ms_spends_little_cpu() -> None:
    start = time.thread_time()
    await Synthetic(wall_ms=30).check(make_ctx("x"))
    # Only the final spin before the deadline (about 1.5 ms) should run hot.
    assert time.thread_time() - start < 0.015


# (params, expected action, expected redacted text or reason)
CASES = [
    pytest.param({}, "allow", None, id="default-allows"),
    pytest.param({"action": "block"}, "block", "synthetic", id="block"),
    pytest.param({"action": "block", "reason": "demo"}, "block", "demo", id="block-reason"),
    pytest.param({"action": "redact"}, "redact", "[SYNTHETIC]", id="redact"),
]


@pytest.mark.parametrize(("params", "action", "expected"), CASES)
async def test_verdict(params: dict[str, Any], action: str, expected: str | None) -> None:
    verdict = await Synthetic(**params).check(make_ctx("some text"))
    assert verdict.action == action
    if action == "block":
        assert verdict.reason == expected
    elif action == "redact":
        assert verdict.text == expected
    else:
        assert verdict.reason is None


@pytest.mark.parametrize("stage", STAGES)
async def test_runs_on_every_stage(stage: Stage) -> None:
    synthetic = Synthetic(action="block")
    assert isinstance(synthetic, Filter)
    assert stage in synthetic.stages
    assert (await synthetic.check(make_ctx("x", stage))).action == "block"


BAD_PARAMS = [
    pytest.param({"wall_ms": -1}, ValueError, "wall_ms: expected a finite number >= 0", id="neg"),
    pytest.param({"cpu_ms": -0.5}, ValueError, "cpu_ms: expected a finite", id="negative-cpu"),
    pytest.param({"wall_ms": float("nan")}, ValueError, "wall_ms", id="nan"),
    pytest.param({"cpu_ms": float("inf")}, ValueError, "cpu_ms", id="inf"),
    pytest.param({"wall_ms": "20"}, TypeError, "wall_ms: expected a number", id="str"),
    pytest.param({"cpu_ms": True}, TypeError, "cpu_ms: expected a number", id="bool"),
    pytest.param({"action": "warn"}, ValueError, "action: expected", id="action"),
    pytest.param({"reason": 5}, TypeError, "reason: expected a string", id="reason-type"),
    pytest.param({"reason": ""}, ValueError, "reason: expected a non-empty", id="reason-empty"),
    pytest.param({"sleep_ms": 5}, TypeError, "'sleep_ms'", id="unknown-param"),
]


@pytest.mark.parametrize(("params", "error", "message"), BAD_PARAMS)
def test_rejects_bad_params(params: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        Synthetic(**params)
