"""A document written in pieces is exactly the document written whole."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.formats.json_exact import TooDeep, parse
from proxy.formats.json_pieces import SLICE, WHOLE_BYTES, EncodedDocument, encode_document

# Strings long enough to be sliced, with characters that escape and that are
# several bytes long, so a slice boundary falls everywhere that matters.
_long_text = st.builds(
    lambda unit, times: (unit * times)[: SLICE * 2 + times],
    st.text(st.sampled_from('a"\\\n\u00e9\u4e2d\U0001f600\x00'), min_size=1, max_size=7),
    st.integers(min_value=SLICE // 3, max_value=SLICE),
)
_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
_document = st.recursive(
    _leaf | _long_text,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=40, deadline=None)
@given(_document)
def test_the_pieces_join_to_the_whole_encoding(document: Any) -> None:
    encoded = EncodedDocument(document)
    pieces = list(encoded)
    whole = orjson.dumps(document)
    assert b"".join(pieces) == whole
    assert encoded.length == len(whole)
    assert all(len(piece) <= 2 * SLICE * 4 for piece in pieces)  # bounded, never the whole


def test_a_large_document_is_never_one_piece() -> None:
    document = {"messages": [{"role": "user", "content": "x" * (10 * SLICE)}]}
    pieces = list(EncodedDocument(document))
    assert len(pieces) >= 10
    assert max(len(piece) for piece in pieces) <= SLICE + 64


def test_a_small_document_is_encoded_at_once() -> None:
    assert encode_document({"a": 1}, WHOLE_BYTES) == b'{"a":1}'
    assert isinstance(encode_document({"a": 1}, WHOLE_BYTES + 1), EncodedDocument)


def test_too_deep_a_document_is_refused_as_orjson_refuses_it() -> None:
    deep: Any = "x" * (2 * SLICE)
    for _ in range(300):
        deep = [deep]
    with pytest.raises(TooDeep):
        EncodedDocument(deep)


def test_long_numbers_are_read_exactly_and_short_ones_as_numbers() -> None:
    document = parse(
        b'{"a": 18446744073709551616, "b": 0.1000000000000000055511, "c": 7, "d": 0.5}'
    )
    assert orjson.dumps(document) == (
        b'{"a":18446744073709551616,"b":0.1000000000000000055511,"c":7,"d":0.5}'
    )
    assert document["c"] == 7
    assert document["d"] == 0.5


def test_parse_accepts_only_what_orjson_accepts() -> None:
    # Each has a long number, so the stdlib reader, which takes all of these,
    # would read it if orjson had not refused it first.
    for bad in (b"NaN", b'"\\ud800"', b"1,", b'"\xff"', b"Infinity"):
        with pytest.raises(orjson.JSONDecodeError):
            parse(b"[12345678901234567890, " + bad + b"]")
