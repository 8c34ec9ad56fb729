"""Sequence numbers as the client receives them, with events inserted and dropped.

A Responses stream numbers its events (``sequence_number``), and a judged
stream is not the upstream's: text released at a part's end is a new event
before that end, a delta whose text is held back is dropped. Each upstream
event keeps its own number shifted by what was inserted and dropped before
it, so while nothing was, every event goes out as the upstream's own bytes.
"""

from __future__ import annotations


class Numbering:
    """The numbers of one stream's events: strictly increasing as sent."""

    __slots__ = ("current", "high", "offset")

    def __init__(self) -> None:
        self.offset = 0  # events inserted less events dropped so far
        self.high = -1  # the highest number given out
        self.current: int | None = None  # the number of the event being judged

    def arrive(self, upstream: int | None) -> bool:
        """An upstream event numbered ``upstream``; True when its number changes."""
        if upstream is None:
            self.current = None
            return False
        number = upstream + self.offset
        if number <= self.high:  # an upstream that does not count up
            self.offset += self.high + 1 - number
            number = self.high + 1
        self.current = self.high = number
        return number != upstream

    def before_current(self) -> int:
        """The number of an event inserted just before the one being judged."""
        if self.current is None:
            return self.after()
        number = self.current
        self.current += 1
        self.offset += 1
        self.high = max(self.high, self.current)
        return number

    def after(self) -> int:
        """The number of an event after every event so far."""
        self.high += 1
        return self.high

    def dropped(self) -> None:
        """The event being judged is not sent."""
        if self.current is not None:
            self.offset -= 1
            self.high = self.current - 1
            self.current = None
