"""Text normalisation for the heuristics filter: invisible characters,
Latin look-alikes, and the ASCII view of a text the patterns run on.

Every step keeps one character per character (removing invisible characters
is the only exception, and it happens first), so a span found in the view is
the same span in the text the filter redacts. The steps are C loops
(``str.find``, ``bytes.translate``, a charmap codec) rather than regexes or
Python loops: a regex scan costs about 5 ns per character even when it
matches nothing, ``str.find`` about 0.5 ns.
"""

from __future__ import annotations

import codecs
import re
import unicodedata

from filters.lookalikes import AS_LATIN, LATIN_VARIANTS, LOOKALIKES

# Zero-width characters, bidirectional controls and (below) tag characters.
_HIDDEN_BMP = "\u200b\u200c\u200d\u2060\ufeff\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_HIDDEN = _HIDDEN_BMP + "\U000e0000-\U000e007f"
# Removed before matching but never counted: they also occur in ordinary text
# (soft hyphens from word processors, direction marks in Hebrew and Arabic).
_QUIET = "\u00ad\u034f\u180e\u200e\u200f\u2061\u2062\u2063\u2064"

_FOLD = {
    **LOOKALIKES,
    # Latin letters outside ASCII, and alpha, which maths uses too much to flag.
    **LATIN_VARIANTS,
    **{chr(cp): chr(cp - 0xFEE0).lower() for cp in range(0xFF21, 0xFF3B)},  # fullwidth A-Z
    # DeepSeek's special tokens are spelled with a fullwidth bar and "▁".
    "\uff5c": "|",
    "\u2581": "_",
}
# Fullwidth a-z and the thousand mathematical alphanumerics (bold, italic,
# script... letters) do not fit in the byte map; texts holding them, found by
# their UTF-8 lead bytes, are folded with a dict first.
_RARE = {
    **{cp: chr(cp - 0xFEE0) for cp in range(0xFF41, 0xFF5B)},
    **{
        cp: folded.lower()
        for cp in range(0x1D400, 0x1D800)
        if len(folded := unicodedata.normalize("NFKC", chr(cp))) == 1 and folded.isascii()
    },
}
_RARE_UTF8 = (b"\xef\xbd", b"\xf0\x9d")  # U+FF40..U+FF7F, U+1D000..U+1DFFF

# A charmap codec maps ASCII to itself, each look-alike and invisible
# character to its own byte and everything else to "?"; a byte table then
# maps look-alikes (and A-Z) to lower-case Latin. Two C loops, where
# str.translate with a dict costs ~1 ms on 16 KB of Cyrillic.
_MARKED = "".join(_FOLD) + _HIDDEN_BMP + _QUIET
assert len(_MARKED) <= 128, "the byte map has 128 free codes"
_ENCODE_MAP = codecs.charmap_build(
    "".join(map(chr, range(128))) + _MARKED + "\ufffe" * (128 - len(_MARKED))
)
_LOWER = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")
_BYTE_FOLD = _LOWER[:128] + bytes(map(ord, _FOLD.values())) + b"?" * (128 - len(_FOLD))
_NOT_INVISIBLE = bytes(b for b in range(256) if not 128 + len(_FOLD) <= b < 128 + len(_MARKED))
_NOT_QUIET = bytes(
    b for b in range(256) if not 128 + len(_MARKED) - len(_QUIET) <= b < 128 + len(_MARKED)
)
_LOOKALIKE_BYTES = bytes(128 + i for i, ch in enumerate(_FOLD) if ch in LOOKALIKES)
_NOT_LOOKALIKE = bytes(b for b in range(256) if b not in _LOOKALIKE_BYTES)
# Letters as "L", look-alikes as "C", the rest as a space: a disguised word
# shows as "LC" or "CL" somewhere.
_SCRIPT_CLASS = bytes(
    ord("L") if chr(b).isascii() and chr(b).isalpha() else ord("C") if b in _LOOKALIKE_BYTES else 32
    for b in range(256)
)


def lower(text: str) -> str:
    """``text.lower()``, one character per character (İ alone lower-cases to two)."""
    if "\u0130" in text:
        text = text.replace("\u0130", "I")
    return text.lower()


def marked_bytes(text: str, utf8: bytes) -> bytes:
    """One byte per character of ``text`` (``utf8`` is ``text`` in UTF-8):
    ASCII as is, look-alikes and invisible characters as bytes >= 128, any
    other character as "?"."""
    if any(lead in utf8 for lead in _RARE_UTF8):
        text = text.translate(_RARE)
    encoded: bytes = codecs.charmap_encode(text, "replace", _ENCODE_MAP)[0]
    return encoded


