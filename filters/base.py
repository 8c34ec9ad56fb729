"""The filter interface: what a safety filter receives and what it returns.

A filter is any class with:

    stages: tuple[str, ...]            # any of "input", "output", "stream"
    def __init__(self, **params): ...  # params from the config; raise ValueError
                                       # or TypeError on a bad one
    async def check(self, ctx: FilterContext) -> Verdict: ...

A filter judges ``ctx.text`` and returns a :class:`Verdict`. It never reads a
clock to report its own cost, never touches metrics or tracing, and never
handles its own timeout: the chain runner times it, bounds it with its
``timeout_ms`` and contains anything it raises.

A redaction should say where it changed the text (:meth:`Verdict.redact_spans`):
``ctx.text`` may be several messages joined, and the chain then puts each
change into the message it came from, splitting one that spans two. A
redaction without edits is asked again message by message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

Stage = Literal["input", "output", "stream"]
STAGES: tuple[Stage, ...] = ("input", "output", "stream")

Action = Literal["allow", "block", "redact"]


@dataclass(frozen=True, slots=True)
class Edit:
    """One change a redaction made: ``ctx.text[start:end]`` became ``text``."""

    start: int
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """A filter's decision: allow, block (with a reason) or redact (with the new text).

    ``edits``, when a redaction gives them, are its changes to ``ctx.text`` in
    order, not overlapping; applied to ``ctx.text`` they give ``text``.
    """

    action: Action
    reason: str | None = None
    text: str | None = None
    edits: tuple[Edit, ...] = ()

    @staticmethod
    def allow() -> Verdict:
        return _ALLOW

    @staticmethod
    def block(reason: str) -> Verdict:
        return Verdict("block", reason)

    @staticmethod
    def redact(new_text: str, reason: str) -> Verdict:
        return Verdict("redact", reason, new_text)

    @staticmethod
    def redact_spans(text: str, edits: Sequence[Edit], reason: str) -> Verdict:
        """``text`` with each of ``edits`` (in order, not overlapping) applied."""
        return Verdict("redact", reason, apply_edits(text, edits), tuple(edits))


_ALLOW = Verdict("allow")


def apply_edits(text: str, edits: Sequence[Edit]) -> str:
    parts: list[str] = []
    last = 0
    for edit in edits:
        parts += (text[last : edit.start], edit.text)
        last = edit.end
    parts.append(text[last:])
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class FilterContext:
    """What a filter sees for one call.

    ``text`` is the text judged at this stage: the prompt text (for chat, the
    text of every message, joined by a blank line), one completion's text, or
    a stream window. ``body`` is the parsed JSON request body, or None.
    ``route`` is one of chat_completions, completions, embeddings, other.
    """

    stage: Stage
    text: str
    body: Any
    route: str
    request_id: str
    variant: str = "default"


@runtime_checkable
class Filter(Protocol):
    """The one method a filter implements (plus a ``stages`` attribute)."""

    stages: tuple[str, ...]

    async def check(self, ctx: FilterContext) -> Verdict: ...
