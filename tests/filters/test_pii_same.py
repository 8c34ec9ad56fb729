"""The pii filter judges exactly what it judged before it tried its regexes at
candidate positions only: the same verdict (spans, kinds, redacted text,
reason, unsettled tail) as the old implementation (tests/filters/pii_oracle.py)
on generated texts and on the packaged dataset, whole and as stream windows."""

from __future__ import annotations

import json
from importlib import resources
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filters.base import FilterContext, Stage, Verdict
from filters.pii import PII_TYPES, Pii
from filters.pii_tail import TAILS
from tests.filters import pii_oracle, pii_tail_oracle

TYPE_SETS: list[tuple[str, ...]] = [PII_TYPES, *((kind,) for kind in PII_TYPES)]
_PAIRS = {
    (types, normalize): (
        Pii(types=types, normalize=normalize),
        pii_oracle.Pii(types=types, normalize=normalize),
    )
    for types in TYPE_SETS
    for normalize in (True, False)
}


def _verdict(instance: Pii | pii_oracle.Pii, text: str, partial: bool) -> Verdict:
    stage: Stage = "stream" if partial else "input"
    ctx = FilterContext(stage, text, None, "chat_completions", "req-same", partial=partial)
    check = instance.check(ctx)
    try:
        check.send(None)  # pii never suspends: one step runs it to its verdict
    except StopIteration as done:
        verdict: Verdict = done.value
        return verdict
    check.close()
    raise AssertionError("pii suspended")


def assert_same(text: str, types: tuple[str, ...] = PII_TYPES, normalize: bool = True) -> None:
    new, old = _PAIRS[(types, normalize)]
    for partial in (False, True):
        assert _verdict(new, text, partial) == _verdict(old, text, partial), (text, partial)
    for kind, tail in TAILS.items():
        assert tail(text) == pii_tail_oracle.TAILS[kind](text), (text, kind)


def _cards() -> st.SearchStrategy[str]:
    # Valid (Luhn) numbers and near misses, unbroken or grouped with mixed separators.
    numbers = st.sampled_from(
        ["4111111111111111", "5555555555554444", "378282246310005", "30569309025904",
         "4111111111111112", "0000000000000000", "4012888888881881", "6011111111111117"]
    )  # fmt: skip
    seps = st.lists(st.sampled_from([" ", "-", ".", "", "  ", "\u00a0"]), min_size=4, max_size=4)

    def group(number: str, sep: list[str]) -> str:
        cuts = [0, 4, 8, 12, 16] if len(number) == 16 else [0, 4, 10, len(number)]
        parts = [number[a:b] for a, b in pairwise(cuts)]
        return "".join(p + (sep[i] if i < len(parts) - 1 else "") for i, p in enumerate(parts))

    return st.one_of(numbers, st.builds(group, numbers, seps))


# Named cases: the filter's own positives and near misses, and tricks of the view.
NAMED = [
    "jane.doe+tag@example.co.uk", "ops@mail-1.example.org", "a@b", "root@localhost",
    "jane\uff20example\uff0ecom", "ja\u200bne@exa\u200bmple.com", "x@y.z", "@", "a.@b.cd",
    "+44 20 7946 0958", "+1 (555) 123-4567", "(555) 123-4567", "555-123-4567",
    "555.123.4567", "1-800-555-1234", "+1 2", "+33 1 23 45 67 89", "123-4567",
    "192.168.0.1", "10.0.0.256", "1.2.3.4.5", "255.255.255.255", "1.2.3",
    "2001:db8::1", "::1", "fe80::1", "::ffff:192.0.2.128", "12:30:45", "00:1A:2B:3C:4D:5E",
    "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "Abc::Def", "0958::", "a::b:1",
    "123-45-6789", "000-12-3456", "666-12-3456", "912-34-5678",
    "GB82 WEST 1234 5698 7654 32", "GB82WEST12345698765432", "DE89 3704 0044 0532 0130 00",
    "DE89370400440532013001", "\uff14\uff11\uff11\uff11", "\ufb01", "e\u0301", "\u00a8",
]  # fmt: skip

