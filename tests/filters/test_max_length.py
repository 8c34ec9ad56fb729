from __future__ import annotations

import re
from typing import Any

import pytest

from filters.base import STAGES, Filter, Stage
from filters.max_length import MaxLength
from tests.filters.helpers import make_ctx

# (params, text, expected action, expected reason)
CASES = [
    pytest.param({"max_chars": 10}, "x" * 10, "allow", None, id="chars-at-limit"),
    pytest.param(
        {"max_chars": 10}, "x" * 11, "block", "max_length: 11 characters > 10", id="chars-over"
    ),
    pytest.param({"max_tokens": 2}, "x" * 8, "allow", None, id="tokens-at-limit"),
    pytest.param(
        {"max_tokens": 2}, "x" * 9, "block", "max_length: ~3 tokens > 2", id="tokens-round-up"
    ),
    pytest.param(
        {"max_chars": 100, "max_tokens": 2}, "x" * 9, "block", "~3 tokens > 2", id="both-tokens"
    ),
    pytest.param(
        {"max_chars": 8, "max_tokens": 100}, "x" * 9, "block", "9 characters > 8", id="both-chars"
    ),
    pytest.param({"max_chars": 1}, "", "allow", None, id="empty"),
    pytest.param(
        {"max_chars": 3}, "\u00e9\u00e9\u00e9\u00e9", "block", "4 characters > 3", id="counts-chars"
    ),
]


@pytest.mark.parametrize(("params", "text", "action", "reason"), CASES)
async def test_check(params: dict[str, Any], text: str, action: str, reason: str | None) -> None:
    verdict = await MaxLength(**params).check(make_ctx(text))
    assert verdict.action == action
    if reason is None:
        assert verdict.reason is None
    else:
        assert verdict.reason is not None
        assert verdict.reason.endswith(reason)
    assert verdict.text is None


@pytest.mark.parametrize("stage", STAGES)
async def test_runs_on_every_stage(stage: Stage) -> None:
    max_length = MaxLength(max_chars=1)
    assert isinstance(max_length, Filter)
    assert stage in max_length.stages
    assert (await max_length.check(make_ctx("ab", stage))).action == "block"


BAD_PARAMS = [
    pytest.param({}, ValueError, "at least one limit is required", id="nothing"),
    pytest.param({"max_chars": None, "max_tokens": None}, ValueError, "at least one", id="nones"),
    pytest.param({"max_chars": 0}, ValueError, "max_chars: expected a positive", id="zero"),
    pytest.param({"max_tokens": -5}, ValueError, "max_tokens: expected a positive", id="negative"),
    pytest.param({"max_chars": True}, TypeError, "max_chars: expected a positive", id="bool"),
    pytest.param({"max_chars": 1.5}, TypeError, "max_chars", id="float"),
    pytest.param({"max_tokens": "10"}, TypeError, "max_tokens", id="str"),
    pytest.param({"max_chars": 10, "max_words": 3}, TypeError, "'max_words'", id="unknown-param"),
]


@pytest.mark.parametrize(("params", "error", "message"), BAD_PARAMS)
def test_rejects_bad_params(params: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        MaxLength(**params)
