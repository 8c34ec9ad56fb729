"""Observing filters, run after the response so that they cost the client nothing.

An observing filter never changes a response, so unless it is set to
``observe_inline`` it does not run on the request's path at all: the handler
keeps what it would have judged (the prompt as forwarded, each completion as
sent, a stream's pieces as they arrived) and, once the last byte is out,
this module runs the filters on it in a background task, with the same
cadence and windows a stream filter would have had. Their calls are timed on
the request's timeline (off the critical path), so the metrics say what the
filter would have done and what it would have cost.

Background work is bounded: past ``max_pending`` requests waiting to be
observed, a request is not observed, and that is counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Hashable
from dataclasses import dataclass, field
from typing import Any

from proxy.judge.chain import Chain
from proxy.judge.stream_judge import StreamJudge
from proxy.measure.timeline import Timeline
from proxy.surfaces.base import StreamCodec

log = logging.getLogger("taxmeter.observe")


@dataclass(slots=True)
class Later:
    """What a request's deferred observers will judge."""

    prompt: list[str] = field(default_factory=list)
    completions: list[str] = field(default_factory=list)
    stream_pieces: dict[Hashable, list[str]] = field(default_factory=dict)


async def observe(
    chain: Chain,
    later: Later,
    *,
    route: str,
    body: object,
    request_id: str,
    timeline: Timeline,
) -> None:
    """Run the deferred observers of ``chain`` on what the request kept."""
    common: dict[str, Any] = {
        "body": body,
        "route": route,
        "request_id": request_id,
        "timeline": timeline,
    }
    if chain.later_input and later.prompt:
        await chain.run(chain.later_input, "input", later.prompt, critical=False, **common)
    for text in later.completions:
        if chain.later_output:
            await chain.run(chain.later_output, "output", [text], critical=False, **common)
    if later.stream_pieces and (chain.later_stream or chain.later_stream_end):
        replay = StreamJudge(
            chain,
            chain.later_stream,
            chain.later_stream_end,
            StreamCodec(),  # nothing is sent: the pieces are judged, not rebuilt
            route,
            body,
            request_id,
            timeline,
        )
        await replay.replay(later.stream_pieces)


class Observer:
    """The background tasks of deferred observation; one per proxy."""

    def __init__(self, max_pending: int = 256) -> None:
        self.max_pending = max_pending
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, work: Coroutine[Any, Any, None]) -> bool:
        """Start ``work`` in the background; False (and ``work`` closed) when full."""
        if len(self._tasks) >= self.max_pending:
            work.close()
            return False
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return True

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("deferred observation failed", exc_info=task.exception())

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def drain(self, grace_s: float) -> None:
        """Let pending observations finish (at shutdown), then cancel the rest."""
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=grace_s)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
