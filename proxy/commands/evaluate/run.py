"""The measuring half of ``taxmeter evaluate``: labelled prompts through the real runner.

Chains are built by :func:`proxy.judge.build.build_chains` from variants made up
for the occasion, so every filter is bound exactly as the proxy binds it
(timeout, ``on_error``, ``cpu_bound``) and called through
:meth:`proxy.judge.chain.Chain.run`, which times each call on a
:class:`proxy.measure.timeline.Timeline`. Nothing here reads a clock.

* each filter alone: a variant that disables every other filter and
  enforces this one (whatever its configured mode);
* the chain: the heaviest-weighted variant (the first of equals), its
  observing filters enforcing, and its input stage run as the proxy's
  handler runs it: the sequential filters, then the parallel ones on the
  prompt they left. A parallel filter can block but not redact in the proxy
  (the prompt was already sent), so its redaction does not flag the prompt.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from filters.base import Stage, closer
from proxy.config.schema import Config, VariantSpec
from proxy.judge.build import Built, build_chains
from proxy.judge.chain import BoundFilter, Chain, StageResult
from proxy.judge.offload import ThreadOffload
from proxy.measure.timeline import NS_PER_S, Timeline

FAILED = ("error", "timeout")
ROUTE = "chat_completions"  # each prompt is judged as one user message of a chat request


@dataclass
class Tally:
    """What one filter (or the chain) did over the dataset."""

    flagged: Counter[str] = field(default_factory=Counter)  # label -> prompts blocked/redacted
    seconds: list[float] = field(default_factory=list)  # one figure per prompt
    errors: int = 0  # calls that raised, returned garbage or timed out
    timeouts: int = 0  # of which timed out


@dataclass(frozen=True, slots=True)
class Plan:
    """What is evaluated: each filter alone, and the chain of one variant."""

    variant: VariantSpec
    solo: dict[str, Chain]
    chain: Chain
    chain_filters: tuple[str, ...]  # in the order the chain runs them
    skipped: tuple[str, ...]  # configured, but not for the evaluated stage


def heaviest_variant(config: Config) -> VariantSpec:
    # max() keeps the first of equal weights, as the report's baseline does.
    return max(config.variants, key=lambda v: v.weight)


def plan(config: Config, built: Built, stage: Stage, offload: ThreadOffload) -> Plan:
    """The chains to run: each filter alone, and all together; ``offload``: the
    worker threads of the cpu_bound ones."""
    base = heaviest_variant(config)
    names = [spec.name for spec in config.filters]
    solo: dict[str, Chain] = {}
    skipped: list[str] = []
    for name in names:
        if stage not in built[name][1]:
            skipped.append(name)
            continue
        alone = VariantSpec(
            base.name,
            disable=frozenset(n for n in names if n != name),
            modes={name: "enforce"},
        )
        solo[name] = build_chains(replace(config, variants=(alone,)), built, offload)[base.name]
    modes = dict(base.modes)
    for spec in config.filters:
        if modes.get(spec.name, spec.mode) == "observe":
            modes[spec.name] = "enforce"
    whole = replace(base, modes=modes)
    chain = build_chains(replace(config, variants=(whole,)), built, offload)[base.name]
    order = tuple(b.name for b in (*chain.input, *chain.input_parallel))
    return Plan(base, solo, chain, order, tuple(skipped))


async def judge(chain: Chain, prompt: str, request_id: str) -> tuple[bool, Timeline]:
    """Run ``chain``'s input stage on one prompt: (flagged, its timeline)."""
    timeline = Timeline()
    body = {"model": "taxmeter-evaluate", "messages": [{"role": "user", "content": prompt}]}
    segments = [prompt]
    flagged = False

    async def run(filters: tuple[BoundFilter, ...]) -> StageResult:
        return await chain.run(
            filters,
            "input",
            segments,
            body=body,
            route=ROUTE,
            request_id=request_id,
            timeline=timeline,
            critical=True,
        )

    if chain.input:
        result = await run(chain.input)
        if result.blocked:
            return True, timeline
        flagged = result.changed
        segments = result.segments
    if chain.input_parallel:
        # Critical, unlike in the proxy: with no model call to overlap, the
        # whole call is time the request would wait (an upper bound).
        result = await run(chain.input_parallel)
        flagged = flagged or result.blocked
    return flagged, timeline


def _count(tally: Tally, label: str, flagged: bool, timeline: Timeline, seconds: float) -> None:
    if flagged:
        tally.flagged[label] += 1
    tally.seconds.append(seconds)
    for call in timeline.filter_calls:
        if call.action in FAILED:
            tally.errors += 1
            tally.timeouts += call.action == "timeout"


async def measure(
    the_plan: Plan, prompts: Sequence[str], labels: Sequence[str]
) -> tuple[dict[str, Tally], Tally]:
    """Every prompt, one at a time, through each filter alone and then the chain.

    Interleaving per prompt spreads any drift of the machine (frequency
    scaling, a noisy neighbour) over every filter alike. One untimed call of
    each first keeps one-off start-up work (a model loaded on first use, a
    thread pool started) out of figures meant for steady state.
    """
    solo = {name: Tally() for name in the_plan.solo}
    whole = Tally()
    if prompts:
        for chain in (*the_plan.solo.values(), the_plan.chain):
            await judge(chain, prompts[0], "evaluate-warmup")
    for i, (prompt, label) in enumerate(zip(prompts, labels, strict=True)):
        request_id = f"evaluate-{i + 1}"
        for name, chain in the_plan.solo.items():
            flagged, timeline = await judge(chain, prompt, request_id)
            ns = sum(call.duration_ns for call in timeline.filter_calls)
            _count(solo[name], label, flagged, timeline, ns / NS_PER_S)
        flagged, timeline = await judge(the_plan.chain, prompt, request_id)
        # The union of the chain's calls: what the prompt waited for in all.
        waited_s = timeline.filter_critical_ns(streamed=False) / NS_PER_S
        _count(whole, label, flagged, timeline, waited_s)
    return solo, whole


async def close_filters(built: Built, offload: ThreadOffload) -> None:
    """Release what the filters hold, as the proxy does at shutdown."""
    offload.close()
    for instance, *_ in built.values():
        close = closer(instance)
        if close is not None:
            await close()


class FirstFailures(logging.Handler):
    """Keeps the first failure of each filter: a filter that fails on every
    prompt makes one line, not one traceback per prompt."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.first: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        what = record.getMessage()
        if what not in self.first:
            exc = record.exc_info[1] if record.exc_info else None
            self.first[what] = "" if exc is None else f"{type(exc).__name__}: {exc}"
