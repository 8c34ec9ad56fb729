"""Heuristics: rule-based prompt-injection checks, with no model.

Five checks:

* ``override``: instruction-override phrases ("ignore all previous
  instructions", "you are now DAN", "reveal your system prompt", ...);
* ``role_tags``: chat-template tokens and forged turns (``<|im_start|>``,
  ``[INST]``, ``<<SYS>>``, "System: you are now ..." at a line start);
* ``encoded``: long base64 or hex payloads whose decoded text is printable
  and trips one of the two checks above;
* ``invisible``: zero-width, bidirectional-control and tag characters;
* ``homoglyphs``: Latin words spelled with Cyrillic or Greek look-alikes.

Whichever checks are enabled, invisible characters are removed and
look-alikes read as Latin before the phrase and tag checks, so "ignore" with a
zero-width space inside, or with a Cyrillic "i", is still "ignore". Reasons
name the checks that fired, never the text. The patterns live in
:mod:`filters.heuristics_rules`, the normalisation in
:mod:`filters.heuristics_text`, the encoded check in
:mod:`filters.heuristics_encoded`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from filters.base import FilterContext, Stage, Verdict
from filters.heuristics_encoded import Payloads
from filters.heuristics_rules import (
    FIRST_LINE,
    NEXT_LINES,
    OVERRIDE_RULES,
    TOKEN_MARKS,
    TOKEN_RULES,
    Rule,
)
from filters.heuristics_text import (
    UNDISGUISE,
    has_invisible,
    lower,
    marked_bytes,
    mixed_words,
    strip_invisible,
    view,
)
from filters.params import combinable_pattern, integer, one_of, strings

CHECKS = ("override", "role_tags", "encoded", "invisible", "homoglyphs")
REPLACEMENT = "[REMOVED]"

Span = tuple[int, int]


def _check_names(value: object) -> frozenset[str]:
    value = strings("checks", value)
    for name in value:
        if name not in CHECKS:
            raise ValueError(f"checks: unknown check {name!r}; known: {', '.join(CHECKS)}")
    if not value:
        raise ValueError("checks: expected at least one check")
    return frozenset(value)


def _extra_regex(value: object) -> re.Pattern[str] | None:
    sources = []
    for pattern in strings("extra_phrases", value):
        # Checked as it will be combined.
        combinable_pattern("extra_phrases", pattern, f"(?i:{pattern})")
        sources.append(f"(?i:{pattern})")
    if not sources:
        return None
    try:
        return re.compile("|".join(sources), re.MULTILINE)
    except re.error as exc:  # e.g. a group name used twice
        raise ValueError(f"extra_phrases: cannot be combined: {exc}") from None


def _upper(clean: str, span: Span) -> bool:
    """Whether ``span`` of ``clean`` is in capitals, or did not take part in the match."""
    start, end = span
    return start < 0 or clean[start:end].isupper()


class _Text:
    """One text, normalised: ``clean`` has no invisible characters, ``view``
    is its lower-case ASCII reading, ``raw`` one byte per character of it."""

    __slots__ = ("clean", "hidden", "raw", "view")

    def __init__(self, text: str) -> None:
        self.hidden = 0
        if text.isascii():  # the common case: nothing to normalise
            self.clean = text
            self.raw = text.encode("ascii")
            self.view = text.lower()
            return
        utf8 = text.encode("utf-8", "surrogatepass")
        raw = marked_bytes(text, utf8)
        if has_invisible(raw, utf8):
            stripped, self.hidden = strip_invisible(text, raw)
            if len(stripped) < len(text):  # not only emoji joiners, which stay
                text = stripped
                raw = marked_bytes(text, utf8)  # utf8 is only read for rare characters
        self.clean = text
        self.raw = raw
        self.view = view(raw)


class Heuristics:
    """Blocks (or redacts) text that looks like a prompt injection.

    ``checks`` selects any of :data:`CHECKS`. ``min_encoded_length`` is the
    shortest base64 or hex run that is decoded; ``max_invisible`` the number
    of invisible characters tolerated; ``extra_phrases`` are regexes added to
    the override check, matched case-insensitively on the text with invisible
    characters removed (and again with look-alikes read as Latin). ``redact``
    removes invisible characters, spells disguised words in Latin and
    replaces phrases, tags and encoded payloads with ``[REMOVED]``.
    """

    stages: tuple[Stage, ...] = ("input", "output", "stream")

    def __init__(
        self,
        *,
        checks: Sequence[str] = CHECKS,
        action: str = "block",
        min_encoded_length: int = 64,
        max_invisible: int = 0,
        extra_phrases: Sequence[str] = (),
    ) -> None:
        self._checks = _check_names(checks)
        self._redact = one_of("action", action, ("block", "redact")) == "redact"
        length = integer("min_encoded_length", min_encoded_length, 16)
        self._max_invisible = integer("max_invisible", max_invisible, 0)
        self._extra = _extra_regex(extra_phrases)
        self._payloads = Payloads(length, self._injected)

    def _rule_spans(self, rules: Sequence[Rule], text: _Text) -> list[Span]:
        spans: list[Span] = []
        view = text.view
        absent: set[str] = set()  # several rules share a needle
        for rule in rules:
            if rule.needle in absent:
                continue
            if rule.needle not in view:  # the common case, without building a generator
                absent.add(rule.needle)
                continue
            caps = [name for name in rule.regex.groupindex if name.startswith("caps")]
            for match in rule.matches(view):
                if any(not _upper(text.clean, match.span(name)) for name in caps):
                    continue  # "Dan" is a name, DAN the jailbreak
                spans.append(match.span())
                if not self._redact:
                    return spans
        return spans

    def _override(self, text: _Text) -> list[Span]:
        spans = self._rule_spans(OVERRIDE_RULES, text)
        if self._extra is None or (spans and not self._redact):
            return spans
        views = (text.view,) if text.clean.isascii() else (text.view, lower(text.clean))
        for searched in views:
            spans += (m.span() for m in self._extra.finditer(searched))
        return spans

    def _role_tags(self, text: _Text) -> list[Span]:
        searched = text.view
        spans = (
            self._rule_spans(TOKEN_RULES, text) if any(c in searched for c in TOKEN_MARKS) else []
        )
        if ":" in searched and (not spans or self._redact):
            if (first := FIRST_LINE.match(searched)) is not None:
                spans.append(first.span())
            # Each match opens with the newline before the marker; the newline stays.
            spans += ((m.start() + 1, m.end()) for m in NEXT_LINES.finditer(searched))
        return spans

    def _injected(self, decoded: str) -> bool:
        """Whether decoded payload text holds an override phrase or a role tag."""
        text = _Text(decoded)
        return bool(self._override(text) or self._role_tags(text))

    async def check(self, ctx: FilterContext) -> Verdict:
        text = _Text(ctx.text)
        checks = self._checks
        fired: dict[str, list[Span]] = {}
        if "override" in checks and (spans := self._override(text)):
            fired["override"] = spans
        if "role_tags" in checks and (spans := self._role_tags(text)):
            fired["role_tags"] = spans
        if "encoded" in checks and (
            spans := self._payloads.find(text.clean, text.raw, self._redact)
        ):
            fired["encoded"] = spans
        if "invisible" in checks and text.hidden > self._max_invisible:
            fired["invisible"] = []
        if (
            "homoglyphs" in checks
            and not text.clean.isascii()
            and (mixed := mixed_words(text.clean, text.raw, self._redact))
        ):
            fired["homoglyphs"] = mixed
        if not fired:
            return Verdict.allow()
        names = ", ".join(name for name in CHECKS if name in fired)
        if not self._redact:
            return Verdict.block(f"heuristics: {names}")
        return Verdict.redact(_redacted(text.clean, fired), f"heuristics: redacted {names}")


def _redacted(clean: str, fired: dict[str, list[Span]]) -> str:
    """``clean`` with disguised words in Latin and every matched span replaced."""
    for start, end in fired.get("homoglyphs", ()):  # one for one: later spans stay put
        clean = clean[:start] + clean[start:end].translate(UNDISGUISE) + clean[end:]
    removed = sorted(
        span for name in ("override", "role_tags", "encoded") for span in fired.get(name, ())
    )
    parts: list[str] = []
    last = 0
    for start, end in removed:
        if end <= last:
            continue
        if start >= last:
            parts += (clean[last:start], REPLACEMENT)
        last = end
    parts.append(clean[last:])
    return "".join(parts)
