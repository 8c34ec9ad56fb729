from __future__ import annotations

import re
from typing import Any

import pytest

from filters.base import STAGES, Filter, Stage, apply_edits
from filters.pii import PII_TYPES, Pii
from tests.filters.helpers import make_ctx

# Each type: texts that must be redacted whole, and near misses that must not.
POSITIVES = [
    ("email", "jane.doe+tag@example.co.uk"),
    ("email", "ops@mail-1.example.org"),
    ("phone", "+44 20 7946 0958"),
    ("phone", "+1 (555) 123-4567"),
    ("phone", "+33 1 23 45 67 89"),
    ("phone", "(555) 123-4567"),
    ("phone", "555-123-4567"),
    ("phone", "555.123.4567"),
    ("phone", "1-800-555-1234"),
    ("credit_card", "4111 1111 1111 1111"),
    ("credit_card", "4111-1111-1111-1111"),
    ("credit_card", "4111.1111.1111.1111"),
    ("credit_card", "4111 1111-1111.1111"),
    ("credit_card", "5555555555554444"),
    ("credit_card", "3782 822463 10005"),
    ("ipv4", "192.168.0.1"),
    ("ipv4", "255.255.255.255"),
    ("ipv6", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
    ("ipv6", "2001:db8::1"),
    ("ipv6", "::1"),
    ("ipv6", "fe80::1"),
    ("ipv6", "::ffff:192.0.2.128"),
    ("ssn", "123-45-6789"),
    ("iban", "GB82 WEST 1234 5698 7654 32"),
    ("iban", "GB82WEST12345698765432"),
    ("iban", "DE89 3704 0044 0532 0130 00"),
]

NEAR_MISSES = [
    ("email", "a@b"),
    ("email", "root@localhost"),
    ("phone", "order 5551234567"),  # a bare digit run is an id, not a phone
    ("phone", "call 123-4567"),
    ("phone", "+1 2"),
    ("credit_card", "4111 1111 1111 1112"),  # fails Luhn
    ("credit_card", "order #123456789012345"),  # 15 digits, fails Luhn
    ("credit_card", "0000 0000 0000 0000"),  # passes Luhn, but no issuer starts with 0
    ("credit_card", "41111111111111111111111"),  # too long to be a card
    ("credit_card", "version 4111.1111.1111.1112"),  # dotted, fails Luhn
    ("ipv4", "10.0.0.256"),  # octet out of range
    ("ipv4", "1.2.3"),
    ("ipv4", "1.2.3.4.5"),
    ("ipv6", "at 12:30:45"),  # a time
    ("ipv6", "00:1A:2B:3C:4D:5E"),  # a MAC address
    ("ipv6", "std::vector<int> v(2); Abc::Def(3)"),  # code: hex-looking, no digits
    ("ssn", "000-12-3456"),
    ("ssn", "666-12-3456"),
    ("ssn", "912-34-5678"),
    ("ssn", "123-00-4567"),
    ("ssn", "123-45-0000"),
    ("ssn", "2024-01-15"),  # a date
    ("iban", "GB82 WEST 1234 5698 7654 33"),  # bad mod-97 checksum
    ("iban", "GB82 WES T123 4569 8765 432"),  # not grouped in fours
    ("iban", "gb82 west 1234 5698 7654 32"),  # lowercase is not matched
]


@pytest.mark.parametrize(("kind", "value"), POSITIVES)
async def test_detects_each_type(kind: str, value: str) -> None:
    verdict = await Pii().check(make_ctx(f"see {value} here"))
    assert verdict.action == "redact"
    assert verdict.text == f"see [{kind.upper()}] here"
    assert verdict.reason == f"pii: redacted {kind}"


@pytest.mark.parametrize(("kind", "value"), NEAR_MISSES)
async def test_ignores_near_misses(kind: str, value: str) -> None:
    verdict = await Pii().check(make_ctx(value))
    assert verdict.action == "allow", f"{value!r} was taken for {verdict.reason}"


# (params, text, expected action, expected redacted text or reason)
CASES = [
    pytest.param(
        {},
        "Mail jane@example.com or call 555-123-4567 from 10.0.0.1 with card 4111111111111111.",
        "redact",
        "Mail [EMAIL] or call [PHONE] from [IPV4] with card [CREDIT_CARD].",
        id="several-types",
    ),
    pytest.param(
        {"action": "block"},
        "jane@example.com paid with 4111 1111 1111 1111",
        "block",
        "pii: found email, credit_card",
        id="block-names-types-not-values",
    ),
    pytest.param(
        {"types": ["email"]},
        "jane@example.com 555-123-4567",
        "redact",
        "[EMAIL] 555-123-4567",
        id="types-subset",
    ),
    pytest.param({"types": ["ssn"]}, "jane@example.com", "allow", None, id="subset-ignores-rest"),
    pytest.param(
        {},
        "jane@example.com\n\n555-123-4567\n\nhi",
        "redact",
        "[EMAIL]\n\n[PHONE]\n\nhi",
        id="separators-survive-redaction",
    ),
    pytest.param({}, "555-123\n\n-4567", "allow", None, id="phone-split-by-separator"),
    # The view reads the separator as a space: a number split across two
    # messages is one match, which the chain redacts in each message.
    pytest.param(
        {}, "4111 1111\n\n1111 1111", "redact", "[CREDIT_CARD]", id="card-split-by-separator"
    ),
    pytest.param({}, "jane@example\n\n.com", "allow", None, id="email-split-by-separator"),
    pytest.param(
        {}, "GB82 WEST 1234\n\n5698 7654 32", "redact", "[IBAN]", id="iban-split-by-separator"
    ),
    pytest.param(
        {},
        "+1 4111 1111 1111 1111",
        "redact",
        "+1 [CREDIT_CARD]",
        id="valid-card-wins-over-phone",
    ),
    pytest.param(
        {"types": ["phone"]},
        "+1 4111 1111 1111 1111",
        "redact",
        "[PHONE] 1111",
        id="same-text-is-a-phone-without-cards",
    ),
    pytest.param(
        {}, "ref 123 4111 1111 1111 1111", "redact", "ref 123 [CREDIT_CARD]", id="card-after-group"
    ),
    pytest.param(
        {}, "4111 1111 1111 1111 123", "redact", "[CREDIT_CARD] 123", id="card-before-cvv"
    ),
    pytest.param(
        {}, "IBAN DE89 3704 0044 0532 0130 00 BANK", "redact", "IBAN [IBAN] BANK", id="iban-trim"
    ),
    pytest.param({}, "", "allow", None, id="empty"),
]


@pytest.mark.parametrize(("params", "text", "action", "expected"), CASES)
async def test_check(params: dict[str, Any], text: str, action: str, expected: str | None) -> None:
    verdict = await Pii(**params).check(make_ctx(text))
    assert verdict.action == action
    if action == "block":
        assert verdict.reason == expected
    elif action == "redact":
        assert verdict.text == expected
    else:
        assert verdict == type(verdict).allow()


async def test_block_reason_never_contains_values() -> None:
    text = " ".join(value for _, value in POSITIVES)
    verdict = await Pii(action="block").check(make_ctx(text))
    assert verdict.action == "block"
    assert verdict.reason == f"pii: found {', '.join(PII_TYPES)}"


@pytest.mark.parametrize("stage", STAGES)
async def test_runs_on_every_stage(stage: Stage) -> None:
    pii = Pii()
    assert isinstance(pii, Filter)
    assert stage in pii.stages
    assert (await pii.check(make_ctx("ssn 123-45-6789", stage))).text == "ssn [SSN]"


BAD_PARAMS = [
    pytest.param({"action": "allow"}, ValueError, "action: expected", id="action"),
    pytest.param({"types": "email"}, TypeError, "types: expected a list of strings", id="str"),
    pytest.param({"types": ["email", 3]}, TypeError, "types: expected a list", id="int-type"),
    pytest.param({"types": ["email", "name"]}, ValueError, "types: unknown type 'name'", id="name"),
    pytest.param({"types": []}, ValueError, "types: expected at least one", id="empty-types"),
    pytest.param({"mode": "strict"}, TypeError, "'mode'", id="unknown-param"),
    pytest.param({"normalize": 1}, TypeError, "normalize: expected true or false", id="normalize"),
]


@pytest.mark.parametrize(("params", "error", "message"), BAD_PARAMS)
def test_rejects_bad_params(params: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        Pii(**params)


# The normalised view (filters.normal_text): what is redacted is the original
# characters a match came from; the rest of the text is as it was.
VIEW_CASES = [
    pytest.param({}, "mail ja\u200bne@example.com!", "mail [EMAIL]!", id="zero-width-in-email"),
    pytest.param({}, "jane\uff20example\uff0ecom", "[EMAIL]", id="fullwidth-at-and-dot"),
    pytest.param(
        {}, "a\u200b b jane@exa\u00admple.com\n\nc", "a\u200b b [EMAIL]\n\nc", id="rest-as-is"
    ),
    pytest.param({}, "card 4111\u00a01111\u00a01111\u00a01111.", "card [CREDIT_CARD].", id="nbsp"),
    pytest.param({}, "4111111111111111\u200bx", "[CREDIT_CARD]\u200bx", id="zero-width-edge"),
    pytest.param({}, "IBAN GB82\u00a0WEST 1234\n5698 7654 32", "IBAN [IBAN]", id="iban-nbsp"),
    pytest.param({"normalize": False}, "jane\uff20example.com", None, id="normalize-false"),
]


@pytest.mark.parametrize(("params", "text", "expected"), VIEW_CASES)
async def test_the_view(params: dict[str, Any], text: str, expected: str | None) -> None:
    verdict = await Pii(**params).check(make_ctx(text))
    assert verdict.text == expected
    if expected is not None:  # the edits say where, so the chain can place them per message
        assert apply_edits(text, verdict.edits) == expected
