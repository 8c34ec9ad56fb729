"""The filter interface: what a safety filter receives and what it returns.

A filter is any class with (:class:`Filter`):

    stages: tuple[Stage, ...]          # any of "input", "output", "stream"
    def __init__(self, **params): ...  # params from the config; raise ValueError
                                       # or TypeError on a bad one
    async def check(self, ctx: FilterContext) -> Verdict: ...

and, if it needs them, the optional members the runner reads once, when the
filter is built (:class:`FilterOptions`, :func:`declared`, :func:`closer`):

    cpu_bound: bool                        # call it on a worker thread
    max_match_chars: int                   # the longest match it can make
    stream_defaults: Mapping[str, object]  # its default ``stream`` policy
    loads: str                             # what its constructor loads, said
                                           # when the build is slow
    async def aclose(self) -> None: ...    # release what it holds

A class without them works as before: each has a default (False, 0, none,
none, nothing to close), and one of the wrong type counts as left out.

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

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, cast, runtime_checkable

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
    """What every filter has: the stages it can judge, and the one method.

    ``stages`` is read-only here, so a class attribute of any tuple of
    :data:`Stage` satisfies it (annotate it ``tuple[Stage, ...]``: a bare
    ``("input",)`` is inferred as a tuple of ``str``).
    """

    @property
    def stages(self) -> tuple[Stage, ...]: ...

    async def check(self, ctx: FilterContext) -> Verdict: ...


class FilterOptions:
    """The optional members with their defaults: a base class a filter may take.

    Subclassing it is never required (the runner reads each member with
    :func:`declared` and :func:`closer`, falling back to these defaults); it
    documents the members' types and lets mypy check a filter that overrides
    one. ``cpu_bound`` and ``max_match_chars`` may also be set per instance
    (from a param); ``stream_defaults`` and ``loads`` belong to the class.
    """

    cpu_bound: bool = False
    max_match_chars: int = 0
    stream_defaults: ClassVar[Mapping[str, object] | None] = None
    loads: ClassVar[str | None] = None


@dataclass(frozen=True, slots=True)
class Declared:
    """The optional members a filter class or instance declares, checked (see :func:`declared`)."""

    cpu_bound: bool = False
    max_match_chars: int = 0
    stream_defaults: Mapping[str, object] | None = None
    loads: str | None = None


def declared(of: object) -> Declared:
    """The optional members of a filter class or instance; one of the wrong type is left out.

    ``cpu_bound`` counts only when it is True itself (not merely truthy), so a
    mistaken ``"no"`` never moves a filter to a worker thread.
    """
    cpu_bound = getattr(of, "cpu_bound", False) is True
    longest = getattr(of, "max_match_chars", 0)
    if not isinstance(longest, int) or isinstance(longest, bool):
        longest = 0
    defaults = getattr(of, "stream_defaults", None)
    loads = getattr(of, "loads", None)
    return Declared(
        cpu_bound,
        longest,
        cast("Mapping[str, object] | None", defaults),
        loads if isinstance(loads, str) and loads else None,
    )


Close = Callable[[], Awaitable[None]]


def closer(instance: object) -> Close | None:
    """The filter's ``aclose``, to await when it is retired; None when it has none."""
    return cast("Close | None", getattr(instance, "aclose", None))
