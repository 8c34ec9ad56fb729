"""What one request's answer gave the client beside its time: the capability tax's record.

A filter that blocks or trims benign work costs something too, and latency
does not show it. Per request, besides its outcome (``blocked`` when a
filter refused it):

- ``redacted``: an enforcing filter rewrote some text of it (prompt or answer);
- ``content_filter``: the answer the client got ended as filtered: a finish
  reason in :data:`FILTERED_REASONS` (OpenAI's ``content_filter``, also a
  Response's incomplete reason; Anthropic's ``refusal``), whether a filter
  here or the model server's own set it; a stream a filter blocked ends so;
- ``completion_tokens``: the answer's output tokens, by its usage; 0 for a
  prompt blocked before the model saw it (nothing was generated); None when
  unknown (no usage reported: a stream without ``include_usage``, an
  unjudged route, a failure).

The finish reasons and usage are what the client received (after this
proxy's edits), read from the judged answer, the judged stream's events, or
for an answer no filter read, its bytes parsed once here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.measure.marks import FilterCall
from proxy.measure.served import Served
from proxy.surfaces.base import Usage

FILTERED_REASONS = frozenset({"content_filter", "refusal"})


@dataclass(frozen=True, slots=True)
class Answer:
    """The answer as the client received it: its document (when read), ends and usage."""

    body: Any
    finish_reasons: list[str]
    usage: Usage | None


@dataclass(frozen=True, slots=True)
class Capability:
    redacted: bool = False
    content_filter: bool = False
    completion_tokens: int | None = None


NOTHING = Capability()


def answer_of(ex: Served) -> Answer:
    """Finish reasons and usage of what the client received, when it was read."""
    body = ex.response_body
    if isinstance(body, bytes):
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError:
            body = None
    reasons: list[str] = list(ex.finish_reasons)
    usage: Usage | None = ex.usage
    surface = ex.surface
    if isinstance(body, dict) and surface is not None:
        reasons += surface.finish_reasons(body)
        usage = surface.usage(body) or usage
    if not reasons and ex.outcome == "blocked" and ex.streamed:
        reasons = ["content_filter"]  # the blocked ending a filter sent in the stream
    return Answer(body, reasons, usage)


def capability_of(ex: Served, answer: Answer, calls: Iterable[FilterCall]) -> Capability:
    tokens = answer.usage.output_tokens if answer.usage is not None else None
    if tokens is None and ex.outcome == "blocked" and ex.timeline.upstream_sent_ns is None:
        tokens = 0  # refused before the model: it generated nothing
    return Capability(
        redacted=any(c.action == "redact" and c.mode == "enforce" for c in calls),
        content_filter=any(r in FILTERED_REASONS for r in answer.finish_reasons),
        completion_tokens=tokens,
    )
