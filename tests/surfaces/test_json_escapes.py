"""Streamed JSON with its escapes written out: the same JSON, however it is cut."""

from __future__ import annotations

import itertools
import json

from hypothesis import given
from hypothesis import strategies as st

from proxy.surfaces.json_escapes import EscapeDecoder

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
