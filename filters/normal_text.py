"""Text as the model reads it: the view pattern filters match on, and the way
back from it to the characters the client sent.

The view of a text is the text after these steps:

1. Invisible characters removed: every format character (Unicode category
   Cf: zero-width space, joiners, word joiner, BOM, soft hyphen, direction
   controls, tag characters), control characters other than whitespace,
   variation selectors, the combining grapheme joiner and Hangul fillers.
2. Unicode NFKC: fullwidth and mathematical letters and digits, ligatures and
   compatibility spaces read as the plain characters they stand for
   (a fullwidth at sign is ``@``, fullwidth ``ignore`` is ``ignore``).
3. Every run of whitespace (spaces, tabs, line breaks, NBSP and the other
   Unicode spaces, with any invisible characters among them) is one space.
4. With ``fold`` (the denylist), Cyrillic and Greek look-alikes of Latin
   letters (:mod:`filters.lookalikes`) are read as those letters.

A filter finds spans in ``view.text``; :meth:`NormalText.span` gives the span
of the original text they came from, so that a redaction replaces exactly
the characters the client sent for it, and nothing else. A view character
that stands for several original ones (a run of whitespace, a character and
its combining marks) stands for all of them.

Removing an invisible character glues its neighbours together, which is
right inside a word (``ig<ZWSP>nore``) but wrong between two (a phrase
followed by ``<ZWSP>more``). So a text that had invisible characters
removed has a second view that reads them as spaces, and a filter matches
both (:func:`views`).

Cost: ASCII text with no control character and no run of whitespace (the
common case) costs a bytes translation and two substring searches, ~3 µs
per KB. Other text costs a few scans in C (a regex character class, a
substring search, an NFKC check: ~0.15 ms per 16 KB), and Python work only
where something changes: per invisible character or whitespace run, and
per character NFKC makes longer or shorter (:mod:`filters.nfkc_map`).
Reading look-alikes as Latin costs ~1 ms per 16 KB of text that has any
(a dict lookup per character).
"""

from __future__ import annotations

import re
import unicodedata

from filters.lookalikes import AS_LATIN, LATIN_VARIANTS
from filters.nfkc_map import nfkc, warm_up
from filters.text_map import Change, TextMap, apply_changes

__all__ = ["NormalText", "as_written", "normal_text", "union", "views", "warm_up"]

# Format characters (Cf) as of Unicode 14, the version of Python 3.11's
# unicodedata; fixed here, because deriving them takes a scan of every code
# point. Those beyond the BMP are apart: a class with astral ranges is
# several times slower on every character, so it is used only on text that
# has such characters.
_FORMAT = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
)
_FORMAT_ASTRAL = (
    "\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f"
)
_CONTROL = "\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f"  # Cc, less what str.isspace() counts
# Variation selectors, the combining grapheme joiner, Hangul fillers.
_OTHER = "\u034f\ufe00-\ufe0f\u115f\u1160\u3164\uffa0"
_OTHER_ASTRAL = "\U000e0100-\U000e01ef"
_INVISIBLE = _FORMAT + _CONTROL + _OTHER
_INVISIBLE_ASTRAL = _INVISIBLE + _FORMAT_ASTRAL + _OTHER_ASTRAL
# Whitespace other than a space (str.isspace()), less the common three,
# which str.replace turns into spaces first.
_RARE_SPACE = "\x0b\x0c\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def _run(invisible: str) -> re.Pattern[str]:
    # A run that changes: it starts with an invisible character or whitespace
    # other than a space, or is two or more characters long. The class comes
    # first, so the engine skips to candidates by the class alone.
    return re.compile(rf"[\s{invisible}](?:(?<! )|(?=[\s{invisible}]))[\s{invisible}]*")


_RUN = _run(_INVISIBLE)
_RUN_ASTRAL = _run(_INVISIBLE_ASTRAL)
_SPECIAL = re.compile(f"[{_INVISIBLE}{_RARE_SPACE}]")
_SPECIAL_ASTRAL = re.compile(f"[{_INVISIBLE_ASTRAL}{_RARE_SPACE}]")
_SPACES = re.compile("  +")
_WHITESPACE = re.compile(r"\s")

# ASCII bytes: whitespace a space, other control characters NUL (invisible).
# A bytes translation: str.translate costs several µs per call to set up.
_ASCII = bytearray(range(128))
_ASCII[0x00:0x09] = bytes(0x09)
_ASCII[0x0E:0x1C] = bytes(0x1C - 0x0E)
_ASCII[0x7F] = 0
for _ws in b"\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f":
    _ASCII[_ws] = 0x20
