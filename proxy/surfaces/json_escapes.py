"""Streamed JSON text with its escapes written out, as the client's parser will read it.

A tool call's arguments stream as pieces of a JSON document. ``"jane\\u0040
example.com"`` is an e-mail address to the client that parses it, but not to
a filter reading the pieces as they come. Each argument channel gets an
:class:`EscapeDecoder`: it writes every ``\\uXXXX`` escape out as the
character it stands for (the JSON means the same), holding back an escape
split across pieces until its end arrives, so filters judge, and the client
receives, the characters themselves. The escapes JSON needs (a quote, a
backslash, control characters) and the short ones (``\\n``) stay.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import Any

from proxy.surfaces.base import StreamStep

# An escape, or the start of one the next piece completes (at the very end).
_ESCAPE = re.compile(
    r"\\u[dD][89abAB][0-9a-fA-F]{2}\\(?:u[0-9a-fA-F]{0,3})?$"  # a surrogate pair, cut
    r"|\\u[0-9a-fA-F]{0,3}$|\\$"  # an escape, cut
    r"|\\(?:u[0-9a-fA-F]{4}(?:\\u[0-9a-fA-F]{4})?|.)"
)
_KEPT = frozenset('"\\') | frozenset(chr(c) for c in range(0x20))


class EscapeDecoder:
    """Decodes one channel's pieces; ``feed`` returns the text that may be judged now."""

    __slots__ = ("_carry",)

    def __init__(self) -> None:
        self._carry = ""

    def feed(self, piece: str) -> str:
        text = self._carry + piece
        self._carry = ""
        if "\\" not in text:
            return text
        return _ESCAPE.sub(self._one, text)

    def _one(self, match: re.Match[str]) -> str:
        escape = match.group()
        if match.end() == len(match.string) and _unfinished(escape):
            self._carry = escape  # the rest of it comes with the next piece
            return ""
        if len(escape) < 6 or escape[1] != "u":
            return escape
        first = int(escape[2:6], 16)
        if 0xD800 <= first < 0xDC00:
            if len(escape) == 12:
                second = int(escape[8:12], 16)
                if 0xDC00 <= second < 0xE000:
                    return chr(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00))
            return escape[:6] + _decoded_rest(escape[6:])  # a lone surrogate stays an escape
        if 0xDC00 <= first < 0xE000 or chr(first) in _KEPT:
            return escape[:6] + _decoded_rest(escape[6:])
        return chr(first) + _decoded_rest(escape[6:])


def _unfinished(escape: str) -> bool:
    if escape == "\\":
        return True
    if escape[1] != "u":
        return False
    if len(escape) < 6:
        return True
    # A high surrogate at the end may still be joined by its low half.
    return len(escape) < 12 and 0xD800 <= int(escape[2:6], 16) < 0xDC00


def _decoded_rest(rest: str) -> str:
    """The second escape of a pair that was not a surrogate pair, decoded on its own."""
    if not rest:
        return rest
    return EscapeDecoder().feed(rest)


class ArgumentStreams:
    """One decoder per channel whose pieces are JSON (a call's arguments, a tool's input)."""

    __slots__ = ("_decoders",)

    def __init__(self) -> None:
        self._decoders: dict[Hashable, EscapeDecoder] = {}

    def decode(self, channel: Hashable, holder: dict[str, Any], key: str, step: StreamStep) -> str:
        """``holder[key]``'s piece with escapes written out, put back in the event if changed."""
        decoder = self._decoders.get(channel)
        if decoder is None:
            decoder = self._decoders[channel] = EscapeDecoder()
        text = decoder.feed(holder[key])
        if text != holder[key]:
            holder[key] = text
            step.rebuild = True  # the event goes out as decoded, never as it came
        return text
