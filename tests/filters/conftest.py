"""Fixtures for filter tests. The ``make_ctx`` factory lives in ``helpers``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import uvloop


@pytest.fixture
def uvloop_runner() -> Iterator[asyncio.Runner]:
    """A runner on a fresh uvloop loop, the loop the proxy serves on.

    Timing tests drive it from sync tests so that what they measure never
    depends on which loop pytest-asyncio happens to be configured with.
    """
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        yield runner