def has_invisible(raw: bytes, utf8: bytes) -> bool:
    """Whether the text of ``raw`` (:func:`marked_bytes`) holds invisible
    characters; ``utf8`` is the text in UTF-8."""
    # Tag characters, U+E0000..U+E007F, are F3 A0 80/81 xx in UTF-8.
    return bool(raw.translate(None, _NOT_INVISIBLE)) or b"\xf3\xa0" in utf8


_VISIBLE = rf"[^\x00-\x7f{_HIDDEN}{_QUIET}{''.join(_FOLD)}]"
_JOINERS = "\u200c\u200d"
# Emoji joiners, script joiners (Persian, Indic) and a BOM where a pasted file
# starts are legitimate; every other hidden character is suspicious. Each
# match is one character from a small class, so the regex engine skips the
# rest of the text by that class alone, then looks at the neighbours.
_WHEN_SUSPICIOUS = (
    rf"(?:(?<=[^{_JOINERS}\ufeff])|(?<=[^\n]\ufeff)"
    rf"|(?<=[{_JOINERS}])(?<!{_VISIBLE}[{_JOINERS}])|(?<=[{_JOINERS}])(?!{_VISIBLE}))"
)
_SUSPICIOUS = re.compile(f"[{_HIDDEN}]{_WHEN_SUSPICIOUS}")
_QUIET_RUN = re.compile(f"[{_QUIET}]+")
# So are the tag characters of subdivision flags (a black flag, tag letters,
# a cancel tag), which take a loop over matches in Python.
_FLAG = "\U0001f3f4"
_INVISIBLE = re.compile(
    rf"[{_FLAG}{_HIDDEN}](?:(?<={_FLAG})[\U000e0030-\U000e0039\U000e0061-\U000e007a]{{1,7}}"
    rf"\U000e007f(?P<flag>)|(?<=[{_HIDDEN}]){_WHEN_SUSPICIOUS}(?P<hidden>))"
)


def strip_invisible(text: str, raw: bytes) -> tuple[str, int]:
    """``text`` without invisible characters, and how many were suspicious
    (``raw`` is :func:`marked_bytes` of ``text``).

    Legitimate joiners, flags and a leading BOM are kept and not counted;
    quiet characters are removed but not counted.
    """
    if _FLAG in text:
        parts: list[str] = []
        last = hidden = 0
        for match in _INVISIBLE.finditer(text):
            if match.lastgroup == "hidden":
                parts.append(text[last : match.start()])
                last = match.end()
                hidden += 1
        parts.append(text[last:])
        kept = "".join(parts)
    else:
        kept = _SUSPICIOUS.sub("", text)
        hidden = len(text) - len(kept)
    quiet = raw.translate(None, _NOT_QUIET)
    return (_QUIET_RUN.sub("", kept) if quiet else kept), hidden


def view(raw: bytes) -> str:
    """The text patterns run on (``raw`` is :func:`marked_bytes` of a text
    without invisible characters): lower-case ASCII, look-alikes read as Latin.

    Other non-ASCII characters are "?", which the patterns treat as
    punctuation, so a word in another script separates words.
    """
    return raw.translate(_BYTE_FOLD).decode("ascii")


_LOOKALIKE_CLASS = "".join(LOOKALIKES)
_OTHER_CYRILLIC_GREEK = re.compile(f"(?![{_LOOKALIKE_CLASS}])[\u0370-\u03ff\u0400-\u052f]")


def _word(text: str, i: int) -> tuple[int, int]:
    """The span of the word around ``i`` (at most 64 letters each way)."""
    start = end = i
    while start > 0 and i - start < 64 and text[start - 1].isalpha():
        start -= 1
    while end < len(text) and end - i < 64 and text[end].isalpha():
        end += 1
    return start, end


def mixed_words(text: str, raw: bytes, every: bool) -> list[tuple[int, int]]:
    """Spans of Latin words spelled partly with Cyrillic or Greek look-alikes
    (``raw`` is :func:`marked_bytes` of ``text``); only the first unless ``every``.

    Such a word has a Latin letter next to a look-alike, which two byte
    searches find. A word that also holds other Cyrillic or Greek letters is a
    real mixed word (Russian inflecting a brand name), not a disguise.
    """
    if not raw.translate(None, _NOT_LOOKALIKE):
        return []
    classes = raw.translate(_SCRIPT_CLASS)
    words: dict[int, int] = {}  # start -> end, or -1 for a real mixed word
    for pair in (b"LC", b"CL"):
        i = classes.find(pair)
        while i >= 0:
            start, end = _word(text, i)
            if start not in words:
                words[start] = -1 if _OTHER_CYRILLIC_GREEK.search(text, start, end) else end
                if words[start] > 0 and not every:
                    return [(start, end)]
            i = classes.find(pair, i + 1)
    return sorted((start, end) for start, end in words.items() if end > 0)


# Mixed words are rewritten in Latin, keeping their case, when redacting.
UNDISGUISE = AS_LATIN
