"""Trying a text against a variant's live chain, outside any request: each filter's say and cost.

The admin API's check (:mod:`proxy.control.check`) and canaries run texts
through the filters of a running snapshot: the same instances, bound the
same way (mode, timeout, ``on_error``, offload), each called through
:meth:`~proxy.judge.chain.Chain.call` in the order a request calls them:

* ``input``: the inline filters; then the parallel ones on the prompt they
  left (beside the upstream call in the proxy: they can block, but their
  redaction is never sent); then the observers the proxy runs after the
  response, on the prompt as forwarded;
* ``output``: the inline filters on a whole answer, then its deferred observers.

The first block ends the run, as it ends a request, and the filters after it
report ``not_run``; with ``every``, each is called anyway (a filter's own
catch rate needs its own verdict), on the text as the filters before it left
it, and the outcome stays the first block's. An observer reports what it
would have done; it never changes the text or the outcome.

The calls are timed on a timeline of the trial's own that nothing records: a
trial is not traffic, so no metric, /stats, trace or log sees it. Filters of
the ``stream`` stage only are not tried (a stream's windows depend on how
the answer arrives); ``output`` is the whole text, as at a stream's end.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from proxy.judge.chain import BoundFilter, Called, Chain
from proxy.measure.timeline import NS_PER_S, Timeline

TrialStage = Literal["input", "output"]
TRIAL_STAGES: tuple[TrialStage, ...] = ("input", "output")
NOT_RUN = "not_run"  # a filter's action when a block before it ended the run


@dataclass(frozen=True, slots=True)
class FilterTrial:
    """What one filter of the chain said about the text, and what saying it cost."""

    name: str
    mode: str  # enforce | observe
    placement: str  # inline | parallel | after_response: where a request calls it
    action: str  # allow, block, redact, error, timeout; or NOT_RUN
    reason: str | None  # its verdict's reason, or what failed
    blocks: bool  # it ended the request: an enforcing block, or a failure with on_error: closed
    seconds: float | None  # the call's wall time (None: not run)
    cpu_seconds: float | None  # its own code's CPU (see proxy.judge.cpu_time)


@dataclass(frozen=True, slots=True)
class Trial:
    """One text through one variant's chain for one stage."""

    variant: str
    stage: TrialStage
    filters: tuple[FilterTrial, ...]  # in the order a request calls them
    blocked_by: str | None  # the filter whose block ended it
    reason: str | None  # that block's reason
    segments: list[str]  # the texts as forwarded: the inline filters' redactions applied
    changed: bool  # an inline filter redacted

    @property
    def blocked(self) -> bool:
        return self.blocked_by is not None


def _placements(chain: Chain, stage: TrialStage) -> Iterator[tuple[str, tuple[BoundFilter, ...]]]:
    if stage == "input":
        yield "inline", chain.input
        yield "parallel", chain.input_parallel
        yield "after_response", chain.later_input
    else:
        yield "inline", chain.output
        yield "after_response", chain.later_output


async def run_trial(
    chain: Chain,
    stage: TrialStage,
    segments: list[str],
    *,
    body: object = None,
    route: str = "chat_completions",
    request_id: str = "trial",
    every: bool = False,
) -> Trial:
    """Run ``segments`` (a prompt's texts, or an answer's) through ``chain`` for ``stage``.

    ``body`` and ``route`` are what the filters read as the request's
    (FilterContext); no filter is called when there is no text, as in a request.
    """
    timeline = Timeline()  # the trial's own, never recorded
    reports: list[FilterTrial] = []
    blocked_by: str | None = None
    reason: str | None = None
    forwarded = segments
    changed = False
    for placement, filters in _placements(chain, stage):
        current = forwarded  # parallel filters and observers read the prompt as forwarded
        for bound in filters:
            if not segments or (blocked_by is not None and not every):
                reports.append(_not_run(bound, placement))
                continue
            called = await chain.call(
                bound,
                stage,
                current,
                body=body,
                route=route,
                request_id=request_id,
                timeline=timeline,
                critical=placement == "inline",
            )
            reports.append(_report(bound, placement, called))
            if called.decision.blocks and blocked_by is None:
                blocked_by, reason = bound.name, called.decision.reason
            current = called.segments
            if placement == "inline" and blocked_by is None and called.decision.text is not None:
                changed = True
        if placement == "inline":
            forwarded = current
    return Trial(chain.variant, stage, tuple(reports), blocked_by, reason, forwarded, changed)


def untried(chain: Chain, stage: TrialStage) -> tuple[FilterTrial, ...]:
    """Every filter of ``chain`` for ``stage`` as not run (the request was refused before)."""
    return tuple(
        _not_run(bound, placement)
        for placement, filters in _placements(chain, stage)
        for bound in filters
    )


def _not_run(bound: BoundFilter, placement: str) -> FilterTrial:
    return FilterTrial(bound.name, bound.mode, placement, NOT_RUN, None, False, None, None)


def _report(bound: BoundFilter, placement: str, called: Called) -> FilterTrial:
    call = called.call
    if called.verdict is not None:
        reason = called.verdict.reason
    else:
        on_error = "closed" if bound.fail_closed else "open"
        reason = f"filter {call.action} (on_error: {on_error})"
    return FilterTrial(
        bound.name,
        bound.mode,
        placement,
        call.action,
        reason,
        called.decision.blocks,
        call.duration_ns / NS_PER_S,
        call.cpu_ns / NS_PER_S,
    )
