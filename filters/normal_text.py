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
common case) costs one ``str.translate`` and two substring searches; other
text a few regex scans, and a pass per character only over the parts NFKC
changes.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass
from functools import cache

from filters.lookalikes import AS_LATIN, LATIN_VARIANTS

# Format characters (Cf) as of Unicode 14, the version of Python 3.11's
# unicodedata; fixed here, because deriving them takes a scan of every code point.
_FORMAT = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)
_CONTROL = "\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f"  # Cc, less what str.isspace() counts
_OTHER_INVISIBLE = "\u034f\ufe00-\ufe0f\U000e0100-\U000e01ef\u115f\u1160\u3164\uffa0"
_INVISIBLE = _FORMAT + _CONTROL + _OTHER_INVISIBLE

# A run that changes: one that starts with an invisible character, or with
# whitespace followed by more whitespace or an invisible character. A lone
# whitespace character becomes a space in place (one character for one).
_RUN = re.compile(rf"(?:[{_INVISIBLE}]|\s(?=[\s{_INVISIBLE}]))[\s{_INVISIBLE}]*")
_WHITESPACE = re.compile(r"\s")
_LONE_WHITESPACE = re.compile(r"[^\S ]")

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

_CHUNK = 256  # NFKC is checked per chunk of about this many characters


@dataclass(frozen=True, slots=True)
class _Map:
    """View positions back to source positions, for one step that changes lengths.

    The view is cut into pieces; piece ``i`` starts at view position
    ``starts[i]`` and came from ``source[sources[i]:ends[i]]``, one character
    for one when ``exact[i]``, or as a whole otherwise.
    """

    starts: list[int]
    sources: list[int]
    ends: list[int]
    exact: list[bool]
    view_length: int
    source_length: int

    def point(self, at: int) -> int:
        """The source position of view position ``at`` (an insertion point)."""
        if at >= self.view_length:
            return self.source_length
        i = bisect_right(self.starts, at) - 1
        return self.sources[i] + (at - self.starts[i] if self.exact[i] else 0)

    def span(self, start: int, end: int) -> tuple[int, int]:
        if end <= start:
            at = self.point(start)
            return at, at
        i = bisect_right(self.starts, start) - 1
        j = bisect_right(self.starts, end - 1) - 1
        first = self.sources[i] + (start - self.starts[i] if self.exact[i] else 0)
        last = self.sources[j] + (end - self.starts[j]) if self.exact[j] else self.ends[j]
        return first, last


def _apply(source: str, edits: list[tuple[int, int, str]]) -> tuple[str, _Map]:
    """``source`` with each (start, end, replacement) applied, and the map back."""
    parts: list[str] = []
    starts: list[int] = []
    sources: list[int] = []
    ends: list[int] = []
    exact: list[bool] = []
    at = 0  # view length so far

    def piece(length: int, start: int, end: int, one_for_one: bool) -> None:
        if one_for_one and exact and exact[-1] and ends[-1] == start:
            ends[-1] = end  # contiguous on both sides: one piece
        else:
            starts.append(at)
            sources.append(start)
            ends.append(end)
            exact.append(one_for_one)

    last = 0
    for start, end, new in edits:
        if start > last:
            piece(start - last, last, start, True)
            parts.append(source[last:start])
            at += start - last
        if new:
            piece(len(new), start, end, len(new) == end - start == 1)
            parts.append(new)
            at += len(new)
        last = end
    if last < len(source):
        piece(len(source) - last, last, len(source), True)
        parts.append(source[last:])
        at += len(source) - last
    return "".join(parts), _Map(starts, sources, ends, exact, at, len(source))


def _whole(view: str, source: str) -> _Map:
    """The coarsest map: every view character stands for all of ``source``."""
    return _Map([0], [0], [len(source)], [False], len(view), len(source))


@cache
def _nfkc_changes() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """Characters NFKC may change: those it replaces, and combining characters
    (marks, and the second halves of precomposed letters) that it may join to
    the character before. Built once, on first need (a scan of the planes
    that have decompositions, ~0.2 s)."""
    changes: list[int] = []
    joins: set[int] = {*range(0x1161, 0x1176), *range(0x11A8, 0x11C3)}  # Hangul vowels, finals
    for cp in range(0x30000):
        ch = chr(cp)
        if unicodedata.combining(ch):
            joins.add(cp)
        elif not unicodedata.is_normalized("NFKC", ch):
            changes.append(cp)
        decomposition = unicodedata.decomposition(ch).split()
        if len(decomposition) == 2 and not decomposition[0].startswith("<"):
            joins.add(int(decomposition[1], 16))
    joining = _char_class(sorted(joins))
    changed = re.compile(f"[{_char_class(sorted({*changes, *joins}))}][{joining}]*")
    return changed, re.compile(f"[{joining}]")


