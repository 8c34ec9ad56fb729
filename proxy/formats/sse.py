"""Incremental ``text/event-stream`` parsing for the streaming path.

The upstream body arrives in arbitrary byte chunks; :class:`SseParser` turns
them into :class:`SseEvent` values as soon as each event's blank line arrives,
following the WHATWG "event stream interpretation" rules for lines and fields.

Every byte fed comes back in exactly one event's ``raw``, in order, so
forwarding ``raw`` reproduces the upstream byte for byte. The only bytes not
returned are those :meth:`SseParser.flush` finds at the end of the stream
without any field in them (trailing blank lines or comments).

Exceptions::

    ValueError
     └── SseError    an event is larger than the parser's ``max_event_bytes``
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

DONE_DATA = "[DONE]"

_BOM = b"\xef\xbb\xbf"
_CR = 13
_LF = 10
_COLON = 58


class SseError(ValueError):
    """The upstream's event stream cannot be parsed within the parser's bounds."""


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One event block as received.

    ``raw`` is the block's exact bytes including its terminating blank line,
    and any blank lines that preceded the block. ``data`` joins the block's data
    lines with "\\n" (``None`` without any data line); ``event`` and ``id`` are
    the last such field in the block. ``comment_only`` marks a block of comment
    lines only, such as a ": keep-alive".
    """

    raw: bytes
    data: str | None
    event: str | None
    id: str | None
    comment_only: bool


class SseParser:
    """Parses one event stream fed in chunks; not thread-safe, one per stream."""

    __slots__ = ("_body", "_buf", "_first", "_max", "_scan")

    def __init__(self, max_event_bytes: int = 1 << 20) -> None:
        if max_event_bytes < 1:
            raise ValueError(f"max_event_bytes must be positive, got {max_event_bytes}")
        self._max = max_event_bytes
        self._reset()

    def _reset(self) -> None:
        # The bytes of the incomplete block, from the end of the last event.
        self._buf = bytearray()
        # Where the block's lines begin in _buf: past a BOM and leading blank lines.
        self._body = 0
        # Where the search for the next blank line resumes, so bytes already searched
        # are not searched again.
        self._scan = 0
        # The BOM is only honoured at the very start of the stream.
        self._first = True

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of an event."""
        return len(self._buf)

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """The events completed by ``chunk``, in order.

        Raises :class:`SseError` when an event, complete or not, grows past
        ``max_event_bytes``.
        """
        if self._buf:
            self._buf += chunk
            line_end = _find_blank_line(self._buf, self._scan)
            # Most reads of a large event do not finish it: look before copying.
            if line_end < 0:
                self._scan = max(len(self._buf) - 1, self._body)
                if len(self._buf) > self._max:
                    self._fail()
                return []
            buf = bytes(self._buf)
            self._buf.clear()
        else:
            buf = chunk
            line_end = _find_blank_line(buf, self._scan)
        events: list[SseEvent] = []
        start, body = 0, self._body
        size = len(buf)
        while line_end >= 0:
            end = line_end + 2
            # A final "\r" may be the first half of a "\r\n" still in flight. The
            # event is complete either way, so it goes out now rather than waiting
            # for the next read; a "\n" that follows is then a harmless blank line
            # in front of the next block.
            if buf[end - 1] == _CR and end < size and buf[end] == _LF:
                end += 1
            if self._first and body < start + 3 and buf.startswith(_BOM, start):
                body = start + 3
            if line_end - body < 2 and not buf[body : line_end + 1].strip(b"\r\n"):
                # Only blank lines so far: they dispatch nothing, and join the
                # next event's raw so that no byte is lost.
                body = end
            else:
                if end - start > self._max:
                    self._fail()
                events.append(_parse(buf[start:end], body - start))
                self._first = False
                start = body = end
            # An empty line needs two bytes: a chunk that ends with an event stops here.
            line_end = _find_blank_line(buf, end) if end < size - 1 else -1
        if start < size:
            self._buf += memoryview(buf)[start:]
            if size - start > self._max:
                self._fail()
        self._body = body - start
        self._scan = max(size - 1, body) - start
        return events

    def flush(self) -> list[SseEvent]:
        """At the end of the stream: the unterminated final block, if it has any
        field, as an event. The parser is then ready for a new stream."""
        raw, body = bytes(self._buf), self._body
        if self._first and raw.startswith(_BOM):
            body = max(body, 3)
        self._reset()
        event = _parse(raw, body) if raw else None
        return [event] if event is not None and not event.comment_only else []

    def _fail(self) -> NoReturn:
        self._reset()  # the stream is unusable now; free what it held
        raise SseError(f"an upstream SSE event exceeds max_event_bytes ({self._max} bytes)")


def _find_blank_line(buf: bytes | bytearray, start: int) -> int:
    """Where the first line followed by an empty line ends, from ``start``; -1 if none.

    Two line-end bytes in a row are a line end and then an empty line, except
    "\\r\\n", which is one line end. bytes.find runs at C speed, so streams
    without "\\r" (nearly all) cost one search for "\\n\\n" and one for "\\r".
    """
    if buf.find(b"\r", start) < 0:
        return buf.find(b"\n\n", start)
    found = -1
    for pair in (b"\n\r", b"\n\n", b"\r\r"):
        # Only an earlier match can matter, so each search stops at the best so far.
        at = buf.find(pair, start) if found < 0 else buf.find(pair, start, found + 1)
        if at >= 0:
            found = at
    return found


def _parse(raw: bytes, body: int) -> SseEvent:
    """The fields of one block whose lines start at ``raw[body:]``."""
    if body == 0 and raw.startswith(b"data: "):
        # Fast path for the block every token of an OpenAI stream arrives in:
        # a single "data: " line.
        end = len(raw) - (4 if raw.endswith(b"\r\n\r\n") else 2)
        if raw.find(b"\n", 6, end) < 0 and raw.find(b"\r", 6, end) < 0 and raw[end] in b"\r\n":
            return SseEvent(raw, raw[6:end].decode("utf-8", "replace"), None, None, False)
    data: list[bytes] | None = None
    event: str | None = None
    event_id: str | None = None
    comment_only = True
    for line in (raw[body:] if body else raw).splitlines():
        if not line or line[0] == _COLON:
            continue
        comment_only = False
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            if data is None:
                data = [value]
            else:
                data.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
        elif name == b"id" and b"\0" not in value:
            # The spec ignores an id holding NUL; "retry" and unknown fields are ignored too.
            event_id = value.decode("utf-8", "replace")
    return SseEvent(
        raw=raw,
        data=None if data is None else b"\n".join(data).decode("utf-8", "replace"),
        event=event,
        id=event_id,
        comment_only=comment_only,
    )


def encode_event(data: str | bytes) -> bytes:
    """``data`` as one event: a ``data:`` line per line of it, then a blank line.

    "\\r\\n" and "\\r" in ``data`` count as line breaks too, as a reader would
    take them, so they come back as "\\n".
    """
    raw = data.encode() if isinstance(data, str) else data
    if b"\n" not in raw and b"\r" not in raw:
        return b"data: " + raw + b"\n\n"
    lines = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    return b"".join([b"data: " + line + b"\n" for line in lines]) + b"\n"
