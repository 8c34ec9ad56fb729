"""The way back from a changed text to the one it was made from.

A step that rewrites a text (NFKC, removing characters, collapsing runs)
gives its result and a :class:`TextMap`: for any span of the result, the
span of the source it came from. Steps that change characters one for one
(a fold, a newline made a space) need no map.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass

# (start, end, replacement) in a source, in order and not overlapping.
Change = tuple[int, int, str]


@dataclass(frozen=True, slots=True)
class TextMap:
    """Result positions back to source positions.

    The result is cut into pieces; piece ``i`` starts at result position
    ``starts[i]`` and came from ``source[sources[i]:ends[i]]``, one character
    for one when ``exact[i]``, or as a whole otherwise. Source characters in
    no piece were removed.
    """

    starts: list[int]
    sources: list[int]
    ends: list[int]
    exact: list[bool]
    length: int  # of the result
    source_length: int

    def point(self, at: int) -> int:
        """The source position of result position ``at`` (an insertion point)."""
        if at >= self.length:
            return self.source_length
        i = bisect_right(self.starts, at) - 1
        return self.sources[i] + (at - self.starts[i] if self.exact[i] else 0)

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The source span that ``result[start:end]`` came from."""
        if end <= start:
            at = self.point(start)
            return at, at
        i = bisect_right(self.starts, start) - 1
        j = bisect_right(self.starts, end - 1) - 1
        first = self.sources[i] + (start - self.starts[i] if self.exact[i] else 0)
        last = self.sources[j] + (end - self.starts[j]) if self.exact[j] else self.ends[j]
        return first, last


def apply_changes(source: str, changes: Iterable[Change]) -> tuple[str, TextMap]:
    """``source`` with each change applied, and the map back."""
    parts: list[str] = []
    starts: list[int] = []
    sources: list[int] = []
    ends: list[int] = []
    exact: list[bool] = []
    at = 0  # result length so far

    def piece(start: int, end: int, one_for_one: bool) -> None:
        if one_for_one and exact and exact[-1] and ends[-1] == start:
            ends[-1] = end  # contiguous on both sides: one piece
        else:
            starts.append(at)
            sources.append(start)
            ends.append(end)
            exact.append(one_for_one)

    last = 0
    for start, end, new in changes:
        if start > last:
            piece(last, start, True)
            parts.append(source[last:start])
            at += start - last
        if new:
            piece(start, end, len(new) == end - start == 1)
            parts.append(new)
            at += len(new)
        last = end
    if last < len(source):
        piece(last, len(source), True)
        parts.append(source[last:])
        at += len(source) - last
    return "".join(parts), TextMap(starts, sources, ends, exact, at, len(source))