ASCII_VIEW = bytes(_ASCII) + bytes(range(128, 256))
ASCII_VIEW_LOWER = ASCII_VIEW.translate(
    bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")
)

_FOLD = {**AS_LATIN, **{ord(k): v for k, v in LATIN_VARIANTS.items()}}
_FOLDABLE = re.compile(f"[{''.join(map(chr, _FOLD))}]")


class NormalText:
    """One text's view (``text``) and the way back to the original (``source``)."""

    __slots__ = ("_maps", "removed", "source", "text")

    def __init__(self, source: str, text: str, maps: tuple[TextMap, ...], removed: bool) -> None:
        self.source = source
        self.text = text
        self._maps = maps
        self.removed = removed  # invisible characters were taken out

    @property
    def one_for_one(self) -> bool:
        """Whether each character of ``text`` came from the one at its position
        in ``source`` (so :meth:`span` returns what it is given)."""
        return not self._maps

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The span of ``source`` that ``text[start:end]`` came from."""
        for back in reversed(self._maps):
            start, end = back.span(start, end)
        return start, end


def _runs(source: str, run: re.Pattern[str], invisible_as_space: bool) -> tuple[list[Change], bool]:
    """Each invisible character removed (or a space) and each whitespace run one
    space; and whether an invisible character was removed."""
    changes: list[Change] = []
    removed = False
    for match in run.finditer(source):
        text = match.group()
        spaced = invisible_as_space or _WHITESPACE.search(text) is not None
        removed = removed or not text.isspace()
        changes.append((match.start(), match.end(), " " if spaced else ""))
    return changes, removed


def _space_runs(source: str) -> list[Change]:
    return [(m.start(), m.end(), " ") for m in _SPACES.finditer(source)]


def normal_text(text: str, *, fold: bool = False, invisible_as_space: bool = False) -> NormalText:
    """The view of ``text`` (see the module docstring); ``fold`` reads
    look-alikes as Latin; ``invisible_as_space`` reads invisible characters as
    spaces instead of removing them (the second of :func:`views`)."""
    if text.isascii():
        view = text.encode("ascii").translate(ASCII_VIEW).decode("ascii")
        if "\x00" in view:
            changes, removed = _runs(view, _RUN, invisible_as_space)
        elif "  " in view:
            changes, removed = _space_runs(view), False
        else:
            return NormalText(text, view, (), False)
        view, back = apply_changes(view, changes)
        return NormalText(text, view, (back,), removed)

    astral = len(text.encode("utf-16-le", "surrogatepass")) != 2 * len(text)
    maps: list[TextMap] = []
    view = text
    for common in "\n\t\r":
        if common in view:
            view = view.replace(common, " ")  # one for one
    # Invisible characters go first, so that NFKC joins a letter and a mark
    # they stood between.
    removed = False
    if (_SPECIAL_ASTRAL if astral else _SPECIAL).search(view) is not None:
        changes, removed = _runs(view, _RUN_ASTRAL if astral else _RUN, invisible_as_space)
    else:
        changes = _space_runs(view) if "  " in view else []
    if changes:
        view, back = apply_changes(view, changes)
        maps.append(back)
    if not unicodedata.is_normalized("NFKC", view):
        view, back = nfkc(view, astral)
        maps.append(back)
        # NFKC spells spacing accents as a space and a mark (U+00A8 is
        # " \u0308"), which may stand next to a space.
        if "  " in view:
            view, back = apply_changes(view, _space_runs(view))
            maps.append(back)
    if fold and _FOLDABLE.search(view) is not None:
        view = view.translate(_FOLD)
    return NormalText(text, view, tuple(maps), removed)


def views(text: str, *, fold: bool = False) -> tuple[NormalText, ...]:
    """The views a filter matches ``text`` in: its view, and when invisible
    characters were removed from it, a second view that reads them as
    spaces, so that one between two words still separates them."""
    view = normal_text(text, fold=fold)
    if not view.removed:
        return (view,)
    return view, normal_text(text, fold=fold, invisible_as_space=True)


def as_written(text: str) -> NormalText:
    """``text`` as its own view: for a filter configured with ``normalize: false``."""
    return NormalText(text, text, (), False)


def union(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Spans (found in several views) sorted, with overlapping ones made one."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and (start < merged[-1][1] or (start, end) == merged[-1]):
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged
