"""The heuristics filter's ``encoded`` check: long base64 and hex payloads.

A long run of base64 or hex characters is decoded, and counts only when the
decoded bytes are text (UTF-8 without control characters) that trips the
override or role-tag check. A sha256 in a bug report or a key decodes to
binary and passes; so do image data URLs, which are not decoded at all.
Decoding is one level deep and capped per call.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable

Span = tuple[int, int]

# Decoding is the one cost that grows with what a client sends rather than
# with the length of the text alone, so it is capped per call: in bytes
# decoded and in payloads looked at.
MAX_DECODED = 64 * 1024
MAX_PAYLOADS = 128

_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_="
# Base64 (standard and URL-safe, with its padding) and hex characters as "a",
# the rest as a space, so a run of them is found with bytes.find.
_RUNS = bytes(ord("a") if b in _ALPHABET else 32 for b in range(256))
_CONTROL = bytes([*range(9), 11, 12, *range(14, 32), 127])
_HEX_DIGITS = "0123456789abcdefABCDEF"
_URL_SAFE = str.maketrans("-_", "+/")
# Images, audio and fonts arrive in chat content as data URLs: large, never text.
_MEDIA_URL = re.compile(
    r"data:(?:image|audio|video|font)/[\w.+-]+(?:;[\w.+-]+=[\w.+-]+)*;base64,\Z"
)


def _decode(payload: str, budget: int) -> bytes | None:
    """The bytes a base64 or hex payload encodes (at most about ``budget``), or None."""
    try:
        if payload.startswith("\\x"):
            return bytes.fromhex(payload.replace("\\x", "")[: budget * 2])
        if not payload.strip(_HEX_DIGITS) and len(payload) % 2 == 0:
            return bytes.fromhex(payload[: budget * 2])
        data = payload.rstrip("=").translate(_URL_SAFE)[: budget // 3 * 4]
        if len(data) % 4 == 1:  # a lone last character carries no whole byte
            data = data[:-1]
        return base64.b64decode(data + "=" * (-len(data) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _as_text(raw: bytes) -> str | None:
    """``raw`` as text when it is UTF-8 without control characters, else None.

    Binary (a hash, a key, a compressed blob) fails this almost always. A cut
    at the budget may split the last character, which is dropped.
    """
    if len(raw.translate(None, _CONTROL)) < len(raw):  # cheaper than a failed decode
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        return raw[: exc.start].decode() if exc.start >= len(raw) - 3 else None


class Payloads:
    """Finds payloads of at least ``min_length`` characters whose decoded text
    ``injected`` accepts."""

    def __init__(self, min_length: int, injected: Callable[[str], bool]) -> None:
        self._run = b"a" * min_length
        self._escapes = re.compile(rf"(?:\\x[0-9A-Fa-f]{{2}}){{{-(-min_length // 4)},}}")
        self._injected = injected

    def _candidates(self, clean: str, raw: bytes) -> list[Span]:
        runs = raw.translate(_RUNS)
        spans: list[Span] = []
        start = runs.find(self._run)
        while start >= 0:
            end = runs.find(b" ", start)
            end = len(runs) if end < 0 else end
            if not (
                clean.endswith(";base64,", 0, start)
                and _MEDIA_URL.search(clean, max(0, start - 200), start)
            ):
                spans.append((start, end))
            start = runs.find(self._run, end)
        if "\\x" in clean:
            spans += (m.span() for m in self._escapes.finditer(clean))
        return spans

    def find(self, clean: str, raw: bytes, every: bool) -> list[Span]:
        """Spans of payloads in ``clean`` (``raw``: one byte per character of it,
        non-ASCII as bytes outside the alphabet); only the first unless ``every``."""
        spans: list[Span] = []
        budget = MAX_DECODED
        for start, end in self._candidates(clean, raw)[:MAX_PAYLOADS]:
            decoded = _decode(clean[start:end], budget)
            if decoded is None:
                continue
            budget -= len(decoded)
            text = _as_text(decoded)
            if text is not None and self._injected(text):
                spans.append((start, end))
                if not every:
                    break
            if budget <= 0:
                break
        return spans
