"""The filter chain: built and frozen once from the config (:mod:`proxy.judge.build`), run
per request.

The runner owns everything a filter should not: timing (through the request
timeline), timeouts, containment of exceptions, modes and ``on_error``.

* ``enforce``: the first block ends the chain; a redaction replaces the text
  the next filter sees and the text that is forwarded.
* ``observe``: the filter runs and its verdict is recorded, never acted on.
* ``off``: the filter is not in the chain at all.

A filter that raises or returns something other than a Verdict counts as
``error``; one that outlives ``timeout_ms`` counts as ``timeout``. Either
lets the request through with ``on_error: open`` and blocks it with
``on_error: closed``.

A prompt of several segments (chat messages) is judged as one text, the
segments joined by a blank line, so that a phrase split across two messages
is still one phrase. When an enforcing filter redacts it, each of the
redaction's edits lands in the message it came from; one that spans two
messages is split, each part replaced where it lies. A filter whose
redaction gives no edits is asked again for each segment, inside the same
timed call; when that cannot place the redaction (it spanned two messages)
or it blocks one message, the verdict is a block, never an error.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from filters.base import Filter, FilterContext, Stage, Verdict
from proxy.config.schema import StreamPolicy
from proxy.judge.cpu_time import cpu_timed
from proxy.judge.offload import ThreadOffload
from proxy.judge.segments import SEGMENT_SEPARATOR, place_edits
from proxy.measure.marks import FilterCall
from proxy.measure.timeline import Timeline

log = logging.getLogger("taxmeter.chain")


@dataclass(frozen=True, slots=True)
class BoundFilter:
    """One filter instance as it runs in one variant's chain."""

    name: str
    mode: str
    timeout_s: float
    fail_closed: bool
    instance: Filter
    stream: StreamPolicy
    # A cpu_bound filter's: the worker threads it is called on (see proxy.judge.offload).
    offload: ThreadOffload | None = None
    max_match_chars: int = 0  # the longest match it makes, if it declares one

    @property
    def enforcing(self) -> bool:
        return self.mode == "enforce"


@dataclass(frozen=True, slots=True)
class StageResult:
    blocked: bool
    segments: list[str]
    changed: bool = False
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """What one filter call means for the request (its action is on its FilterCall)."""

    blocks: bool  # an enforcing block, or a failure of a fail-closed filter
    reason: str | None = None  # why it blocks
    text: str | None = None  # the redacted text, when an enforcing filter redacted
    unsettled: int | None = None  # stream stage: the tail that may still become a match


@dataclass(frozen=True, slots=True)
class Called:
    """One filter's call on a stage's texts, all of it (:meth:`Chain.call`)."""

    call: FilterCall  # its timing, CPU and action, on the timeline it ran on
    verdict: Verdict | None  # as the filter gave it (an observer's too); None: error, timeout
    decision: Decision  # what it means for the request
    segments: list[str]  # the texts the next filter sees


CHAIN_PARTS = (
    "input", "input_parallel", "output", "stream", "stream_end",
    "later_input", "later_output", "later_stream", "later_stream_end",
)  # fmt: skip


class Chain:
    """The filters of one variant, per stage, in config order.

    ``input`` runs before the upstream call; ``input_parallel`` alongside it;
    ``output`` on a whole completion; ``stream`` on a stream's text as it
    arrives; ``stream_end`` (output filters with ``at_stream_end``) on the
    whole text when a stream ends. The ``later_*`` parts hold observing
    filters that run after the response, off the request's path.
    """

    __slots__ = (*CHAIN_PARTS, "variant")

    def __init__(self, variant: str, parts: dict[str, list[BoundFilter]]) -> None:
        self.variant = variant
        self.input = tuple(parts["input"])
        self.input_parallel = tuple(parts["input_parallel"])
        self.output = tuple(parts["output"])
        self.stream = tuple(parts["stream"])
        self.stream_end = tuple(parts["stream_end"])
        self.later_input = tuple(parts["later_input"])
        self.later_output = tuple(parts["later_output"])
        self.later_stream = tuple(parts["later_stream"])
        self.later_stream_end = tuple(parts["later_stream_end"])

    @property
    def observes_later(self) -> bool:
        return bool(
            self.later_input or self.later_output or self.later_stream or self.later_stream_end
        )

    # ``critical`` has no default in run, call and judge: each caller says
    # whether the client waits for the filter, which decides what is tax.
    async def run(
        self,
        filters: tuple[BoundFilter, ...],
        stage: Stage,
        segments: list[str],
        *,
        body: object,
        route: str,
        request_id: str,
        timeline: Timeline,
        critical: bool,
    ) -> StageResult:
        """Run ``filters`` one after another; the first enforcing block ends the run."""
        changed = False
        for bound in filters:
            called = await self.call(
                bound,
                stage,
                segments,
                body=body,
                route=route,
                request_id=request_id,
                timeline=timeline,
                critical=critical,
            )
            if called.decision.blocks:
                return StageResult(True, segments, changed, called.decision.reason)
            if called.decision.text is not None:
                segments = called.segments
                changed = True
        return StageResult(False, segments, changed)

    async def call(
        self,
        bound: BoundFilter,
        stage: Stage,
        segments: list[str],
        *,
        body: object,
        route: str,
        request_id: str,
        timeline: Timeline,
        critical: bool,
    ) -> Called:
        """One timed call of one filter on a stage's texts: one step of :meth:`run`."""
        ctx = FilterContext(
            stage, SEGMENT_SEPARATOR.join(segments), body, route, request_id, self.variant
        )
        call = timeline.start_filter(bound.name, stage, bound.mode, critical)
        verdict, action, per_segment = await _call(bound, ctx, call, len(segments) > 1, segments)
        timeline.end_filter(call, action, verdict.reason if verdict is not None else None)
        decision = _decide(bound, action, verdict)
        if decision.text is not None:
            segments = per_segment if per_segment is not None else [decision.text]
        return Called(call, verdict, decision, segments)

    async def judge(
        self,
        bound: BoundFilter,
        stage: Stage,
        text: str,
        *,
        body: object,
        route: str,
        request_id: str,
        timeline: Timeline,
        critical: bool,
        partial: bool = False,
    ) -> Decision:
        """One timed call of one filter on one text (the stream stage's unit of work)."""
        ctx = FilterContext(stage, text, body, route, request_id, self.variant, partial)
        call = timeline.start_filter(bound.name, stage, bound.mode, critical)
        verdict, action, _ = await _call(bound, ctx, call, False, [])
        timeline.end_filter(call, action, verdict.reason if verdict is not None else None)
        return _decide(bound, action, verdict)