def _char_class(points: list[int]) -> str:
    ranges: list[str] = []
    i = 0
    while i < len(points):
        j = i
        while j + 1 < len(points) and points[j + 1] == points[j] + 1:
            j += 1
        first, last = re.escape(chr(points[i])), re.escape(chr(points[j]))
        ranges.append(first if i == j else f"{first}-{last}")
        i = j + 1
    return "".join(ranges)


def warm_up() -> None:
    """Build the NFKC tables now (filters call it when they are configured,
    so that no request waits for it)."""
    _nfkc_changes()


def _nfkc(source: str) -> tuple[str, _Map]:
    """NFKC of ``source``, with the map back, changed part by changed part."""
    changes, joining = _nfkc_changes()
    edits: list[tuple[int, int, str]] = []
    chunks: list[tuple[int, int]] = []
    pos = 0
    while pos < len(source):
        # NFKC never joins a space to its neighbours, so chunks end after one.
        cut = source.find(" ", pos + _CHUNK)
        cut = len(source) if cut < 0 else cut + 1
        if not unicodedata.is_normalized("NFKC", source[pos:cut]):
            chunks.append((pos, cut))
            for match in changes.finditer(source, pos, cut):
                start, end = match.span()
                if start > pos and joining.match(source, start):
                    start -= 1  # it joins the character before it
                if edits and edits[-1][1] > start:
                    start = edits.pop()[0]
                piece = source[start:end]
                new = unicodedata.normalize("NFKC", piece)
                if new != piece:
                    edits.append((start, end, new))
        pos = cut
    view, back = _apply(source, edits)
    expected = unicodedata.normalize("NFKC", source)
    if view == expected:
        return view, back
    # A join the tables did not foresee: fall back to whole chunks, then the whole text.
    whole_chunks = [(s, e, unicodedata.normalize("NFKC", source[s:e])) for s, e in chunks]
    view, back = _apply(source, whole_chunks)
    return (view, back) if view == expected else (expected, _whole(expected, source))


def _spaces(source: str, invisible_as_space: bool) -> tuple[str, _Map | None, bool]:
    """Invisible characters removed and whitespace runs made one space; the map
    back, and whether an invisible character was removed."""
    edits: list[tuple[int, int, str]] = []
    removed = False
    for match in _RUN.finditer(source):
        run = match.group()
        spaced = invisible_as_space or _WHITESPACE.search(run) is not None
        removed = removed or not run.isspace()
        edits.append((match.start(), match.end(), " " if spaced else ""))
    if not edits:
        return source, None, False
    view, back = _apply(source, edits)
    return view, back, removed


class NormalText:
    """One text's view (``text``) and the way back to the original (``source``)."""

    __slots__ = ("_maps", "removed", "source", "text")

    def __init__(self, source: str, text: str, maps: tuple[_Map, ...], removed: bool) -> None:
        self.source = source
        self.text = text
        self._maps = maps
        self.removed = removed  # invisible characters were taken out

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The span of ``source`` that ``text[start:end]`` came from."""
        for back in reversed(self._maps):
            start, end = back.span(start, end)
        return start, end


def normal_text(text: str, *, fold: bool = False, invisible_as_space: bool = False) -> NormalText:
    """The view of ``text`` (see the module docstring); ``fold`` reads
    look-alikes as Latin; ``invisible_as_space`` reads invisible characters as
    spaces instead of removing them (the second of :func:`views`)."""
    if text.isascii():
        view = text.encode("ascii").translate(ASCII_VIEW).decode("ascii")
        if "\x00" not in view and "  " not in view:
            return NormalText(text, view, (), False)
        view, spaces, removed = _spaces(view, invisible_as_space)
        return NormalText(text, view, (spaces,) if spaces is not None else (), removed)
    # Invisible characters go first, so that NFKC joins a letter and a mark
    # they stood between; NFKC may make whitespace (NBSP, U+00AF), so runs of
    # it are looked for again after it.
    maps: list[_Map] = []
    view, spaces, removed = _spaces(text, invisible_as_space)
    if spaces is not None:
        maps.append(spaces)
    if not unicodedata.is_normalized("NFKC", view):
        view, back = _nfkc(view)
        maps.append(back)
        view, spaces, _ = _spaces(view, invisible_as_space)
        if spaces is not None:
            maps.append(spaces)
    view = _LONE_WHITESPACE.sub(" ", view)  # one character for one: no map
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
