"""Unicode NFKC with the way back: which characters of a text each part of its
NFKC came from.

Most of what NFKC changes it changes one character for one (fullwidth and
mathematical letters, most compatibility characters): positions stay where
they were and need no map. The map is made only for the characters NFKC
makes longer or shorter (a ligature, a fraction, a letter and its combining
marks composed into one), found by a regex over the chunks of the text that
are not in NFKC already. Each chunk's lengths are checked against its NFKC;
a join the tables did not foresee makes the chunk one piece, which only
makes a redaction in it cover more.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache

from filters.text_map import Change, TextMap, apply_changes

_CHUNK = 256  # checked for NFKC a chunk at a time, so that text already in it is skipped
_ASTRAL = 0x10000


@dataclass(frozen=True, slots=True)
class _Tables:
    changing: re.Pattern[str]  # a character NFKC may make longer or shorter, and its joiners
    joining: re.Pattern[str]  # a character NFKC may join to the one before it


@cache
def _tables() -> tuple[_Tables, _Tables]:
    """The tables for text without and with characters beyond the BMP (a regex
    class with astral ranges is several times slower on every character).
    Built once, on first need: a scan of the planes that have
    decompositions, ~0.2 s."""
    joins: set[int] = {*range(0x1161, 0x1176), *range(0x11A8, 0x11C3)}  # Hangul vowels, finals
    lengthy: set[int] = set()
    one_for_one: dict[int, int] = {}
    for cp in range(0x30000):
        ch = chr(cp)
        if unicodedata.combining(ch):
            joins.add(cp)
        decomposition = unicodedata.decomposition(ch).split()
        if len(decomposition) == 2 and not decomposition[0].startswith("<"):
            joins.add(int(decomposition[1], 16))  # the second half of a precomposed letter
        new = unicodedata.normalize("NFKC", ch)
        if new != ch:
            if len(new) == 1:
                one_for_one[cp] = ord(new)
            else:
                lengthy.add(cp)
    # What NFKC makes into a joining character joins too (a halfwidth voiced
    # mark, a compatibility jamo).
    joins |= {cp for cp, new in one_for_one.items() if new in joins}
    joins |= {cp for cp in lengthy if ord(unicodedata.normalize("NFKC", chr(cp))[0]) in joins}
    tables = []
    for limit in (_ASTRAL, 0x110000):
        joining = _char_class(sorted(cp for cp in joins if cp < limit))
        changing = _char_class(sorted(cp for cp in lengthy | joins if cp < limit))
        tables.append(_Tables(re.compile(f"[{changing}][{joining}]*"), re.compile(f"[{joining}]")))
    return tables[0], tables[1]


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
    """Build the tables now (filters call it when configured, so that no request waits)."""
    _tables()


def nfkc(source: str, astral: bool) -> tuple[str, TextMap]:
    """NFKC of ``source`` and the map back; ``astral``: it has characters beyond the BMP."""
    tables = _tables()[1 if astral else 0]
    parts: list[str] = []
    changes: list[Change] = []
    pos = 0
    while pos < len(source):
        cut = min(len(source), pos + _CHUNK)
        while cut < len(source) and tables.joining.match(source, cut):
            cut += 1  # never between a character and what NFKC joins to it
        chunk = source[pos:cut]
        if unicodedata.is_normalized("NFKC", chunk):
            parts.append(chunk)
            pos = cut
            continue
        normal = unicodedata.normalize("NFKC", chunk)
        parts.append(normal)
        mine: list[Change] = []
        for match in tables.changing.finditer(source, pos, cut):
            start, end = match.span()
            if start > pos and tables.joining.match(source, start):
                start -= 1  # it joins the character before it
            if mine and mine[-1][1] > start:
                start = mine.pop()[0]
            piece = source[start:end]
            new = unicodedata.normalize("NFKC", piece)
            if len(new) != len(piece) or (len(piece) > 1 and new != piece):
                mine.append((start, end, new))
        # The rest of the chunk changes one character for one, so the lengths
        # agree; when they do not, the tables missed a join: the chunk is one piece.
        grown = sum(len(new) - (end - start) for start, end, new in mine)
        changes += mine if len(chunk) + grown == len(normal) else [(pos, cut, normal)]
        pos = cut
    _, back = apply_changes(source, changes)
    return "".join(parts), back