def _decide(bound: BoundFilter, action: str, verdict: Verdict | None) -> Decision:
    unsettled = verdict.unsettled if verdict is not None else None
    if not bound.enforcing:
        return Decision(False, unsettled=unsettled)
    if action in ("error", "timeout"):
        if bound.fail_closed:
            return Decision(True, f"{bound.name}: filter {action} (on_error: closed)")
        return Decision(False)
    assert verdict is not None
    if action == "block":
        return Decision(True, verdict.reason)
    if action == "redact":
        return Decision(False, text=verdict.text or "", unsettled=unsettled)
    return Decision(False, unsettled=unsettled)


async def _call(
    bound: BoundFilter, ctx: FilterContext, call: FilterCall, split: bool, segments: list[str]
) -> tuple[Verdict | None, str, list[str] | None]:
    """Run one filter under its timeout; (verdict, action, redacted segments)."""
    deadline = asyncio.timeout(bound.timeout_s)
    per_segment: list[str] | None = None
    try:
        async with deadline:
            verdict = await _check(bound, ctx, call)
            _check_verdict(verdict)
            if verdict.action == "redact" and split and bound.mode == "enforce":
                if verdict.edits:
                    per_segment = place_edits(ctx.text, segments, verdict)
                else:
                    per_segment, verdict = await _redact_each(bound, ctx, call, segments, verdict)
    except TimeoutError:
        if deadline.expired():
            return None, "timeout", None
        log.warning("filter %s raised TimeoutError", bound.name, exc_info=True)
        return None, "error", None
    except Exception:
        log.warning("filter %s failed", bound.name, exc_info=True)
        return None, "error", None
    return verdict, verdict.action, per_segment


async def _check(bound: BoundFilter, ctx: FilterContext, call: FilterCall) -> Verdict:
    """One check of the filter, its CPU added to ``call`` (see proxy.judge.cpu_time)."""
    if bound.offload is not None:
        verdict, cpu_ns = await bound.offload.check(bound.instance, ctx)
        call.cpu_ns += cpu_ns
        return verdict
    return await cpu_timed(bound.instance.check(ctx), call)


async def _redact_each(
    bound: BoundFilter, ctx: FilterContext, call: FilterCall, segments: list[str], verdict: Verdict
) -> tuple[list[str] | None, Verdict]:
    """Ask again per segment; a block when the redaction cannot be placed that way."""
    redacted: list[str] = []
    for segment in segments:
        again = await _check(
            bound,
            FilterContext(ctx.stage, segment, ctx.body, ctx.route, ctx.request_id, ctx.variant),
            call,
        )
        _check_verdict(again)
        if again.action == "block":
            return None, again
        redacted.append((again.text or "") if again.action == "redact" else segment)
    if redacted == segments:
        # It matched across two messages, and without edits there is no telling where.
        return None, Verdict.block(f"{bound.name}: a redaction spans two messages")
    return redacted, verdict


def _check_verdict(verdict: object) -> None:
    if not isinstance(verdict, Verdict):
        raise TypeError(f"check() returned {type(verdict).__name__}, not a Verdict")
    if verdict.action == "redact" and verdict.text is None:
        raise TypeError("a redact verdict needs the new text")
