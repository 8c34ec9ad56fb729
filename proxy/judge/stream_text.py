"""One choice's text in a judged stream: what has arrived, been judged and been sent.

Positions are character offsets into ``text``. Each stream filter has judged
the text up to its ``judged_end``; text up to ``released`` has gone to the
client. ``pieces`` remembers where each arrived piece ends and when it
arrived, to measure how long each waited (the holdback).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from proxy.judge.chain import BoundFilter
from proxy.measure.timeline import Timeline


@dataclass(slots=True)
class FilterState:
    bound: BoundFilter
    judged_end: int = 0  # the text up to here has been judged by this filter
    hold: int = 0  # of that, the tail held back until the filter judges what follows
    events_since: int = 0
    cleared: int = 0  # pieces whose holdback this filter has ended


class ChoiceText:
    """One choice's text, what is released of it, and where each piece arrived."""

    __slots__ = ("closed", "filtered", "filters", "pieces", "released", "text")

    def __init__(self, filters: tuple[BoundFilter, ...]) -> None:
        self.closed = False  # its end came: everything judged and released
        self.filtered = False  # an at_stream_end filter blocked it, after release
        self.text = ""
        self.released = 0
        self.pieces: list[tuple[int, int]] = []  # (end position, arrival mark)
        self.filters = [FilterState(b) for b in filters]

    def append(self, piece: str, arrived_ns: int) -> None:
        self.text += piece
        self.pieces.append((len(self.text), arrived_ns))

    def redact(self, by: FilterState, start: int, window: str, new: str) -> None:
        """Put a filter's redaction of ``window`` (which began at ``start``) into the text."""
        prefix = _common_prefix(window, new)
        changed_at = start + prefix
        old_len = len(self.text)
        if changed_at >= self.released:
            self.text = self.text[:changed_at] + new[prefix:]
        else:
            # Text already sent cannot be recalled: what changed in it stays as
            # sent, and a replacement reaching past it goes after it.
            self.text = self.text[: self.released] + _unsent(window, new, self.released - start)
            changed_at = self.released
        shift = len(self.text) - old_len
        self.pieces = [(e + shift if e > changed_at else e, t) for e, t in self.pieces]
        for fs in self.filters:
            if fs is by:
                fs.judged_end = len(self.text)
            elif fs.judged_end > changed_at:
                fs.judged_end = changed_at  # the new text has not been judged by it

    def release(self, final: bool, timeline: Timeline) -> str:
        """Hand out the text every enforcing filter has cleared."""
        limit = len(self.text)
        for fs in self.filters:
            if not fs.bound.enforcing:
                continue
            # At the end of a choice nothing follows, so nothing needs holding back.
            cleared_to = fs.judged_end if final else fs.judged_end - fs.hold
            while fs.cleared < len(self.pieces) and self.pieces[fs.cleared][0] <= cleared_to:
                timeline.held(fs.bound.name, self.pieces[fs.cleared][1])
                fs.cleared += 1
            limit = min(limit, cleared_to)
        if limit <= self.released:
            return ""
        out = self.text[self.released : limit]
        self.released = limit
        return out

    def compact(self, keep: int) -> None:
        """Drop the start of the text that no filter and no accounting needs any more."""
        enforcing = [fs for fs in self.filters if fs.bound.enforcing]
        cut = min(
            self.released,
            len(self.text) - keep,
            min((fs.judged_end for fs in self.filters), default=self.released),
        )
        if cut <= 0:
            return
        done = min((fs.cleared for fs in enforcing), default=len(self.pieces))
        self.text = self.text[cut:]
        self.released -= cut
        self.pieces = [(end - cut, at) for end, at in self.pieces[done:]]
        for fs in self.filters:
            fs.judged_end -= cut
            if fs.bound.enforcing:
                fs.cleared -= done


# Runs the two texts share that are shorter than this do not align them: a
# placeholder's letters ("[EMAIL]") are not the redacted text's own.
_ANCHOR = 3


def _unsent(window: str, new: str, sent: int) -> str:
    """What follows the first ``sent`` characters of ``window`` once it reads ``new``.

    The texts are aligned on the runs they share; each change between two
    runs wholly in the sent text is dropped (the client has it as it was),
    one that begins there and ends after it is given whole, after it; the
    rest is ``new``'s. (Not ``new`` from the first change on: that repeats
    the sent text between the first change and the end of what was sent.)
    """
    out: list[str] = []
    i = j = 0  # the ends of the last run both texts share
    matcher = difflib.SequenceMatcher(None, window, new, autojunk=False)
    for a, b, size in matcher.get_matching_blocks():
        if size < _ANCHOR and (a or b) and a + size < len(window):
            continue  # too short to say where the texts correspond (not their start or end)
        # A change (window[i:a] reads new[j:b]) given unless it was all sent.
        if (a > i or b > j) and (a > sent or (a == i and i >= sent)):
            out.append(new[j:b])
        out.append(window[max(a, sent) : a + size])  # a shared run, past what was sent
        i, j = a + size, b + size
    return "".join(out)


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
