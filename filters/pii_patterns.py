"""The shapes of the personal data pii finds: one regex per kind, and the checks
(Luhn, ISO 7064 mod-97, E.164 length) a match must pass.

A regex here is never run over a whole text: :mod:`filters.pii_scan` finds
the few positions a match can start at and tries it there. Each regex opens
with a lookbehind, which keeps Python's engine from skipping ahead to the
characters a match opens with, so a search tries (and fails) at every
position of the text, once per kind; trying only the candidates makes the
cost follow the digits, ``@`` and ``:`` in the text instead of its length.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

DIGIT = re.compile(r"[0-9]")
_CARD_SEP = re.compile("[ .-]")
_LUHN_DOUBLE = str.maketrans("0123456789", "0246813579")

EMAIL = re.compile(
    r"(?<![\w.%+-])[\w.%+-]{1,64}@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,63}(?![\w-])"
)
# International numbers start with "+"; North American ones need separators, so
# a bare run of digits (an order id, a card, an account) is never a phone.
PHONE_INTL = re.compile(r"(?<![\w+])\+[1-9][0-9]*(?:(?:[ .-]|[ .-]?\([0-9]{1,4}\)[ .-]?)[0-9]+)*")
PHONE_NANP = re.compile(
    r"(?<![\w+.-])(?<![0-9][ .])(?:1[ .-])?(?:\([2-9][0-9]{2}\)[ .-]?|[2-9][0-9]{2}[ .-])"
    r"[0-9]{3}[ .-][0-9]{4}(?![\w-]|[ .][0-9])"
)
# Cards are written unbroken or in the issuers' groupings (4-4-4-4, 4-4-4-4-3,
# Amex 4-6-5, Diners 4-6-4), always opening with four digits, the groups
# separated by spaces, dashes or dots, mixed or not.
CARD = re.compile(r"(?<![\w+.])(?:[0-9]{13,19}|[0-9]{4}(?:[ .-][0-9]{3,6}){2,4})(?!\w)")
SSN = re.compile(r"(?<![\w-])(?!000|666|9)[0-9]{3}-(?!00)[0-9]{2}-(?!0000)[0-9]{4}(?![\w-])")
IBAN = re.compile(r"(?<!\w)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}(?!\w)")

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_V4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
IPV4 = re.compile(rf"(?<![\w.]){_V4}(?!\w|\.[0-9])")
_H = r"[0-9A-Fa-f]{1,4}"
_V6_FORMS = (
    rf"(?:{_H}:){{7}}{_H}",
    rf"(?:{_H}:){{1,7}}:",
    rf"(?:{_H}:){{1,6}}:{_H}",
    rf"(?:{_H}:){{1,5}}(?::{_H}){{1,2}}",
    rf"(?:{_H}:){{1,4}}(?::{_H}){{1,3}}",
    rf"(?:{_H}:){{1,3}}(?::{_H}){{1,4}}",
    rf"(?:{_H}:){{1,2}}(?::{_H}){{1,5}}",
    rf"{_H}:(?::{_H}){{1,6}}",
    rf":(?::{_H}){{1,7}}",
    rf"(?:{_H}:){{6}}{_V4}",
    rf"(?:{_H}:){{1,5}}:{_V4}",
    rf"::(?:[Ff]{{4}}(?::0{{1,4}})?:)?{_V4}",
)
# Every compressed form needs "::" and the full form eight groups, so a time
# such as 12:30:45 or a MAC address never matches. The leading lookahead
# rejects most positions before the alternation runs.
IPV6 = re.compile(rf"(?<![\w:.])(?=[0-9A-Fa-f]{{0,4}}:)(?:{'|'.join(_V6_FORMS)})(?![\w:]|\.[0-9])")


def _cuts(token: str, seps: re.Pattern[str]) -> Iterator[tuple[int, str]]:
    """Yield (length, text without separators) for ``token`` and each shorter
    prefix of it that ends at a separator, longest first."""
    groups = seps.split(token)
    for n in range(len(groups), 0, -1):
        kept = groups[:n]
        yield sum(map(len, kept)) + n - 1, "".join(kept)  # separators are one character


def _luhn(digits: str) -> bool:
    reverse = digits[::-1]
    doubled = reverse[1::2].translate(_LUHN_DOUBLE)
    return (sum(map(int, reverse[::2])) + sum(map(int, doubled))) % 10 == 0


def card_length(token: str) -> int:
    """The longest prefix of a card match that is a card (0: none)."""
    for length, digits in _cuts(token, _CARD_SEP):
        if len(digits) > 19:
            continue
        if len(digits) < 13:
            break
        # Zero-padded ids pass Luhn trivially; no issuer number starts with 0.
        if digits[0] != "0" and _luhn(digits):
            return length
    return 0


def iban_length(token: str) -> int:
    """The longest prefix of an IBAN match that passes mod-97 (0: none)."""
    groups = token.split(" ")
    for n in range(len(groups), 0, -1):
        compact = "".join(groups[:n])
        if len(compact) < 15:
            break
        spaced_in_fours = all(len(g) == 4 for g in groups[: n - 1]) and len(groups[n - 1]) <= 4
        if len(compact) > 34 or (n > 1 and not spaced_in_fours):
            continue
        rotated = compact[4:] + compact[:4]
        if int("".join(str(int(ch, 36)) for ch in rotated)) % 97 == 1:
            return len(compact) + n - 1
    return 0


def phone_length(token: str) -> int:
    """The longest prefix of a PHONE_INTL match with 8 to 15 digits (0: none).

    The prefixes tried are those :func:`_cuts` gives (the token, then each
    shorter one ending before a separator); a match is made of digits,
    separators, "+", "(" and ")", so counting the rest counts its digits.
    """
    length = len(token)
    while True:
        part = token[:length]
        digits = length - sum(map(part.count, "+() .-"))
        if 8 <= digits <= 15:  # E.164 allows at most 15
            return length
        length = max(part.rfind(" "), part.rfind("."), part.rfind("-"))
        if length < 0:
            return 0
