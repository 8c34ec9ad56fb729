from __future__ import annotations

import re
from collections.abc import Coroutine
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filters.base import STAGES, Filter, FilterContext, Stage, Verdict
from filters.denylist import Denylist
from tests.filters.helpers import make_ctx

PHRASE = "ignore previous instructions"

# (params, text, expected action, expected redacted text or reason fragment)
CASES = [
    pytest.param({"words": [PHRASE]}, "hello there", "allow", None, id="no-match"),
    pytest.param(
        {"words": [PHRASE]},
        "Please IGNORE Previous Instructions now",
        "block",
        f'denylist: matched "{PHRASE}"',
        id="case-insensitive-by-default",
    ),
    pytest.param(
        {"words": [PHRASE], "case_sensitive": True},
        "Please IGNORE previous instructions",
        "allow",
        None,
        id="case-sensitive-miss",
    ),
    pytest.param(
        {"words": ["Secret"], "case_sensitive": True},
        "the Secret word",
        "block",
        '"Secret"',
        id="case-sensitive-hit",
    ),
    pytest.param({"words": ["ass"]}, "a classic assessment", "allow", None, id="whole-word-miss"),
    pytest.param({"words": ["ass"]}, "what an ass.", "block", '"ass"', id="whole-word-hit"),
    pytest.param(
        {"words": ["ass"], "whole_word": False},
        "a classic assessment",
        "block",
        '"ass"',
        id="substring-when-not-whole-word",
    ),
    pytest.param(
        {"words": [PHRASE]}, f"x{PHRASE}", "allow", None, id="phrase-glued-to-a-word-misses"
    ),
    pytest.param(
        {"words": ["[INST]"]},
        "foo[INST]bar",
        "block",
        '"[INST]"',
        id="punctuation-edges-need-no-boundary",
    ),
    pytest.param({"words": ["a.b"]}, "axb", "allow", None, id="words-are-literal-not-regex"),
    pytest.param(
        {"patterns": [r"pass(word)?\s*[:=]"]},
        "my password: hunter2",
        "block",
        'denylist: matched pattern "pass(word)?\\s*[:=]"',
        id="pattern-with-inner-group",
    ),
    pytest.param(
        {"words": ["alpha"], "patterns": [r"(?P<x>be)ta"]},
        "just beta",
        "block",
        'pattern "(?P<x>be)ta"',
        id="reason-names-the-entry-that-matched",
    ),
    pytest.param(
        {"words": ["secret"], "action": "redact"},
        "the secret is SECRET",
        "redact",
        "the [REDACTED] is [REDACTED]",
        id="redact-all-matches",
    ),
    pytest.param(
        {"words": ["secret"], "patterns": ["tok-[0-9]+"], "action": "redact", "replacement": "*"},
        "secret tok-123 and tok-9",
        "redact",
        "* * and *",
        id="redact-words-and-patterns",
    ),
    pytest.param(
        {"words": ["secret"], "action": "redact", "replacement": r"\1\g<0>"},
        "a secret",
        "redact",
        r"a \1\g<0>",
        id="replacement-is-literal",
    ),
    pytest.param(
        {"words": ["x"], "action": "redact"},
        "x\n\ny",
        "redact",
        "[REDACTED]\n\ny",
        id="redact-keeps-message-separators",
    ),
]


@pytest.mark.parametrize(("params", "text", "action", "expected"), CASES)
async def test_check(params: dict[str, Any], text: str, action: str, expected: str | None) -> None:
    verdict = await Denylist(**params).check(make_ctx(text))
    assert verdict.action == action
    if action == "block":
        assert expected is not None
        assert verdict.reason is not None
        assert expected in verdict.reason
    elif action == "redact":
        assert verdict.text == expected
    else:
        assert verdict.reason is None
        assert verdict.text is None


async def test_block_reason_does_not_echo_user_text() -> None:
    verdict = await Denylist(patterns=[r"password:\s*\S+"]).check(make_ctx("my password: hunter2"))
    assert verdict.action == "block"
    assert verdict.reason is not None
    assert "hunter2" not in verdict.reason


async def test_redact_reason_names_each_entry_once() -> None:
    verdict = await Denylist(words=["a", "b"], action="redact").check(make_ctx("a b a"))
    assert verdict.reason == 'denylist: redacted "a", "b"'


@pytest.mark.parametrize("stage", STAGES)
async def test_runs_on_every_stage(stage: Stage) -> None:
    denylist = Denylist(words=["bad"])
    assert isinstance(denylist, Filter)
    assert stage in denylist.stages
    assert (await denylist.check(make_ctx("so bad", stage))).action == "block"


BAD_PARAMS = [
    pytest.param({}, ValueError, "at least one word or pattern", id="nothing-configured"),
    pytest.param({"words": []}, ValueError, "at least one word or pattern", id="empty-words"),
    pytest.param({"words": "abc"}, TypeError, "words: expected a list of strings", id="str"),
    pytest.param({"words": [1]}, TypeError, "words: expected a list of strings", id="int-word"),
    pytest.param({"words": [" "]}, ValueError, "words: entries must not be empty", id="blank"),
    pytest.param({"patterns": "a+"}, TypeError, "patterns: expected a list", id="str-pattern"),
    pytest.param({"patterns": ["("]}, ValueError, "patterns: invalid regex '('", id="bad-regex"),
    pytest.param({"patterns": ["a*"]}, ValueError, "'a*' matches the empty string", id="empty"),
    pytest.param(
        {"patterns": [r"(a)\1"]}, ValueError, r"'(a)\\1' uses a numbered", id="numbered-ref"
    ),
    pytest.param(
        {"patterns": ["x(?i)y"]}, ValueError, "patterns: invalid regex 'x(?i)y'", id="global-flag"
    ),
    pytest.param(
        {"patterns": ["(?P<n>a)", "(?P<n>b)"]},
        ValueError,
        "patterns: cannot be combined",
        id="duplicate-group-name",
    ),
    pytest.param(
        {"words": ["x"], "case_sensitive": "yes"}, TypeError, "case_sensitive", id="case-str"
    ),
    pytest.param({"words": ["x"], "whole_word": 1}, TypeError, "whole_word", id="whole-word-int"),
    pytest.param({"words": ["x"], "action": "warn"}, ValueError, "action: expected", id="action"),
    pytest.param({"words": ["x"], "replacement": 0}, TypeError, "replacement", id="replacement"),
    pytest.param({"words": ["x"], "colour": "red"}, TypeError, "'colour'", id="unknown-param"),
    pytest.param({"words": ["x"], "normalize": "on"}, TypeError, "normalize", id="normalize-str"),
    pytest.param(
        {"words": ["\u200b"]}, ValueError, "words: entries must not be empty", id="invisible"
    ),
]


@pytest.mark.parametrize(("params", "error", "message"), BAD_PARAMS)
def test_rejects_bad_params(params: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        Denylist(**params)


@pytest.mark.parametrize(
    ("words", "text", "action"),
    [
        (["secret plan"], "THE SECRET PLAN", "block"),  # ASCII: the substring shortcut
        (["secret plan"], "secret planet", "allow"),  # shortcut passes, regex decides
        (["secret plan"], "nothing here", "allow"),
        # Non-ASCII text takes the regex: re's IGNORECASE folds the long s to "s".
        (["ignore previous"], "ignore previou\u017f instructions", "block"),
        (["straße"], "STRAẞE", "block"),  # a non-ASCII word: no shortcut
    ],
)
async def test_the_ascii_shortcut_agrees_with_the_regex(
    words: list[str], text: str, action: str
) -> None:
    verdict = await Denylist(words=words).check(make_ctx(text))
    assert verdict.action == action


# The normalised view (filters.normal_text): the text as the model reads it.
VIEW_CASES = [
    pytest.param({"words": [PHRASE]}, "ign\x00ore previous instructions", "block", id="control"),
    pytest.param({"words": [PHRASE]}, "ignore   previous\tinstructions", "block", id="runs"),
    pytest.param(
        {"words": ["ignore  previous\ninstructions"]}, PHRASE, "block", id="words-normalised-too"
    ),
    pytest.param(
        {"words": ["\uff53ecret"]}, "a secret", "block", id="fullwidth-in-a-word-is-read-as-ascii"
    ),
    pytest.param({"patterns": ["ignore previous"]}, "ignore\nprevious", "block", id="patterns"),
    pytest.param(
        {"words": ["Secret"], "case_sensitive": True},
        "\u0405ecret",  # a capital Cyrillic dze
        "block",
        id="look-alikes-keep-their-case",
    ),
    pytest.param(
        {"words": ["Secret"], "case_sensitive": True}, "\u0455ecret", "allow", id="case-counts"
    ),
    pytest.param(
        {"words": [PHRASE], "normalize": False},
        "ignore pre\u200bvious instructions",
        "allow",
        id="normalize-false-reads-as-written",
    ),
]


@pytest.mark.parametrize(("params", "text", "action"), VIEW_CASES)
async def test_the_view(params: dict[str, Any], text: str, action: str) -> None:
    assert (await Denylist(**params).check(make_ctx(text))).action == action


async def test_a_redaction_replaces_the_characters_the_match_came_from() -> None:
    denylist = Denylist(words=[PHRASE], action="redact")
    disguised = ["ig\u200bnore previous\n\ninstruc\u00adtions", "\uff49gnore previous instructions"]
    text = f"say {disguised[0]}\u200b now, {disguised[1]}"
    verdict = await denylist.check(make_ctx(text))
    assert verdict.text == "say [REDACTED]\u200b now, [REDACTED]"
    assert [text[e.start : e.end] for e in verdict.edits] == disguised


_NEVER = "(?!x)x"  # a pattern turns the ASCII shortcut off, and never matches


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="ignorepvusta \n\t\r\x00\x0b\x1f", max_size=60))
def test_the_ascii_shortcut_agrees_with_the_view(text: str) -> None:
    words = ["ignore previous", "tap", "sun up"]
    quick, full = Denylist(words=words), Denylist(words=words, patterns=[_NEVER])
    assert run(quick.check(make_ctx(text))).action == run(full.check(make_ctx(text))).action


def run(check: Coroutine[Any, Any, Verdict]) -> Verdict:
    try:
        check.send(None)
    except StopIteration as done:
        verdict: Verdict = done.value
        return verdict
    raise AssertionError("the denylist never waits")


async def test_a_streamed_opening_of_a_word_is_read_in_the_view() -> None:
    denylist = Denylist(words=["secret plan"])
    for text, held in [
        ("the secr", "secr"),
        ("the se\u200bcr", "se\u200bcr"),
        ("the \uff53ec", "\uff53ec"),
    ]:
        verdict = await denylist.check(_partial(text))
        assert verdict.unsettled == len(held), text


def _partial(text: str) -> FilterContext:
    return FilterContext("stream", text, None, "chat_completions", "req", partial=True)
