"""Denylist: blocks or redacts configured phrases and regular expressions.

Every entry is compiled once, in ``__init__``, into a single alternation, so
a check is one regex scan however many entries there are. Block reasons name
the configured entry that matched, never the text around it.

Python's regex engine tries an alternation at every position, which costs
about 0.5 µs per character for twenty phrases. Most texts contain none of
them, so when every entry is a plain ASCII word and the text is ASCII, a
substring search (a thousand times cheaper per character) first checks that
some word occurs at all; only then does the regex decide. For ASCII text and
ASCII words, case-insensitive regex matching and lower-casing agree exactly,
so the shortcut never lets through what the regex would catch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from filters.base import FilterContext, Verdict

_WORD_CHAR = re.compile(r"\w")
# Entries are renumbered once combined, so a numbered reference would silently
# point at another entry's group.
_NUMBERED_REF = re.compile(r"(?<!\\)(?:\\\\)*\\[1-9]|\(\?\([0-9]")
_GROUP_PREFIX = "_denylist_"


def _strings(name: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{name}: expected a list of strings")
    return tuple(value)


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected true or false, got {value!r}")
    return value


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
    try:
        # Compiled wrapped, as it will be combined, so a global inline flag
        # such as "(?i)" not at the start is reported against this pattern.
        compiled = re.compile(f"(?:{pattern})", flags)
    except re.error as exc:
        raise ValueError(f"patterns: invalid regex {pattern!r}: {exc}") from None
    if compiled.fullmatch(""):
        raise ValueError(f"patterns: {pattern!r} matches the empty string")
    if _NUMBERED_REF.search(pattern):
        raise ValueError(
            f"patterns: {pattern!r} uses a numbered group reference; "
            "use a named group, (?P<name>...) with (?P=name)"
        )
    return pattern


class Denylist:
    """Blocks (or redacts) text containing any configured word or pattern.

    ``words`` are literal phrases; with ``whole_word`` they only match where
    not glued to other word characters. ``patterns`` are Python regexes used
    as written. ``case_sensitive`` applies to both. At least one entry is
    required.
    """

    stages: tuple[str, ...] = ("input", "output", "stream")

    def __init__(
        self,
        *,
        words: Sequence[str] = (),
        patterns: Sequence[str] = (),
        case_sensitive: bool = False,
        whole_word: bool = True,
        action: str = "block",
        replacement: str = "[REDACTED]",
    ) -> None:
        words = _strings("words", words)
        patterns = _strings("patterns", patterns)
        flags = 0 if _flag("case_sensitive", case_sensitive) else re.IGNORECASE
        whole_word = _flag("whole_word", whole_word)
        if action not in ("block", "redact"):
            raise ValueError(f'action: expected "block" or "redact", got {action!r}')
        if not isinstance(replacement, str):
            raise TypeError(f"replacement: expected a string, got {replacement!r}")
        if not words and not patterns:
            raise ValueError("words, patterns: at least one word or pattern is required")

        entries: list[tuple[str, str]] = []
        for word in words:
            if not word.strip():
                raise ValueError("words: entries must not be empty or blank")
            entries.append((f'"{word}"', _word_source(word, whole_word)))
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
        folded = [w if self._case_sensitive else w.lower() for w in words]
        # A stream's end that is the start of a word may become the word.
        self._openings = frozenset(w[:n] for w in folded for n in range(1, len(w)))
        self._longest_opening = max((len(w) - 1 for w in folded), default=0)
        plain = not patterns and all(w.isascii() for w in words)
        self._literals: tuple[str, ...] | None = (
            tuple(w if self._case_sensitive else w.lower() for w in words) if plain else None
        )

    def _label(self, match: re.Match[str]) -> str:
        # The wrapper group closes last, so lastgroup names it even when the
        # user's pattern has groups of its own.
        return self._labels[match.lastgroup or ""]

    def _cannot_match(self, text: str) -> bool:
        if self._literals is None or not text.isascii():
            return False
        haystack = text if self._case_sensitive else text.lower()
        return not any(word in haystack for word in self._literals)

    def unsettled(self, text: str) -> int:
        """The longest end of ``text`` that opens a word: it may still become one.

        Patterns report nothing: what a regex may still match is unknowable here.
        """
        end = text[-self._longest_opening :] if self._longest_opening else ""
        if not self._case_sensitive:
            end = end.lower()
        for n in range(len(end), 0, -1):
            if end[-n:] in self._openings:
                return n
        return 0

    async def check(self, ctx: FilterContext) -> Verdict:
        unsettled = self.unsettled(ctx.text) if ctx.partial else None
        if self._cannot_match(ctx.text):
            return Verdict.allow(unsettled)
        match = self._regex.search(ctx.text)
        if match is None:
            return Verdict.allow(unsettled)
        if not self._redact:
            return Verdict.block(f"denylist: matched {self._label(match)}")

        matched: dict[str, None] = {}

        def replace(m: re.Match[str]) -> str:
            matched[self._label(m)] = None
            return self._replacement  # a function, so backslashes stay literal

        new_text = self._regex.sub(replace, ctx.text)
        unsettled = self.unsettled(new_text) if ctx.partial else None
        return Verdict.redact(new_text, f"denylist: redacted {', '.join(matched)}", unsettled)
