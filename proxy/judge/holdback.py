"""How much of a judged stream text a filter keeps from the client for now.

A match split across chunks ("jane.doe@example.c" + "om") must be judged
whole before any of it goes out, so a stream filter holds back the tail of
what it judged that could still grow into a match. With ``holdback_chars:
auto`` (the default) that tail is the filter's own answer: the unsettled
characters its verdict reports, or, for a filter that declares only the
longest match it can make (``max_match_chars``), that many characters as the
model reads them. A filter that says neither holds nothing back.
"""

from __future__ import annotations

import unicodedata

from proxy.judge.chain import BoundFilter

# Characters a model never sees as text: counting them would let zero-width
# padding push the start of a match out of a held-back tail.
_INVISIBLE = frozenset(("Cf", "Mn", "Me"))


def hold_for(bound: BoundFilter, unsettled: int | None, window: str) -> int:
    """The characters at the end of ``window`` held back after this judgement."""
    configured = bound.stream.holdback_chars
    if configured != "auto":
        return configured
    if unsettled is not None:
        return max(0, min(unsettled, len(window)))
    if bound.max_match_chars > 1:
        return tail_of(window, bound.max_match_chars - 1)
    return 0


def tail_of(text: str, count: int) -> int:
    """The length of the shortest end of ``text`` holding ``count`` visible characters.

    Invisible characters (formats such as a zero-width space, combining marks)
    count as none and a run of whitespace as one, as the filters' normalised
    view of the text reads them.
    """
    seen = 0
    i = len(text)
    while i > 0 and seen < count:
        ch = text[i - 1]
        if ch.isspace():
            while i > 1 and text[i - 2].isspace():
                i -= 1
            seen += 1
        elif ch.isascii() or unicodedata.category(ch) not in _INVISIBLE:
            seen += 1
        i -= 1
    # Invisible characters just before the tail are held with it: a zero-width
    # space may be what stands inside a match.
    while i > 0 and not text[i - 1].isascii() and unicodedata.category(text[i - 1]) in _INVISIBLE:
        i -= 1
    return len(text) - i
