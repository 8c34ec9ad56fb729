"""Waiting, in a test, for something another task does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest


async def eventually(condition: Callable[[], bool], within_s: float = 1.0) -> float:
    """Seconds until ``condition()`` held; fails the test after ``within_s``."""
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > within_s:
            pytest.fail(f"condition still false after {within_s} s")
        await asyncio.sleep(0.005)
    return time.perf_counter() - start
