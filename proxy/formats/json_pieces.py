"""A parsed JSON document written out in slices, so it is never whole twice.

A judged request body goes upstream as the proxy's own encoding of the
document the filters judged, never as the client's bytes: what the model
server parses is exactly what was judged (a duplicate key, say, cannot mean
one thing to the filters and another to the upstream), and the client's
bytes can be let go as soon as they are parsed. A large document is then
held once, as Python objects, while it is written: :class:`EncodedDocument`
yields it in pieces of about ``SLICE`` bytes, splitting long strings, and
knows its length before the first piece goes out (the ``Content-Length``).

Joined, the pieces are exactly ``orjson.dumps(document)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from proxy.formats.json_exact import TooDeep, dumps

SLICE = 256 * 1024
# A document whose source was at most this long is encoded in one call.
WHOLE_BYTES = 1024 * 1024
# orjson writes at most this depth; the slicer refuses deeper, the same way.
_MAX_DEPTH = 254


class EncodedDocument:
    """A document to write in pieces; its ``length`` is known before writing."""

    __slots__ = ("_document", "length")

    def __init__(self, document: Any) -> None:
        self._document = document
        # One pass to count; the writing pass encodes again, piece by piece.
        self.length = sum(len(piece) for piece in self)

    def __iter__(self) -> Iterator[bytes]:
        pending = bytearray()
        for piece in _encode(self._document, 0):
            if len(piece) >= SLICE and not pending:
                yield piece
                continue
            pending += piece
            if len(pending) >= SLICE:
                yield bytes(pending)
                pending.clear()
        if pending:
            yield bytes(pending)


def encode_document(document: Any, source_bytes: int) -> bytes | EncodedDocument:
    """``document`` ready to send: whole when small, in pieces when large."""
    if source_bytes <= WHOLE_BYTES:
        return dumps(document)
    return EncodedDocument(document)


def _encode(node: Any, depth: int) -> Iterator[bytes]:
    if isinstance(node, str):
        if len(node) <= SLICE:
            yield orjson.dumps(node)
            return
        yield b'"'
        # Slicing a str never splits a character, and escapes are per character.
        for start in range(0, len(node), SLICE):
            yield orjson.dumps(node[start : start + SLICE])[1:-1]
        yield b'"'
        return
    if not isinstance(node, dict | list):
        yield orjson.dumps(node)
        return
    if depth >= _MAX_DEPTH:
        raise TooDeep("the document is nested too deeply to re-encode (254 levels)")
    if _weight(node, SLICE) < SLICE:
        yield dumps(node)
        return
    if isinstance(node, dict):
        yield b"{"
        for i, (key, value) in enumerate(node.items()):
            yield (b"," if i else b"") + orjson.dumps(key) + b":"
            yield from _encode(value, depth + 1)
        yield b"}"
    else:
        yield b"["
        for i, value in enumerate(node):
            if i:
                yield b","
            yield from _encode(value, depth + 1)
        yield b"]"


def _weight(node: Any, limit: int) -> int:
    """About how many bytes ``node`` encodes to, counted no further than ``limit``."""
    total = 0
    stack = [node]
    while stack and total < limit:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item) + 2
        elif isinstance(item, dict):
            total += 2 + 4 * len(item)
            for key, value in item.items():
                total += len(key)
                stack.append(value)
        elif isinstance(item, list):
            total += 2 + len(item)
            stack.extend(item)
        else:
            total += 8
    return total