PIECES = st.one_of(
    st.sampled_from(NAMED),
    _cards(),
    st.from_regex(r"[0-9]{1,20}", fullmatch=True),
    st.from_regex(r"[0-9A-Fa-f]{0,5}(:[0-9A-Fa-f]{0,5}){1,8}", fullmatch=True),
    st.from_regex(r"[A-Z]{2}[0-9]{2}( ?[A-Z0-9]{1,4}){2,8}", fullmatch=True),
    st.from_regex(r"[\w.%+-]{1,8}@[\w-]{1,6}(\.[\w-]{1,6}){0,3}", fullmatch=True),
)
GLUE = st.sampled_from(
    [" ", "", "  ", "\n", "\n\n", "\t", ".", "-", "+", "(", ")", ":", "@", "_", "a", "Z", "x ",
    " ref ", ", ", "\u200b", "\u00a0", "\u2003", "\uff0e", "\uff20", "\x00", "\u200b ", "1", "0"]
)  # fmt: skip


@st.composite
def pii_texts(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.tuples(GLUE, PIECES), max_size=6))
    return "".join(glue + piece for glue, piece in parts) + draw(GLUE)


SOUP = st.text(
    alphabet="0123456789 .-+()@:_%abcdefxyzABCDEFGZ\u200b\u00a0\uff20\uff0e\uff11\n", max_size=80
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pii_texts(), st.sampled_from(TYPE_SETS), st.booleans())
def test_texts_built_of_personal_data_get_the_same_verdict(
    text: str, types: tuple[str, ...], normalize: bool
) -> None:
    assert_same(text, types, normalize)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SOUP, st.sampled_from(TYPE_SETS))
def test_texts_of_the_characters_matches_are_made_of_get_the_same_verdict(
    text: str, types: tuple[str, ...]
) -> None:
    assert_same(text, types)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pii_texts(), st.data())
def test_every_stream_window_gets_the_same_verdict(text: str, data: st.DataObject) -> None:
    # A window is a slice of the answer so far: any start, any end.
    end = data.draw(st.integers(0, len(text)))
    start = data.draw(st.integers(0, end))
    assert_same(text[start:end])


def _dataset() -> list[str]:
    source = resources.files("proxy.datasets").joinpath("prompts.jsonl").read_text("utf-8")
    return [json.loads(line)["prompt"] for line in source.splitlines() if line.strip()]


def test_the_packaged_dataset_gets_the_same_verdicts_whole_and_cut() -> None:
    prompts = _dataset()
    assert len(prompts) > 300
    flagged = 0
    for prompt in prompts:
        assert_same(prompt)
        flagged += _verdict(_PAIRS[(PII_TYPES, True)][0], prompt, False).action != "allow"
        for cut in range(7, len(prompt), 23):
            assert_same(prompt[:cut])
    joined = "\n\n".join(prompts)
    assert_same(joined)
    assert flagged  # the comparison covers prompts with personal data, not only clean ones


@pytest.mark.parametrize(
    "text",
    [
        "+1 415 555 2542 " * 200,
        "1 2 3 4 5 6 7 8 9 0 " * 300,
        '{"a": 1, "b": "2001:db8::1", "c": [1.2, 3.4]} ' * 100,
        "x@" * 500 + "jane@example.com",
        "a" * 70 + "@example.com " + "b" * 64 + "@example.com",
        "4111 1111 1111 1111 " * 100,
        "DE89 3704 0044 0532 0130 00 " * 50,
        "Gr\u00fc\u00dfe, j\u00fcrgen\u200b.m\u00fcller\uff20beispiel\uff0ede, +49 221 1234567. "
        * 60,
    ],
    ids=["phones", "digits", "json", "at-signs", "long-local-parts", "cards", "ibans", "unicode"],
)
def test_dense_texts_get_the_same_verdict(text: str) -> None:
    assert_same(text)
