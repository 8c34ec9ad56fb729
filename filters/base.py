"""The filter interface: what a safety filter receives and what it returns.

A filter is any class with:

    stages: tuple[str, ...]            # any of "input", "output", "stream"
    def __init__(self, **params): ...  # params from the config; raise ValueError
                                       # or TypeError on a bad one
    async def check(self, ctx: FilterContext) -> Verdict: ...

A filter judges ``ctx.text`` and returns a :class:`Verdict`. On the stream
stage ``ctx.partial`` says more text may follow; a filter that knows how its
matches are shaped may then report, in ``Verdict.unsettled``, how many
characters at the end could still grow into a match (they are held back from
the client until it judges what follows), or declare ``max_match_chars``,
the longest match it can make. It never reads a
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

    ``reason`` is shown: to a blocked client in its error, and in traces (the
    ``gen_ai.evaluation.explanation`` of the verdict's event, cut to 256
    characters) whether or not prompt text is traced. Name what was found (a
    kind, a configured label, a score), as the built-in filters do; do not
    quote the text judged.
    """

    action: Action
    reason: str | None = None
    text: str | None = None
    # Stream stage: characters at the end of the text (as returned) that could
    # still become part of a match once more text arrives; None: not reported.
    unsettled: int | None = None
    edits: tuple[Edit, ...] = ()

    @staticmethod
    def allow(unsettled: int | None = None) -> Verdict:
        return _ALLOW if unsettled is None else Verdict("allow", unsettled=unsettled)

    @staticmethod
    def block(reason: str) -> Verdict:
        return Verdict("block", reason)

    @staticmethod
    def redact(new_text: str, reason: str, unsettled: int | None = None) -> Verdict:
        return Verdict("redact", reason, new_text, unsettled)

    @staticmethod
    def redact_spans(
        text: str, edits: Sequence[Edit], reason: str, unsettled: int | None = None
    ) -> Verdict:
        """``text`` with each of ``edits`` (in order, not overlapping) applied."""
        return Verdict("redact", reason, apply_edits(text, edits), unsettled, tuple(edits))


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
    ``route`` is the route label (chat_completions, completions, embeddings,
    responses, messages, other). ``partial`` is true for a stream window that
    more text will follow: a match touching its end may not be complete yet.
    """

    stage: Stage
    text: str
    body: Any
    route: str
    request_id: str
    variant: str = "default"
    partial: bool = False


@runtime_checkable
class Filter(Protocol):
    """The one method a filter implements (plus a ``stages`` attribute)."""

    stages: tuple[str, ...]

    async def check(self, ctx: FilterContext) -> Verdict: ...
