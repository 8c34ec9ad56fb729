"""Bounded, incremental inflation of gzip and deflate bodies, for both directions.

A few hundred kilobytes of gzip can inflate to gigabytes. Whatever inflates a
body the proxy must read (a judged request, a judged answer or stream) does
it here, a bounded step at a time, so that memory stays within the caller's
limit however the bytes were made:

* ``max_bytes``: the most the inflated body may be, in all;
* ``max_ratio``: past :data:`RATIO_FLOOR_BYTES` of output, inflated bytes
  may be at most this many times the compressed bytes fed so far. Real JSON
  and event streams inflate 5 to 20 times; a bomb inflates 1,000 times.

Errors::

    InflateError
    ├── InflateTooLarge   over max_bytes, or inflating faster than max_ratio
    ├── InflateInvalid    not valid for its Content-Encoding
    └── InflateUnsupported  an encoding other than gzip, deflate or identity
"""

from __future__ import annotations

import zlib

# Inflated bytes taken from zlib in one step: a bomb is caught within this much.
_STEP = 256 * 1024
# Small bodies may inflate at any ratio (a prompt of one repeated word does).
RATIO_FLOOR_BYTES = 1024 * 1024
MAX_RATIO = 200.0

_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
IDENTITY = frozenset({"", "identity"})


class InflateError(ValueError):
    """A compressed body the proxy will not inflate."""


class InflateTooLarge(InflateError):
    """The inflated body is over the limit, or inflates faster than a real body does."""


class InflateInvalid(InflateError):
    """The bytes are not valid for their Content-Encoding."""


class InflateUnsupported(InflateError):
    """A Content-Encoding the proxy cannot inflate."""


def content_coding(header: str | None) -> str:
    """The one content coding a header names, lower-cased ('' for none).

    Raises InflateUnsupported for a coding the proxy cannot undo, or for a
    list of several (``gzip, gzip``): each would be a bound to keep again.
    """
    coding = (header or "").strip().lower()
    if coding in IDENTITY or coding in _WBITS:
        return "" if coding in IDENTITY else coding
    raise InflateUnsupported(f"cannot decode Content-Encoding {coding!r}")


class Inflater:
    """Inflates one body fed in pieces; raises an InflateError past its bounds."""

    __slots__ = ("_done", "_in", "_max_bytes", "_max_ratio", "_out", "_raw_tried", "_z")

    def __init__(self, coding: str, max_bytes: int, max_ratio: float = MAX_RATIO) -> None:
        wbits = _WBITS.get(coding)
        if wbits is None:
            raise InflateUnsupported(f"cannot decode Content-Encoding {coding!r}")
        self._z = zlib.decompressobj(wbits)
        # "deflate" is zlib-wrapped by the standard and raw in practice.
        self._raw_tried = coding != "deflate"
        self._max_bytes = max_bytes
        self._max_ratio = max_ratio
        self._in = 0
        self._out = 0
        self._done = False

    @property
    def inflated(self) -> int:
        """Inflated bytes produced so far."""
        return self._out

    def feed(self, data: bytes | bytearray | memoryview) -> bytes:
        """The inflated bytes of ``data``; InflateError past the bounds."""
        pieces: list[bytes] = []
        pending: bytes | bytearray | memoryview = data
        while pending:
            if self._done:
                raise InflateInvalid("bytes after the end of the compressed body")
            try:
                piece = self._z.decompress(pending, _STEP)
            except zlib.error as exc:
                if not self._raw_tried and self._in == 0:
                    self._raw_tried = True
                    self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise InflateInvalid(f"the body does not decompress: {exc}") from exc
            tail = self._z.unconsumed_tail
            # Counted as consumed, so one large read cannot buy a large allowance.
            self._in += len(pending) - len(tail)
            self._count(len(piece))
            if piece:
                pieces.append(piece)
            pending = tail
            if self._z.eof:
                self._done = True
                if self._z.unused_data:
                    raise InflateInvalid("bytes after the end of the compressed body")
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def finish(self) -> bytes:
        """What zlib still holds; InflateInvalid if the compressed body was cut short."""
        rest = self._z.flush()
        self._count(len(rest))
        if not self._z.eof and self._in:
            raise InflateInvalid("the compressed body ends before its end")
        return rest

    def _count(self, produced: int) -> None:
        self._out += produced
        if self._out > self._max_bytes:
            raise InflateTooLarge(f"the inflated body is over {self._max_bytes} bytes")
        if self._out > RATIO_FLOOR_BYTES and self._out > self._in * self._max_ratio:
            raise InflateTooLarge(
                f"the body inflates over {self._max_ratio:g} times its compressed size"
            )


def inflate(data: bytes | bytearray | memoryview, coding: str, max_bytes: int) -> bytes:
    """A whole body inflated, within ``max_bytes`` and the ratio bound."""
    inflater = Inflater(coding, max_bytes)
    body = inflater.feed(data)
    rest = inflater.finish()
    return body + rest if rest else body
