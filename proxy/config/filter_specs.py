"""The filters section of the config: one validated FilterSpec per entry."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from filters.base import Stage
from proxy.config.checks import (
    ConfigError,
    check_amount,
    check_bool,
    check_choice,
    check_identifier,
    check_int,
    check_kind,
    check_known,
    check_mapping,
    check_positive,
    check_stages,
    check_str,
)

MODES = ("enforce", "observe", "off")
FILTER_KEYS = (
    "name", "type", "stages", "mode", "timeout_ms", "on_error", "params",
    "parallel", "at_stream_end", "stream", "observe_inline", "budget_ms", "cost_per_call_usd",
)  # fmt: skip
STREAM_KEYS = ("every_tokens", "every_chars", "at_sentence_end", "window_chars", "holdback_chars")
ON_ERROR = ("open", "closed")


@dataclass(frozen=True, slots=True)
class StreamPolicy:
    """How often a stream-stage filter runs, on how much text, and what it holds back.

    It runs every ``every_tokens`` content events, or every ``every_chars``
    characters, or at each sentence end (``at_sentence_end``), and sees the
    last ``window_chars`` characters. The last ``holdback_chars`` characters it
    has judged are held from the client until it has judged what follows, so
    that a match split across chunks is caught before any of it is sent.
    ``"auto"`` holds back only the tail the filter says could still become a
    match (see docs/streaming.md), nothing for a filter that says nothing.
    """

    every_tokens: int = 1
    every_chars: int = 0
    at_sentence_end: bool = False
    window_chars: int = 512
    holdback_chars: int | Literal["auto"] = "auto"


@dataclass(frozen=True, slots=True)
class FilterSpec:
    name: str
    type: str
    stages: tuple[Stage, ...] | None = None  # None: every supported stage the filter has
    mode: str = "enforce"
    timeout_ms: float = 100.0
    on_error: str = "open"
    params: Mapping[str, Any] = field(default_factory=dict)
    parallel: bool = False  # input stage: run alongside the upstream call
    observe_inline: bool = False  # observe mode: run on the request's path, to measure its cost
    at_stream_end: bool = False  # output stage: also judge a streamed completion at its end
    stream: StreamPolicy = StreamPolicy()
    stream_given: bool = False  # a stream section was written (else the filter's own default)
    budget_ms: float | None = None  # a p99 target per request, exported for alerts
    cost_per_call_usd: float = 0.0  # a paid API's price per call (see proxy.measure.cost)


def parse_filters(raw: Any) -> tuple[FilterSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError("filters", f"expected a list of filters, got {check_kind(raw)}")
    specs: list[FilterSpec] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        key = f"filters[{i}]"
        entry = check_mapping(key, item)
        check_known(key, entry, FILTER_KEYS)
        if "name" not in entry and ":" in str(entry.get("type", "")):
            raise ConfigError(f"{key}.name", "required when the type is an import path")
        name = check_identifier(f"{key}.name", entry.get("name", entry.get("type")))
        if name in seen:
            raise ConfigError(f"{key}.name", f"duplicate filter name {name!r}")
        seen.add(name)
        spec = FilterSpec(name=name, type=check_str(f"{key}.type", entry.get("type", name)))
        if "stages" in entry:
            spec = replace(spec, stages=check_stages(f"{key}.stages", entry["stages"]))
        if "mode" in entry:
            spec = replace(spec, mode=check_choice(f"{key}.mode", entry["mode"], MODES))
        if "timeout_ms" in entry:
            spec = replace(
                spec, timeout_ms=check_positive(f"{key}.timeout_ms", entry["timeout_ms"])
            )
        if "on_error" in entry:
            spec = replace(
                spec, on_error=check_choice(f"{key}.on_error", entry["on_error"], ON_ERROR)
            )
        if entry.get("params") is not None:
            spec = replace(spec, params=dict(check_mapping(f"{key}.params", entry["params"])))
        if "parallel" in entry:
            spec = replace(spec, parallel=check_bool(f"{key}.parallel", entry["parallel"]))
            if spec.parallel and spec.stages is not None and "input" not in spec.stages:
                raise ConfigError(f"{key}.parallel", "applies to the input stage only")
        if "at_stream_end" in entry:
            spec = replace(
                spec, at_stream_end=check_bool(f"{key}.at_stream_end", entry["at_stream_end"])
            )
            if spec.at_stream_end and spec.stages is not None and "output" not in spec.stages:
                raise ConfigError(f"{key}.at_stream_end", "applies to the output stage only")
        if "observe_inline" in entry:
            inline = check_bool(f"{key}.observe_inline", entry["observe_inline"])
            spec = replace(spec, observe_inline=inline)
        if entry.get("stream") is not None:
            spec = replace(
                spec, stream=stream_policy(f"{key}.stream", entry["stream"]), stream_given=True
            )
        specs.append(_money(key, entry, spec))
    return tuple(specs)


def _money(key: str, entry: Mapping[str, Any], spec: FilterSpec) -> FilterSpec:
    """The budget and the price: what the filter may take, and what each call costs."""
    if entry.get("budget_ms") is not None:
        budget = check_positive(f"{key}.budget_ms", entry["budget_ms"])
        if not math.isfinite(budget):
            raise ConfigError(f"{key}.budget_ms", f"expected a finite number > 0, got {budget}")
        spec = replace(spec, budget_ms=budget)
    if entry.get("cost_per_call_usd") is not None:
        price = check_amount(f"{key}.cost_per_call_usd", entry["cost_per_call_usd"])
        spec = replace(spec, cost_per_call_usd=price)
    return spec


def stream_policy(key: str, raw: Any) -> StreamPolicy:
    section = check_mapping(key, raw)
    check_known(key, section, STREAM_KEYS)
    cadences = [k for k in ("every_tokens", "every_chars", "at_sentence_end") if k in section]
    if len(cadences) > 1:
        raise ConfigError(
            key, f"set one of every_tokens, every_chars, at_sentence_end, not {cadences}"
        )
    policy = StreamPolicy()
    if "every_chars" in section:
        every = check_int(f"{key}.every_chars", section["every_chars"])
        policy = replace(policy, every_chars=every, every_tokens=0)
    if "every_tokens" in section:
        policy = replace(
            policy, every_tokens=check_int(f"{key}.every_tokens", section["every_tokens"])
        )
    if "at_sentence_end" in section:
        at_end = check_bool(f"{key}.at_sentence_end", section["at_sentence_end"])
        policy = replace(policy, at_sentence_end=at_end, every_tokens=0 if at_end else 1)
    if "window_chars" in section:
        policy = replace(
            policy, window_chars=check_int(f"{key}.window_chars", section["window_chars"])
        )
    if "holdback_chars" in section:
        holdback = section["holdback_chars"]
        number = isinstance(holdback, int) and not isinstance(holdback, bool)
        if holdback != "auto" and not (number and holdback >= 0):
            raise ConfigError(
                f"{key}.holdback_chars",
                f'expected "auto" or a whole number >= 0, got {check_kind(holdback)}',
            )
        policy = replace(policy, holdback_chars=holdback)
    if policy.holdback_chars != "auto" and policy.holdback_chars >= policy.window_chars:
        raise ConfigError(f"{key}.holdback_chars", "must be smaller than window_chars")
    return policy
