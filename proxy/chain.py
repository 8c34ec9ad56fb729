"""The filter chain: built and frozen once from the config, run per request.

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
segments joined by a blank line. When an enforcing filter redacts it, the
filter is asked again for each segment, inside the same timed call, so that
every redaction lands in the message it came from.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from filters.base import Filter, FilterContext, Stage, Verdict
from filters.registry import FilterLoadError, resolve_filter_class
from proxy.config import SUPPORTED_STAGES, Config, ConfigError, FilterSpec
from proxy.timeline import Timeline

log = logging.getLogger("taxmeter.chain")

SEGMENT_SEPARATOR = "\n\n"


@dataclass(frozen=True, slots=True)
class BoundFilter:
    """One filter instance as it runs in one variant's chain at one stage."""

    name: str
    mode: str
    timeout_s: float
    fail_closed: bool
    instance: Filter


@dataclass(frozen=True, slots=True)
class StageResult:
    blocked: bool
    segments: list[str]
    changed: bool = False
    reason: str | None = None
    blocked_by: str | None = None


class Chain:
    """The filters of one variant, per stage, in config order."""

    __slots__ = ("_stages", "variant")

    def __init__(self, variant: str, stages: dict[Stage, tuple[BoundFilter, ...]]) -> None:
        self.variant = variant
        self._stages = stages

    def has(self, stage: Stage) -> bool:
        return bool(self._stages.get(stage))

    def filters(self, stage: Stage) -> tuple[BoundFilter, ...]:
        return self._stages.get(stage, ())

    async def run(
        self,
        stage: Stage,
        segments: list[str],
        *,
        body: object,
        route: str,
        request_id: str,
        timeline: Timeline,
    ) -> StageResult:
        changed = False
        for bound in self._stages.get(stage, ()):
            ctx = FilterContext(
                stage, SEGMENT_SEPARATOR.join(segments), body, route, request_id, self.variant
            )
            call = timeline.start_filter(bound.name, stage, bound.mode)
            verdict, action, per_segment = await _call(bound, ctx, len(segments) > 1, segments)
            timeline.end_filter(call, action)
            if bound.mode != "enforce":
                continue
            if action in ("error", "timeout"):
                if bound.fail_closed:
                    reason = f"{bound.name}: filter {action} (on_error: closed)"
                    return StageResult(True, segments, changed, reason, bound.name)
                continue
            assert verdict is not None
            if action == "block":
                return StageResult(True, segments, changed, verdict.reason, bound.name)
            if action == "redact":
                segments = per_segment if per_segment is not None else [verdict.text or ""]
                changed = True
        return StageResult(False, segments, changed)


async def _call(
    bound: BoundFilter, ctx: FilterContext, split: bool, segments: list[str]
) -> tuple[Verdict | None, str, list[str] | None]:
    """Run one filter under its timeout; (verdict, action, redacted segments)."""
    deadline = asyncio.timeout(bound.timeout_s)
    per_segment: list[str] | None = None
    try:
        async with deadline:
            verdict = await bound.instance.check(ctx)
            _check_verdict(verdict)
            if verdict.action == "redact" and split and bound.mode == "enforce":
                per_segment = await _redact_each(bound, ctx, segments)
    except TimeoutError:
        if deadline.expired():
            return None, "timeout", None
        log.warning("filter %s raised TimeoutError", bound.name, exc_info=True)
        return None, "error", None
    except Exception:
        log.warning("filter %s failed", bound.name, exc_info=True)
        return None, "error", None
    return verdict, verdict.action, per_segment


async def _redact_each(bound: BoundFilter, ctx: FilterContext, segments: list[str]) -> list[str]:
    redacted: list[str] = []
    for segment in segments:
        verdict = await bound.instance.check(
            FilterContext(ctx.stage, segment, ctx.body, ctx.route, ctx.request_id, ctx.variant)
        )
        _check_verdict(verdict)
        if verdict.action == "block":
            raise ValueError(f"filter {bound.name} redacted the prompt but blocked one message")
        redacted.append((verdict.text or "") if verdict.action == "redact" else segment)
    if redacted == segments:
        # The match spanned two messages; there is no field to put the redaction in.
        raise ValueError(f"filter {bound.name}: redaction spans two messages")
    return redacted


def _check_verdict(verdict: object) -> None:
    if not isinstance(verdict, Verdict):
        raise TypeError(f"check() returned {type(verdict).__name__}, not a Verdict")
    if verdict.action == "redact" and verdict.text is None:
        raise TypeError("a redact verdict needs the new text")


# -- building -------------------------------------------------------------------


def build_filters(config: Config) -> dict[str, tuple[Filter, tuple[Stage, ...]]]:
    """Construct each configured filter once; ConfigError names a bad one."""
    built: dict[str, tuple[Filter, tuple[Stage, ...]]] = {}
    for i, spec in enumerate(config.filters):
        built[spec.name] = _construct(f"filters[{i}]", spec)
    return built


def build_chains(
    config: Config, filters: dict[str, tuple[Filter, tuple[Stage, ...]]]
) -> dict[str, Chain]:
    """One frozen chain per variant, sharing the filter instances."""
    chains: dict[str, Chain] = {}
    for variant in config.variants:
        stages: dict[Stage, list[BoundFilter]] = {s: [] for s in SUPPORTED_STAGES}
        for spec in config.filters:
            mode = variant.modes.get(spec.name, spec.mode)
            if spec.name in variant.disable or mode == "off":
                continue
            instance, filter_stages = filters[spec.name]
            bound = BoundFilter(
                spec.name, mode, spec.timeout_ms / 1000, spec.on_error == "closed", instance
            )
            for stage in filter_stages:
                stages[stage].append(bound)
        chains[variant.name] = Chain(variant.name, {s: tuple(b) for s, b in stages.items()})
    return chains


def _construct(key: str, spec: FilterSpec) -> tuple[Filter, tuple[Stage, ...]]:
    try:
        cls = resolve_filter_class(spec.type)
    except FilterLoadError as exc:
        raise ConfigError(f"{key}.type", f"filter {spec.name!r}: {exc}") from exc
    supported: tuple[str, ...] = cls.stages
    if spec.stages is None:
        stages = tuple(s for s in SUPPORTED_STAGES if s in supported)
        if not stages:
            raise ConfigError(
                f"{key}.stages", f"filter {spec.name!r} supports only {', '.join(supported)}"
            )
    else:
        for stage in spec.stages:
            if stage not in supported:
                raise ConfigError(
                    f"{key}.stages",
                    f"filter {spec.name!r} does not support the {stage} stage "
                    f"(it supports {', '.join(supported)})",
                )
        stages = spec.stages
    try:
        instance = cls(**spec.params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key}.params", f"filter {spec.name!r}: {exc}") from exc
    return instance, stages
