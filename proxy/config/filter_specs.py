"""The filters section of the config: one validated FilterSpec per entry."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

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
from proxy.config.sections import Check, choice, given, keys_of

MODES = ("enforce", "observe", "off")
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
        values = given(f"{key}.", entry, _FILTER_CHECKS, _FILTER_NULLABLE)
        spec = replace(spec, **values, stream_given="stream" in values)
        if spec.parallel and spec.stages is not None and "input" not in spec.stages:
            raise ConfigError(f"{key}.parallel", "applies to the input stage only")
        if spec.at_stream_end and spec.stages is not None and "output" not in spec.stages:
            raise ConfigError(f"{key}.at_stream_end", "applies to the output stage only")
        specs.append(spec)
    return tuple(specs)


def _budget(key: str, value: Any) -> float:
    """A p99 target: what the filter may take per request."""
    budget = check_positive(key, value)
    if not math.isfinite(budget):
        raise ConfigError(key, f"expected a finite number > 0, got {budget}")
    return budget


def _params(key: str, value: Any) -> dict[str, Any]:
    return dict(check_mapping(key, value))


def stream_policy(key: str, raw: Any) -> StreamPolicy:
    section = check_mapping(key, raw)
    check_known(key, section, STREAM_KEYS)
    cadences = [k for k in ("every_tokens", "every_chars", "at_sentence_end") if k in section]
    if len(cadences) > 1:
        raise ConfigError(
            key, f"set one of every_tokens, every_chars, at_sentence_end, not {cadences}"
        )
    policy = replace(StreamPolicy(), **given(f"{key}.", section, _STREAM_CHECKS))
    # One cadence is set; the other two give way to it.
    if "every_chars" in section:
        policy = replace(policy, every_tokens=0)
    if "at_sentence_end" in section:
        policy = replace(policy, every_tokens=0 if policy.at_sentence_end else 1)
    if policy.holdback_chars != "auto" and policy.holdback_chars >= policy.window_chars:
        raise ConfigError(f"{key}.holdback_chars", "must be smaller than window_chars")
    return policy


def _holdback(key: str, value: Any) -> int | Literal["auto"]:
    number = isinstance(value, int) and not isinstance(value, bool)
    if value != "auto" and not (number and value >= 0):
        raise ConfigError(key, f'expected "auto" or a whole number >= 0, got {check_kind(value)}')
    return cast('int | Literal["auto"]', value)


# What each key's value is checked as (see proxy.config.sections); name and
# type are read first, on their own.
FILTER_KEYS = keys_of(FilterSpec, leave_out=("stream_given",))
_FILTER_CHECKS: dict[str, Check] = {
    "stages": check_stages,
    "mode": choice(check_choice, MODES),
    "timeout_ms": check_positive,
    "on_error": choice(check_choice, ON_ERROR),
    "params": _params,
    "parallel": check_bool,
    "at_stream_end": check_bool,
    "observe_inline": check_bool,
    "stream": stream_policy,
    "budget_ms": _budget,  # what the filter may take,
    "cost_per_call_usd": check_amount,  # and what each call costs
}
_FILTER_NULLABLE = ("params", "stream", "budget_ms", "cost_per_call_usd")
STREAM_KEYS = keys_of(StreamPolicy)
_STREAM_CHECKS: dict[str, Check] = {
    "every_tokens": check_int,
    "every_chars": check_int,
    "at_sentence_end": check_bool,
    "window_chars": check_int,
    "holdback_chars": _holdback,
}
