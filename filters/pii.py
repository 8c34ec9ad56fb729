"""Pii: finds personal data by pattern and redacts it with typed placeholders.

Detection is regex plus checksums (Luhn for cards, ISO 7064 mod-97 for IBANs),
so it catches well-formed identifiers and misses free-form personal data such
as names and postal addresses. It matches the text as the model reads it
(:mod:`filters.normal_text`: NFKC, invisible characters removed, whitespace
runs as one space), so a fullwidth ``@`` or a zero-width space inside an
address does not hide it, and each redaction replaces the original
characters the match came from (``normalize: false`` matches the text as
written). The proxy joins chat messages with a blank line, which the view
reads as a space; a card number split across two messages is redacted in
both, each part where it lies.

The patterns and checks are in :mod:`filters.pii_patterns`; they are tried
only where a match can start (:mod:`filters.pii_scan`), which finds what a
scan of the whole text would, at a fraction of the cost.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Sequence

from filters.base import Edit, FilterContext, Stage, Verdict
from filters.normal_text import NormalText, as_written, views, warm_up
from filters.params import flag, one_of, strings
from filters.pii_scan import FINDERS, starts
from filters.pii_tail import TAILS

PII_TYPES = ("email", "phone", "credit_card", "ipv4", "ipv6", "ssn", "iban")

_PLACEHOLDERS = {kind: f"[{kind.upper()}]" for kind in PII_TYPES}


class Pii:
    """Redacts (or blocks on) emails, phones, cards, IPs, SSNs and IBANs.

    ``types`` limits detection to a subset of :data:`PII_TYPES`. Redaction
    replaces each match with a placeholder such as ``[EMAIL]``; reasons name
    the types found, never the values. ``normalize`` (default true) matches
    the normalised view of the text.
    """

    stages: tuple[Stage, ...] = ("input", "output", "stream")

    def __init__(
        self, *, action: str = "redact", types: Sequence[str] = PII_TYPES, normalize: bool = True
    ) -> None:
        one_of("action", action, ("redact", "block"))
        for kind in strings("types", types):
            if kind not in PII_TYPES:
                raise ValueError(f"types: unknown type {kind!r}; known: {', '.join(PII_TYPES)}")
        if not types:
            raise ValueError("types: expected at least one type")
        self._normalize = flag("normalize", normalize)
        if normalize:
            warm_up()
        self._block = action == "block"
        self._finders = tuple((kind, find) for kind, find in FINDERS.items() if kind in types)
        self._tails = tuple({TAILS[kind] for kind in types})

    def _find(
        self, text: str, shadowed: list[tuple[int, int]] | None = None
    ) -> list[tuple[int, int, str]]:
        """Non-overlapping (start, end, kind) matches, sorted by start.

        ``shadowed`` gets the span of each match an overlapping one of an
        earlier kind set aside: in a stream, that earlier match may not last
        (``0958::`` is an IPv6 only until a third ``:`` comes), and the one
        it hides must be held back with it.
        """
        at = starts(text)
        if not at.digits and not at.email:
            return []  # every kind but email contains a digit
        opened: list[int] = []
        found: list[tuple[int, int, str]] = []
        for kind, find in self._finders:
            for start, end in find(text, at):
                i = bisect_right(opened, start)
                if (i and found[i - 1][1] > start) or (i < len(opened) and opened[i] < end):
                    if shadowed is not None:
                        shadowed.append((start, end))
                    continue
                opened.insert(i, start)
                found.insert(i, (start, end, kind))
        return found

    def _found(
        self, text: str, shadowed: list[tuple[int, int]] | None = None
    ) -> list[tuple[int, int, str]]:
        """The matches in every view, as spans of ``text``; the first view's win overlaps.

        ``shadowed`` gets the spans of ``text`` of the matches set aside (see _find).
        """
        seen: tuple[NormalText, ...] = views(text) if self._normalize else (as_written(text),)
        if len(seen) == 1 and seen[0].one_for_one:
            # The view is the text itself: its matches need no mapping back and
            # cannot overlap, so they are the answer as they are.
            return self._find(seen[0].text, shadowed)
        found: list[tuple[int, int, str]] = []
        # The spans kept so far, sorted. No two overlap, so sorted by (start,
        # end) their ends do not decrease either: a span overlaps one of them
        # if and only if the last of those starting before its end ends after
        # its start (the same test as comparing it with each, in log time).
        kept: list[tuple[int, int]] = []
        for view in seen:
            hidden: list[tuple[int, int]] | None = [] if shadowed is not None else None
            for start, end, kind in self._find(view.text, hidden):
                start, end = view.span(start, end)
                before = bisect_left(kept, (end,))
                if not (before and kept[before - 1][1] > start):
                    found.append((start, end, kind))
                    insort(kept, (start, end))
                elif shadowed is not None:
                    shadowed.append((start, end))
            if shadowed is not None and hidden:
                shadowed += [view.span(start, end) for start, end in hidden]
        found.sort()
        return found

    def unsettled(self, text: str) -> int:
        """The end of ``text`` that could still grow into personal data (see filters.pii_tail)."""
        return max(tail(text) for tail in self._tails)

    async def check(self, ctx: FilterContext) -> Verdict:
        text = ctx.text
        shadowed: list[tuple[int, int]] | None = [] if ctx.partial else None
        found = self._found(text, shadowed)
        unsettled: int | None = None
        if ctx.partial:
            # A match reaching into the tail may not be whole yet: it is decided
            # once more text shows where it ends, and held back until then, with
            # any match it hides that reaches into it.
            cut = len(text) - self.unsettled(text)
            held = [start for start, end, _ in found if end > cut]
            first_held = min(held, default=cut)
            hidden = [start for start, end in shadowed or () if end > first_held]
            cut = min([cut, *held, *hidden])
            decided = [f for f in found if f[1] <= cut]
            found, unsettled = decided, len(text) - cut
        if not found:
            return Verdict.allow(unsettled)
        present = {kind for _, _, kind in found}
        kinds = ", ".join(kind for kind in PII_TYPES if kind in present)
        if self._block:
            return Verdict.block(f"pii: found {kinds}")
        edits = [Edit(start, end, _PLACEHOLDERS[kind]) for start, end, kind in found]
        return Verdict.redact_spans(text, edits, f"pii: redacted {kinds}", unsettled)
