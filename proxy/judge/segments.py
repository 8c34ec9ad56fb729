"""A prompt of several segments (chat messages) judged as one text, and a redaction put back.

The segments are joined by :data:`SEGMENT_SEPARATOR`, so that a phrase
split across two messages is still one phrase to a filter; a redaction's
edits on the joined text are placed back in the segment each came from.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from filters.base import Edit, Verdict, apply_edits

SEGMENT_SEPARATOR = "\n\n"


def place_edits(joined: str, segments: list[str], verdict: Verdict) -> list[str]:
    """Each segment with the part of every edit that lies in it replaced.

    ``joined`` is the segments joined by SEGMENT_SEPARATOR, the text the
    edits were made on. An edit over two segments replaces its part in each
    (a separator between them is not the client's text); one that lies only
    on a separator has nothing to replace.
    """
    edits = verdict.edits
    last = 0
    for edit in edits:
        if not last <= edit.start <= edit.end <= len(joined):
            raise ValueError("a redaction's edits are out of order or out of the text")
        last = edit.end
    if apply_edits(joined, edits) != verdict.text:
        raise ValueError("a redaction's edits do not give its text")
    starts: list[int] = []
    ends: list[int] = []
    at = 0
    for segment in segments:
        starts.append(at)
        ends.append(at + len(segment))
        at += len(segment) + len(SEGMENT_SEPARATOR)
    local: list[list[Edit]] = [[] for _ in segments]
    for edit in edits:
        if edit.start == edit.end:  # an insertion goes into the segment it is in, if any
            i = bisect_left(ends, edit.start)
            if i < len(segments) and starts[i] <= edit.start:
                local[i].append(Edit(edit.start - starts[i], edit.end - starts[i], edit.text))
            continue
        i = bisect_right(ends, edit.start)  # the first segment that ends after it starts
        while i < len(segments) and starts[i] < edit.end:
            start, end = max(edit.start, starts[i]), min(edit.end, ends[i])
            if start < end:
                local[i].append(Edit(start - starts[i], end - starts[i], edit.text))
            i += 1
    return [
        apply_edits(segment, mine) if mine else segment
        for segment, mine in zip(segments, local, strict=True)
    ]
