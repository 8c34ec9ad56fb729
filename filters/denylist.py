"""Denylist: blocks or redacts configured phrases and regular expressions.

Every entry is compiled once, in ``__init__``, into a single alternation, so
a check is one regex scan however many entries there are. Block reasons name
the configured entry that matched, never the text around it.

Entries match the text as the model reads it (:mod:`filters.normal_text`):
NFKC, invisible characters removed, whitespace runs as one space, Cyrillic
and Greek look-alikes as Latin. Words are normalised the same way when
configured; a redaction replaces the original characters a match came from.
``normalize: false`` matches the text as written.

Python's regex engine tries an alternation at every position, which costs
about 0.5 µs per character for twenty phrases. Most texts contain none of
them, so when every entry is a plain ASCII word and the text is ASCII, a
substring search (a thousand times cheaper per character) first checks that
some word occurs at all; only then does the regex decide. For ASCII text and
ASCII words, case-insensitive regex matching and lower-casing agree exactly,
so the shortcut never lets through what the regex would catch. On ASCII
text the view differs only in whitespace and control characters. One
translation lower-cases the text, makes every whitespace character a space
and shows control characters; without them, a word can only be in the view
if its longest part without spaces is in the translation, and when it is,
the word itself is unless the text has a run of spaces.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

import regex

from filters.base import Edit, FilterContext, Stage, Verdict
from filters.normal_text import (
    ASCII_VIEW,
    ASCII_VIEW_LOWER,
    NormalText,
    as_written,
    normal_text,
    union,
    views,
    warm_up,
)
from filters.params import combinable_pattern, flag, one_of, string, strings

_WORD_CHAR = re.compile(r"\w")
_GROUP_PREFIX = "_denylist_"


def _word_source(word: str, whole_word: bool) -> str:
    source = re.escape(word)
    if not whole_word:
        return source
    # A boundary only makes sense on an edge that is a word character: "[INST]"
    # must still match in "foo[INST]bar".
    if _WORD_CHAR.match(word[0]):
        source = r"(?<!\w)" + source
    if _WORD_CHAR.match(word[-1]):
        source += r"(?!\w)"
    return source


def _pattern_source(pattern: str, flags: int) -> str:
    # Checked wrapped, as it will be combined.
    combinable_pattern("patterns", pattern, f"(?:{pattern})", flags)
    return pattern


class Denylist:
    """Blocks (or redacts) text containing any configured word or pattern.

    ``words`` are literal phrases; with ``whole_word`` they only match where
    not glued to other word characters. ``patterns`` are Python regexes used
    as written. ``case_sensitive`` applies to both. ``normalize`` (default
    true) matches the normalised view of the text. At least one entry is
    required.
    """

    stages: tuple[Stage, ...] = ("input", "output", "stream")

    def __init__(
        self,
        *,
        words: Sequence[str] = (),
        patterns: Sequence[str] = (),
        case_sensitive: bool = False,
        whole_word: bool = True,
        action: str = "block",
        replacement: str = "[REDACTED]",
        normalize: bool = True,
    ) -> None:
        words = strings("words", words)
        patterns = strings("patterns", patterns)
        flags = 0 if flag("case_sensitive", case_sensitive) else re.IGNORECASE
        whole_word = flag("whole_word", whole_word)
        self._normalize = flag("normalize", normalize)
        one_of("action", action, ("block", "redact"))
        string("replacement", replacement)
        if not words and not patterns:
            raise ValueError("words, patterns: at least one word or pattern is required")
        if self._normalize:
            warm_up()

        entries: list[tuple[str, str]] = []
        seen: list[str] = []  # each word as the view spells it
        for word in words:
            as_seen = normal_text(word, fold=True).text if self._normalize else word
            if not as_seen.strip():
                raise ValueError("words: entries must not be empty or blank")
            seen.append(as_seen)
            entries.append((f'"{word}"', _word_source(as_seen, whole_word)))
        for pattern in patterns:
            entries.append((f'pattern "{pattern}"', _pattern_source(pattern, flags)))

        self._labels = {f"{_GROUP_PREFIX}{i}": label for i, (label, _) in enumerate(entries)}
        combined = "|".join(f"(?P<{_GROUP_PREFIX}{i}>{src})" for i, (_, src) in enumerate(entries))
        try:
            self._regex = re.compile(combined, flags)
        except re.error as exc:  # e.g. two patterns defining the same group name
            raise ValueError(f"patterns: cannot be combined: {exc}") from None
        self._redact = action == "redact"
        self._replacement = replacement
        self._case_sensitive = flags == 0
        # The same patterns in an engine that can tell a match the text's end cut short.
        self._partial: regex.Pattern[str] | None = None
        if patterns:
            try:
                self._partial = regex.compile(
                    "|".join(f"(?:{p})" for p in patterns),
                    regex.V0 | (0 if self._case_sensitive else regex.IGNORECASE),
                )
            except regex.error:
                self._partial = None  # a pattern only re reads: it holds nothing back
        folded = [w if self._case_sensitive else w.lower() for w in seen]
        # A stream's end that is the start of a word may become the word.
        self._openings = frozenset(w[:n] for w in folded for n in range(1, len(w)))
        self._longest_opening = max((len(w) - 1 for w in folded), default=0)
        plain = not patterns and all(w.isascii() for w in seen)
        self._literals: tuple[str, ...] | None = (
            tuple(w if self._case_sensitive else w.lower() for w in seen) if plain else None
        )
        # Each word, and its longest part without spaces (the last of equals:
        # the end of a phrase tends to be the rarer word), as ASCII bytes.
        self._needles = tuple(
            (b, b if b" " not in b else max(reversed(b.split(b" ")), key=len))
            for b in (w.encode("ascii") for w in self._literals or ())
        )
        self._ascii_view = ASCII_VIEW if self._case_sensitive else ASCII_VIEW_LOWER

    def _label(self, match: re.Match[str]) -> str:
        # The wrapper group closes last, so lastgroup names it even when the
        # user's pattern has groups of its own.
        return self._labels[match.lastgroup or ""]

    def _cannot_match(self, text: str) -> bool:
        if self._literals is None or not text.isascii():
            return False
        if not self._normalize:
            written = text if self._case_sensitive else text.lower()
            return not any(word in written for word in self._literals)
        haystack = text.encode("ascii").translate(self._ascii_view)
        if b"\x00" in haystack:
            return False  # a control character may hide inside a word: the view decides
        # A word can only be in the view if its longest part without spaces is
        # in the haystack; without runs of spaces, the view is the haystack.
        maybe = False
        for word, needle in self._needles:
            if needle in haystack:
                if needle is word or word in haystack:
                    return False
                maybe = True
        return not maybe or b"  " not in haystack

    def _views(self, text: str) -> tuple[NormalText, ...]:
        return views(text, fold=True) if self._normalize else (as_written(text),)

    def unsettled(self, text: str) -> int:
        """The longest end of ``text`` that may still become a match (in the view).

        For words, the end that opens one; for patterns, where a match begins
        that the end of the text cuts short, or that reaches the end and might
        go on (``sk-[a-z0-9]{20,}``).
        """
        return max(self._opening_tail(text), self._pattern_tail(text))

    def _pattern_tail(self, text: str, view: NormalText | None = None) -> int:
        """``view``: the text's view, when the caller has it already."""
        if self._partial is None:
            return 0
        if view is None:
            view = self._views(text)[0]
        last = None
        for match in self._partial.finditer(view.text, partial=True):
            if match.end() > match.start():  # not the empty start of a match at the end
                last = match
        if last is None or (not last.partial and last.end() < len(view.text)):
            return 0
        return len(text) - view.span(last.start(), len(view.text))[0]

    def _opening_tail(self, text: str) -> int:
        if not self._longest_opening:
            return 0
        # The view of the last few characters reads their end as the view of the
        # whole text does, unless they are mostly invisible: then the whole text.
        tail = text[-(4 * self._longest_opening + 32) :]
        view = normal_text(tail, fold=True) if self._normalize else as_written(tail)
        if len(view.text) <= self._longest_opening + 1 and len(tail) < len(text):
            tail, view = text, normal_text(text, fold=True)
        end = view.text[-self._longest_opening :]
        if not self._case_sensitive:
            end = end.lower()
        for n in range(len(end), 0, -1):
            if end[-n:] in self._openings:
                return len(tail) - view.span(len(view.text) - n, len(view.text))[0]
        return 0

    async def check(self, ctx: FilterContext) -> Verdict:
        if self._cannot_match(ctx.text):
            return Verdict.allow(self.unsettled(ctx.text) if ctx.partial else None)
        seen = self._views(ctx.text)
        unsettled = None
        if ctx.partial:  # the view matched is the one the pattern tail reads: made once
            text = ctx.text
            unsettled = max(self._opening_tail(text), self._pattern_tail(text, seen[0]))
        if not self._redact:
            for view in seen:
                match = self._regex.search(view.text)
                if match is not None:
                    return Verdict.block(f"denylist: matched {self._label(match)}")
            return Verdict.allow(unsettled)

        spans: list[tuple[int, int]] = []
        labels: dict[int, str] = {}  # where a match starts in the text -> what it matched
        for view in seen:
            for match in self._regex.finditer(view.text):
                start, end = view.span(*match.span())
                spans.append((start, end))
                labels.setdefault(start, self._label(match))
        if unsettled:
            # A match reaching into the tail may not be whole yet: decided later.
            cut = len(ctx.text) - unsettled
            spans = [(start, end) for start, end in spans if end <= cut]
            labels = {start: label for start, label in labels.items() if start < cut}
        if not spans:
            return Verdict.allow(unsettled)
        matched = dict.fromkeys(labels[start] for start in sorted(labels))
        edits = [Edit(start, end, self._replacement) for start, end in union(spans)]
        verdict = Verdict.redact_spans(ctx.text, edits, f"denylist: redacted {', '.join(matched)}")
        if not ctx.partial:
            return verdict
        return replace(verdict, unsettled=self.unsettled(verdict.text or ""))
