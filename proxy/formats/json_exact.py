"""Reading a JSON body the proxy re-encodes, with every number exactly as it came.

A judged request body goes upstream re-encoded (see :mod:`proxy.formats.json_pieces`),
and so does an answer a filter changed. orjson (the fast path) reads numbers
as 64-bit values: an integer above 2**64 (``"seed": 18446744073709551616``)
becomes a float, a decimal with more digits than a double holds is rounded,
and the model server would get a different request than the client sent. A
body that has such a number is read again here with each long number kept as
its original text (an ``orjson.Fragment``, written back verbatim). Bodies
without long numbers, nearly all of them, keep the fast path.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

# A number a double may not hold exactly: 16 or more digits, a decimal point
# among them or not, or an exponent of three digits. Digits inside strings
# match too; they only cost the exact (slower) path, never a wrong body.
_LONG_NUMBER = re.compile(rb"(?:\d\.?){16,}|[eE][+-]?\d{3,}")


def needs_exact(raw: bytes | bytearray) -> bool:
    """Whether re-encoding a parse of ``raw`` by orjson could change a number."""
    return _LONG_NUMBER.search(raw) is not None


def parse(raw: bytes | bytearray) -> Any:
    """``raw`` parsed (orjson.JSONDecodeError if it is not JSON), long numbers kept exact.

    orjson checks the document first, so that both paths accept the same
    JSON; only a body with a long number is read a second time. Numbers that
    orjson holds exactly stay ints and floats, so the document reads the same
    either way, except that a long number is an ``orjson.Fragment``.
    """
    document = orjson.loads(raw)
    if not needs_exact(raw):
        return document
    del document  # not held twice while the exact copy is made
    try:
        return json.loads(raw, parse_int=_exact_int, parse_float=_exact_float)
    except RecursionError as exc:
        raise TooDeep("the document is nested too deeply to re-encode") from exc


def exact_copy(raw: bytes | bytearray) -> Any:
    """``raw`` parsed with every number kept as its source text."""
    try:
        return json.loads(raw, parse_int=_verbatim, parse_float=_verbatim)
    except RecursionError as exc:
        raise TooDeep("the document is nested too deeply to re-encode") from exc


class TooDeep(ValueError):
    """A document nested deeper than orjson writes (it reads deeper than it writes)."""


def dumps(document: Any) -> bytes:
    try:
        return orjson.dumps(document)
    except orjson.JSONEncodeError as exc:
        if "recursion" not in str(exc).lower():
            raise  # anything else is a bug (a filter put something odd in the body)
        raise TooDeep("the document is nested too deeply to re-encode (254 levels)") from exc


def _verbatim(text: str) -> orjson.Fragment:
    return orjson.Fragment(text)


def _exact_int(text: str) -> int | orjson.Fragment:
    value = int(text)
    # orjson writes 64-bit integers; it reads larger ones as floats.
    return value if -(2**63) <= value < 2**64 else orjson.Fragment(text)


def _exact_float(text: str) -> float | orjson.Fragment:
    return orjson.Fragment(text) if _LONG_NUMBER.search(text.encode()) else float(text)
