"""The normalised view of a text, and its map back to the original characters."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filters.normal_text import NormalText, normal_text, union, views

# (text, view, with look-alikes folded)
VIEWS = [
    pytest.param("plain ascii text", "plain ascii text", False, id="ascii-unchanged"),
    pytest.param("ig\u200bnore", "ignore", False, id="zero-width-space"),
    pytest.param("ig\u200c\u200d\u2060\ufeffnore", "ignore", False, id="joiners-wj-bom"),
    pytest.param("ig\u00adnore", "ignore", False, id="soft-hyphen"),
    pytest.param("ig\u202enore\U000e0041", "ignore", False, id="bidi-and-tag-characters"),
    pytest.param("ig\x00no\x1bre", "ignore", False, id="control-characters"),
    pytest.param("ig\ufe0fno\u034fre", "ignore", False, id="variation-selector-cgj"),
    pytest.param("jane\uff20example\uff0ecom", "jane@example.com", False, id="fullwidth"),
    pytest.param("\U0001d422\U0001d420\U0001d427", "ign", False, id="mathematical-bold"),
    pytest.param("\ufb01x", "fix", False, id="ligature"),
    pytest.param("e\u0301cole", "\u00e9cole", False, id="combining-mark-composed"),
    pytest.param("a\u00a0b\u2003c\u3000d", "a b c d", False, id="unicode-spaces"),
    pytest.param("a\n\n \tb\r\nc", "a b c", False, id="whitespace-runs"),
    pytest.param("a \u200b b", "a b", False, id="invisible-inside-a-run"),
    pytest.param("ign\u043ere", "ign\u043ere", False, id="cyrillic-kept-without-fold"),
    pytest.param("ign\u043ere \u0391\u0392", "ignore AB", True, id="look-alikes-folded-keep-case"),
    pytest.param("\u0131\u0261\u0251", "iga", True, id="latin-variants-folded"),
    pytest.param(
        "\u043f\u0440\u0438\u0432\u0435\u0442",
        "\u043fp\u0438\u0432e\u0442",
        True,
        id="only-the-look-alikes-of-a-real-word-fold",
    ),
    pytest.param("\u200b", "", False, id="only-invisible"),
    pytest.param("", "", False, id="empty"),
]


@pytest.mark.parametrize(("text", "view", "fold"), VIEWS)
def test_the_view(text: str, view: str, fold: bool) -> None:
    assert normal_text(text, fold=fold).text == view


def test_invisible_characters_have_a_second_view_that_reads_them_as_spaces() -> None:
    first, second = views("stop\u200bnow")
    assert (first.text, second.text) == ("stopnow", "stop now")
    assert len(views("no invisible")) == 1


def spans_of(view: NormalText) -> list[str]:
    """The original characters of each view character."""
    return [view.source[slice(*view.span(i, i + 1))] for i in range(len(view.text))]


def test_each_view_character_maps_to_the_characters_it_came_from() -> None:
    view = normal_text("a\n\n b\u200bc\uff20\ufb01e\u0301")
    assert view.text == "a bc@fi\u00e9"
    assert spans_of(view) == ["a", "\n\n ", "b", "c", "\uff20", "\ufb01", "\ufb01", "e\u0301"]


def test_a_span_maps_to_exactly_the_original_span() -> None:
    text = "Mail: ja\u200bne\uff20exa\u00admple.com, thanks"
    view = normal_text(text)
    start = view.text.index("jane@example.com")
    got = view.span(start, start + len("jane@example.com"))
    assert text[slice(*got)] == "ja\u200bne\uff20exa\u00admple.com"


def test_an_empty_span_is_an_insertion_point() -> None:
    view = normal_text("ab\u200b\u200bcd")
    assert view.span(2, 2) == (4, 4)  # before "c", after what was removed
    assert view.span(4, 4) == (6, 6)


def test_union_merges_what_two_views_found() -> None:
    assert union([(5, 9), (0, 2), (1, 3), (5, 9), (9, 10)]) == [(0, 3), (5, 9), (9, 10)]


# -- properties -------------------------------------------------------------------

# Characters the view treats specially, mixed with ordinary ones.
_SPECIAL = (
    "\u200b\u200c\u200d\u2060\ufeff\u00ad\u202e\x00\x1b\ufe0f\u034f"  # invisible
    " \n\t\r\u00a0\u2003\u3000\u2028"  # whitespace
    "\uff20\uff41\uff10\ufb01\u2460\u00bd\u0301\u0323\u1100\u1161\u11a8"  # NFKC
    "\u043e\u0430\u0391\u03bf\u0131"  # look-alikes
)
TEXTS = st.text(
    alphabet=st.one_of(st.sampled_from(_SPECIAL), st.characters(codec="utf-8")), max_size=60
)


@settings(max_examples=300, deadline=None)
@given(text=TEXTS, fold=st.booleans(), data=st.data())
def test_untouched_characters_are_kept_around_any_span(
    text: str, fold: bool, data: st.DataObject
) -> None:
    """What lies outside a span's original characters reads as what lies outside
    the span: replacing those characters leaves the rest of the text as it was."""
    view = normal_text(text, fold=fold)
    if not view.text:
        return
    start = data.draw(st.integers(0, len(view.text) - 1))
    end = data.draw(st.integers(start + 1, len(view.text)))
    first, last = view.span(start, end)
    assert 0 <= first <= last <= len(text)
    before = normal_text(text[:first], fold=fold).text
    after = normal_text(text[last:], fold=fold).text
    assert view.text[:start].startswith(before)
    assert view.text[end:].endswith(after)
    # The original span holds all the span came from.
    assert view.text[start:end].strip() in normal_text(text[first:last], fold=fold).text


@settings(max_examples=300, deadline=None)
@given(text=TEXTS, fold=st.booleans())
def test_spans_are_in_order_and_cover_the_text(text: str, fold: bool) -> None:
    view = normal_text(text, fold=fold)
    spans = [view.span(i, i + 1) for i in range(len(view.text))]
    for (a, b), (c, d) in itertools.pairwise(spans):
        # In order; two overlap only where one original character became
        # several (NFKC's "\u00af" is a space and a combining macron).
        assert a < b
        assert (a, b) <= (c, d)
        assert b <= d
    covered = {i for a, b in spans for i in range(a, b)}
    # What no view character came from was removed: invisible characters only.
    for i in set(range(len(text))) - covered:
        assert normal_text(text[i]).text == "", repr(text[i])


_PLAIN = "abcdefghijklmnopqrstuvw0123456789.,;:!?-_"
_AROUND = st.text(
    alphabet=st.one_of(
        st.sampled_from(_PLAIN),
        st.sampled_from(" \n\t\u00a0\u2003\u200b\u00ad\ufeff\uff41\uff42\u0301\u00e9\u4e2d"),
    ),
    max_size=30,
)
_HIDDEN = st.sampled_from(["", "\u200b", "\u00ad", "\u2060", "\u200b\u200d", "\x00"])


@settings(max_examples=300, deadline=None)
@given(_AROUND, _AROUND, st.text("xyz", min_size=1, max_size=8), st.data())
def test_a_redaction_covers_exactly_the_original_span(
    before: str, after: str, letters: str, data: st.DataObject
) -> None:
    """A word with invisible characters inside, among arbitrary text: the span of
    its view is exactly its original characters, nothing more, nothing less."""
    hidden = [data.draw(_HIDDEN) for _ in letters[1:]]
    word = letters[0] + "".join(h + ch for h, ch in zip(hidden, letters[1:], strict=True))
    text = f"{before} {word} {after}"
    view = normal_text(text)
    start = view.text.index(letters)
    assert view.span(start, start + len(letters)) == (len(before) + 1, len(before) + 1 + len(word))
