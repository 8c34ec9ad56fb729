"""Streamed JSON with its escapes written out: the same JSON, however it is cut."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.surfaces.base import StreamStep
from proxy.surfaces.json_escapes import ArgumentStreams, EscapeDecoder

ARGUMENTS = (
    '{"to": "jane\\u0040example.com", "q": "a\\"b\\\\u0040c\\n", '
    '"e": "\\ud83d\\ude00 x \\u0022 \\u00e9 \\ud83d\\u0041", "s": "\\/"}'
)


def decoded(pieces: list[str]) -> str:
    decoder = EscapeDecoder()
    return "".join(decoder.feed(piece) for piece in pieces)


def test_escapes_are_written_out_but_those_json_needs() -> None:
    text = decoded([ARGUMENTS])
    assert '"jane@example.com"' in text
    assert '\\"b\\\\u0040c\\n' in text  # an escaped backslash is not an escape of "u"
    assert "😀" in text
    assert "\\u0022" in text  # a quote stays escaped
    assert "\\ud83d@" not in text
    assert "\\ud83dA" in text  # a lone surrogate stays an escape, what follows it does not
    assert json.loads(text) == json.loads(ARGUMENTS)


@given(st.lists(st.integers(min_value=1, max_value=len(ARGUMENTS) - 1), max_size=40))
def test_cut_anywhere_it_decodes_as_the_whole_does(cuts: list[int]) -> None:
    bounds = [0, *sorted(set(cuts)), len(ARGUMENTS)]
    pieces = [ARGUMENTS[a:b] for a, b in itertools.pairwise(bounds)]
    assert decoded(pieces) == decoded([ARGUMENTS])


# (pieces, what the client is given): each escape at the edges of the ranges
# the decoder tells apart, whole and cut.
EDGES: dict[str, tuple[list[str], str]] = {
    "the first surrogate pair": (["\\ud800\\udc00"], "\U00010000"),
    "the last surrogate pair": (["\\udbff\\udfff"], "\U0010ffff"),
    "a pair at the very end of a piece": (["x\\ud83d\\ude00"], "x\U0001f600"),
    "a pair cut after its high half": (["\\ud800", "\\udc00"], "\U00010000"),
    "a high half and a character past the low halves": (["\\ud800\\ue000"], "\\ud800\ue000"),
    "two low halves": (["\\udc00\\udc00"], "\\udc00\\udc00"),
    "a lone low half at the end": (["\\udc00"], "\\udc00"),
    "the first character past the surrogates": (["\\ue000"], "\ue000"),
    "a quote and a letter": (["\\u0022\\u0041"], "\\u0022A"),
    "two letters": (["\\u0041\\u0042"], "AB"),
    "a short escape at the end": (["a\\n"], "a\\n"),
    "an escape cut before a newline": (["\\u\n"], "\\u\n"),
}  # fmt: skip


@pytest.mark.parametrize("case", EDGES)
def test_escapes_at_the_edges_of_each_range(case: str) -> None:
    pieces, given = EDGES[case]
    assert decoded(pieces) == given


def test_a_piece_with_an_escape_goes_out_decoded_and_one_without_as_it_came() -> None:
    streams, step = ArgumentStreams(), StreamStep()
    holder = {"arguments": '{"to": "jane\\u0040example.com"}'}
    assert streams.decode("call", holder, "arguments", step) == '{"to": "jane@example.com"}'
    assert holder == {"arguments": '{"to": "jane@example.com"}'}
    assert step.rebuild is True
    plain, unchanged = StreamStep(), {"arguments": '{"to": "x"}'}
    assert streams.decode("other", unchanged, "arguments", plain) == '{"to": "x"}'
    assert plain.rebuild is False
