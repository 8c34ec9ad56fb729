"""Filters for the canary tests, loaded by import path as a plugin would be."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from filters.base import FilterContext, Verdict


class Gate:
    """Holds every check until the test opens it; remembers being closed.

    ``entered`` is set when a check is waiting at the gate, so a test can act
    (reload the config) while a canary check is known to hold the filter.
    """

    stages = ("input",)
    entered: ClassVar[asyncio.Event]
    opened: ClassVar[asyncio.Event]
    closed: ClassVar[list[object]] = []
    closed_mid_check: ClassVar[list[object]] = []

    def __init__(self) -> None:
        self._checking = 0

    @classmethod
    def reset(cls) -> None:
        cls.entered = asyncio.Event()
        cls.opened = asyncio.Event()
        cls.closed = []
        cls.closed_mid_check = []

    async def check(self, ctx: FilterContext) -> Verdict:
        self._checking += 1
        try:
            Gate.entered.set()
            await Gate.opened.wait()
            return Verdict.allow()
        finally:
            self._checking -= 1

    async def aclose(self) -> None:
        if self._checking:
            Gate.closed_mid_check.append(self)
        Gate.closed.append(self)
