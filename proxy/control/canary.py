"""Canaries: labelled texts judged by the live chains, for live catch and false-positive rates.

Production traffic carries no labels, so the proxy brings its own. Every
``canary.interval_s`` one item of the canary dataset (proxy.config.canary) is
judged by every filter of every variant's chain at the configured stages:
in-process, by the same filter instances live traffic uses, in the modes
they run in now (an observing filter reports what it would have done). The
text never reaches the model and is no request: it is counted in the canary
metrics (proxy.measure.canary_metrics) only, never in the request metrics,
/stats, traces or the access log.

Each filter judges the item on its own, as if it were first in its chain: a
filter behind one that blocks is still measured, and none sees another's
redaction. The check takes the current snapshot each time and hands it back
when done, so it follows reloads and admin mode changes, and a reload never
closes filters under it. A filter that raises counts as action ``error``
(one past ``timeout_ms``, ``timeout``); nothing a check does stops the task.

Items come in a seeded shuffle of the dataset, each once per pass, so the
labels are spread evenly over time. With ``--workers N`` each worker runs
its own canary: N checks per interval, added up in the metrics; the rates,
being ratios, do not change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from filters.base import Stage
from proxy.config.canary import CanaryConfig, CanaryItem
from proxy.control.runtime import Runtime, Snapshot
from proxy.judge.chain import BoundFilter, Chain
from proxy.measure.canary_metrics import CanaryMetrics
from proxy.measure.timeline import Timeline

log = logging.getLogger("taxmeter.canary")

ROUTE = "chat_completions"  # an input item is judged as one user message of a chat request
MODEL = "taxmeter-canary"
IDLE_S = 1.0  # without a canary section, how often to look for one (a reload may add it)
SEED = 18  # the shuffle's: the same order on every start, so runs compare


def stage_filters(chain: Chain, stage: Stage) -> tuple[BoundFilter, ...]:
    """Every filter of ``chain`` that judges ``stage``: on the path, beside it or after it."""
    if stage == "input":
        return (*chain.input, *chain.input_parallel, *chain.later_input)
    return (*chain.output, *chain.later_output)


class Order:
    """The items in a seeded shuffle, each once per pass; a new dataset starts anew."""

    def __init__(self) -> None:
        self._items: tuple[CanaryItem, ...] = ()
        self._order: list[int] = []
        self._at = 0

    def next(self, items: tuple[CanaryItem, ...]) -> CanaryItem:
        if items is not self._items:
            if items != self._items:  # a reload that left the dataset as it was goes on
                self._order = list(range(len(items)))
                random.Random(SEED).shuffle(self._order)
                self._at = 0
            self._items = items
        item = items[self._order[self._at]]
        self._at = (self._at + 1) % len(items)
        return item


class Canary:
    """The background task; one per serving process."""

    def __init__(self, runtime: Runtime, metrics: CanaryMetrics) -> None:
        self._runtime = runtime
        self._metrics = metrics
        self._order = Order()
        self._task: asyncio.Task[None] | None = None
        self.checks = 0  # items checked since start

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="taxmeter-canary")

    async def stop(self) -> None:
        """Cancel the task; a check in progress ends and hands its snapshot back."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            interval = await self._check_next()
            if interval is None:
                await asyncio.sleep(IDLE_S)
                due = loop.time()
                continue
            # A fixed rate: the check's own time is not added to the interval, and
            # a check slower than the interval starts the next at once, no burst.
            due = max(due + interval, loop.time())
            await asyncio.sleep(due - loop.time())

    async def _check_next(self) -> float | None:
        """Judge the next item with every variant's chain; the interval to wait (None: off)."""
        snapshot = self._runtime.acquire()
        try:
            canary = snapshot.config.canary
            if canary is None or not snapshot.config.telemetry.metrics:
                return None
            try:
                await self.check(snapshot, canary, self._order.next(canary.items))
            except Exception:
                # Filters' failures are contained by the chain; this is anything else.
                log.exception("canary check failed")
            return canary.interval_s
        finally:
            self._runtime.release(snapshot)

    async def check(self, snapshot: Snapshot, canary: CanaryConfig, item: CanaryItem) -> None:
        """One item through every filter of every variant, at each configured stage."""
        self.checks += 1
        request_id = f"canary-{self.checks}"
        prompt = {"model": MODEL, "messages": [{"role": "user", "content": item.text}]}
        for variant, chain in snapshot.chains.items():
            for stage in canary.stages:
                # An answer judged at the output stage has no request behind it.
                body = prompt if stage == "input" else None
                for bound in stage_filters(chain, stage):
                    self._metrics.start_series(bound.name, variant, canary.labels)
                    timeline = Timeline()
                    await chain.judge(
                        bound,
                        stage,
                        item.text,
                        body=body,
                        route=ROUTE,
                        request_id=request_id,
                        timeline=timeline,
                        critical=False,
                    )
                    self._metrics.checked(variant, item.label, timeline)
