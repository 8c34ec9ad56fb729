"""The measuring rig: which target is live, and what every process and core used meanwhile.

Only the target under test runs; every other proxy is paused (SIGSTOP) so
it cannot wake on its core. Around each measured run the rig reads the CPU
time of the proxy, the model server and this process (the load generator
for the Python clients) and the busy time of each core.

The host may be shared. CPU time the cores spent that none of our processes
accounts for is *foreign*: before each run the rig waits (bounded) for the
host to be quiet, and a run during which foreign work exceeded
``FOREIGN_LIMIT`` of a core is repeated (at most ``ATTEMPTS`` times; the
least disturbed attempt is kept and flagged). Both come out of one time
budget per benchmark run, so a busy host makes the run longer by a bounded
amount and the rest of its figures flagged.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from procs import (
    Child,
    CoreTimes,
    alive,
    busy_fraction,
    busy_s,
    core_times,
    cpu_ns,
    pause,
    resume,
    tree_cpu_ns,
)
from targets import Target

T = TypeVar("T")
FOREIGN_LIMIT = 0.05  # of one core
ATTEMPTS = 3
QUIET_WINDOW_S = 0.25
QUIET_MAX_S = 30.0  # per run


class TargetGone(Exception):
    """The proxy under test exited: it is left out of the rest of the run."""


@dataclass
class Quiet:
    """What one benchmark run may spend on other work (waiting for it to stop, and
    measuring again), and what it spent; once spent, runs are only flagged."""

    budget_s: float
    waited_s: float = 0.0
    retried: int = 0


@dataclass(frozen=True)
class Snapshot:
    wall: float
    proxy_ns: int | None
    model_ns: int
    self_ns: int
    cores: dict[int, CoreTimes]


@dataclass(frozen=True)
class Usage:
    """What was used between two snapshots."""

    wall_s: float
    proxy_cpu_s: float | None  # None for the model server alone
    model_cpu_s: float
    self_cpu_s: float  # this process: the Python load generators
    load_core_busy: float  # 0..1, the busiest load core
    proxy_core_busy: float  # 0..1
    foreign: float = 0.0  # CPU that is none of ours, in cores (0..number of cores)
    attempts: int = 1


class Rig:
    def __init__(
        self,
        model: Child,
        targets: dict[str, Target],
        load_cores: set[int],
        proxy_core: int,
        quiet: Quiet,
        restart_model: Callable[[], Awaitable[Child]],
    ) -> None:
        self.model = model
        self.targets = targets
        self.load_cores = load_cores
        self.proxy_core = proxy_core
        self.quiet = quiet
        self._restart_model = restart_model
        self.events: list[str] = []  # what went wrong and was repaired, for the notes
        self.gone: set[str] = set()  # proxies that exited

    @staticmethod
    def self_cpu_ns() -> int:
        return cpu_ns(os.getpid())

    def snapshot(self, target: Target) -> Snapshot:
        return Snapshot(
            wall=time.perf_counter(),
            proxy_ns=None if target.pid is None else tree_cpu_ns(target.pid),
            model_ns=cpu_ns(self.model.pid),
            self_ns=self.self_cpu_ns(),
            cores=core_times(),
        )

    def usage(self, before: Snapshot, after: Snapshot, other_cpu_s: float = 0.0) -> Usage:
        """``other_cpu_s``: CPU of our processes the snapshots do not see (wrk)."""
        proxy = None
        if before.proxy_ns is not None and after.proxy_ns is not None:
            proxy = (after.proxy_ns - before.proxy_ns) / 1e9
        load = [busy_fraction(before.cores, after.cores, c) for c in self.load_cores]
        wall = after.wall - before.wall
        model = (after.model_ns - before.model_ns) / 1e9
        own = (after.self_ns - before.self_ns) / 1e9
        ours = (proxy or 0.0) + model + own + other_cpu_s
        foreign = (busy_s(before.cores, after.cores) - ours) / wall if wall > 0 else 0.0
        return Usage(
            wall_s=wall,
            proxy_cpu_s=proxy,
            model_cpu_s=model,
            self_cpu_s=own,
            load_core_busy=max(load) if load else float("nan"),
            proxy_core_busy=busy_fraction(before.cores, after.cores, self.proxy_core),
            foreign=max(0.0, foreign),
        )

    async def wait_quiet(self) -> None:
        """Wait (bounded) until foreign work uses under FOREIGN_LIMIT of a core."""
        idle = Target("direct", "")
        waited = 0.0
        while waited < QUIET_MAX_S and self.quiet.waited_s < self.quiet.budget_s:
            try:
                before = self.snapshot(idle)
                await asyncio.sleep(QUIET_WINDOW_S)
                if self.usage(before, self.snapshot(idle)).foreign < FOREIGN_LIMIT:
                    return
            except OSError:  # the model server is gone; measure() repairs it
                return
            waited += QUIET_WINDOW_S
            self.quiet.waited_s += QUIET_WINDOW_S

    async def measure(
        self,
        target: Target,
        warm: Callable[[], Awaitable[object]],
        run: Callable[[], Awaitable[tuple[T, float]]],
        what: str,
    ) -> tuple[T, Usage]:
        """With the target live, ``warm()`` then ``run()`` (which returns its result and
        the CPU time of helpers such as wrk), measured; repeated while foreign work
        disturbed it, the least disturbed attempt kept."""
        best: tuple[T, Usage] | None = None
        for attempt in range(1, ATTEMPTS + 2):
            await self._check(target, what)
            if best is not None and attempt > ATTEMPTS:
                break
            await self.wait_quiet()
            try:
                async with self.live(target):
                    await warm()
                    before = self.snapshot(target)
                    result, other_cpu_s = await run()
                    after = self.snapshot(target)
            except Exception:
                if self._all_alive(target):
                    raise
                continue  # a process died: _check repairs it or gives the target up
            if not self._all_alive(target):
                continue
            usage = replace(self.usage(before, after, other_cpu_s), attempts=attempt)
            if best is None or usage.foreign < best[1].foreign:
                best = (result, usage)
            if usage.foreign < FOREIGN_LIMIT or self.quiet.waited_s >= self.quiet.budget_s:
                break
            self.quiet.retried += 1
            self.quiet.waited_s += usage.wall_s
            print(f"bench: {what}: foreign CPU {usage.foreign:.0%} of a core, measuring again")
        if best is None:
            raise RuntimeError(f"{what}: no measurement succeeded")
        return best

    def _all_alive(self, target: Target) -> bool:
        return alive(self.model.pid) and (target.child is None or alive(target.child.pid))

    async def _check(self, target: Target, what: str) -> None:
        """Restart a model server that exited; a proxy that exited ends the run."""
        if not alive(self.model.pid):
            await asyncio.sleep(0.1)  # let the exit be reaped, for its status
            code = self.model.process.returncode
            event = f"{what}: the model server exited (status {code}) and was restarted"
            print(f"bench: {event}")
            self.events.append(event)
            self.model = await self._restart_model()
        if target.child is not None and not alive(target.child.pid):
            await asyncio.sleep(0.1)
            code = target.child.process.returncode
            event = f"{what}: {target.label} exited (status {code}); not measured from there on"
            print(f"bench: {event}; its last output:\n{target.child.tail(10)}")
            self.events.append(event)
            self.gone.add(target.key)
            raise TargetGone(target.key)

    @contextlib.asynccontextmanager
    async def live(self, target: Target) -> AsyncIterator[None]:
        """Resume the target for the duration of the block (a proxy is paused otherwise)."""
        if target.pid is None:
            yield
            return
        resume(target.pid)
        try:
            yield
        finally:
            pause(target.pid)

    def pause_all(self) -> None:
        for target in self.targets.values():
            if target.pid is not None:
                pause(target.pid)
