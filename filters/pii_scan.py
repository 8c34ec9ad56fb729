"""Where in a text personal data can start, found in one pass, and the finders
that try each kind's regex there only.

Every kind but email contains an ASCII digit, and every one of those opens
at a known distance before the start of a run of digits (a card, SSN, IPv4
or North American phone at it; an international phone one ``+`` before it;
a parenthesised area code one ``(`` before it; an IBAN two capitals before
it); an IPv6 opens at the start of the run of hex digits before one of its
colons, an email at the start of the run of address characters before its
``@``. So a text's digit runs, colons and ``@`` signs give every position a
match can start at. Most are ruled out by the length of their run and the
character after it (an SSN needs a run of three and a ``-``), each rule read
off its regex; the regex itself is then tried at the rest
(``pattern.match(text, pos)``, which sees the characters before ``pos`` as a
search would), in the order a search would reach them, so each finder
returns what a search over the whole text returns.

Runs of digits are found with a bytes translation (digits to ``0``, all else
to a space) and ``bytes.find``, both in C; Python work is per run, not per
character.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable

from filters.pii_patterns import (
    CARD,
    DIGIT,
    EMAIL,
    IBAN,
    IPV4,
    IPV6,
    PHONE_INTL,
    PHONE_NANP,
    SSN,
    card_length,
    iban_length,
    phone_length,
)

Span = tuple[int, int]

# One byte per character (``encode("ascii", "replace")`` keeps positions):
# ASCII digits read "0", everything else " ".
_DIGITS_ONLY = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
_SEPARATORS = frozenset(" .-")
_CAPITALS = frozenset(string.ascii_uppercase)
_OPENERS = _CAPITALS | {"+", "("}  # what a match may open with one before a digit run
_HEX = frozenset(string.hexdigits)
# The run of address characters before an "@", read backwards, up to one more
# than a local part may have (so that a longer run is seen to be one).
_LOCAL_REVERSED = re.compile(r"[\w.%+-]{0,65}")


class Starts:
    """Candidate start positions of each kind's matches, in ascending order."""

    __slots__ = ("card", "digits", "email", "iban", "intl", "ipv4", "ipv6", "nanp", "ssn")

    def __init__(self) -> None:
        self.digits = False  # the text has an ASCII digit
        self.card: list[int] = []
        self.ssn: list[int] = []
        self.ipv4: list[int] = []
        self.nanp: list[int] = []
        self.intl: list[int] = []
        self.iban: list[int] = []
        self.ipv6: list[int] = []
        self.email: list[int] = []


def starts(text: str) -> Starts:
    """Every position of ``text`` a match of each kind can start at (and a few more)."""
    found = Starts()
    _digit_runs(text, found)
    if found.digits and ":" in text:
        _colons(text, found.ipv6)
    if "@" in text:
        _at_signs(text, found.email)
    return found


def _digit_runs(text: str, found: Starts) -> None:
    # The loop runs once per run of digits; its tests go from the most to the
    # least likely to rule a run out (prose has runs followed by a space).
    marks = text.encode("ascii", "replace").translate(_DIGITS_ONLY)
    find = marks.find
    start = find(b"0")
    if start < 0:
        return
    found.digits = True
    size = len(text)
    card, nanp, ssn, ipv4 = found.card, found.nanp, found.ssn, found.ipv4
    openers, separators = _OPENERS, _SEPARATORS
    while start >= 0:
        end = find(b" ", start)
        if end < 0:
            end = size
        run = end - start
        after = text[end : end + 1]  # "" at the end
        before = text[start - 1 : start] if start else ""
        if before in openers:
            if before == "+":
                found.intl.append(start - 1)  # \+[1-9]
            elif before == "(" and run == 3 and after == ")":
                nanp.append(start - 1)  # \([2-9][0-9]{2}\)
            elif run >= 2 and start >= 2 and before in _CAPITALS and text[start - 2] in _CAPITALS:
                found.iban.append(start - 2)  # [A-Z]{2}[0-9]{2}
        if after in separators and run <= 4:
            if run == 4:
                card.append(start)  # [0-9]{4}[ .-]
            elif run != 2:
                nanp.append(start)  # 1[ .-] or [2-9][0-9]{2}[ .-]
            if after == "-":
                if run == 3:
                    ssn.append(start)  # [0-9]{3}-
            elif after == "." and run <= 3:
                ipv4.append(start)  # an octet and a dot
        elif 13 <= run <= 19:
            card.append(start)  # [0-9]{13,19}(?!\w)
        start = find(b"0", end)


def _colons(text: str, out: list[int]) -> None:
    """An IPv6 opens with at most four hex digits and a colon, after no word character."""
    colon = text.find(":")
    while colon >= 0:
        first = colon
        while first > 0 and colon - first < 5 and text[first - 1] in _HEX:
            first -= 1
        if colon - first <= 4:
            out.append(first)
        colon = text.find(":", colon + 1)


def _at_signs(text: str, out: list[int]) -> None:
    """An email's local part is the whole run of address characters before its "@"."""
    at = text.find("@")
    while at >= 0:
        before = _LOCAL_REVERSED.match(text[max(0, at - 65) : at][::-1])
        run = before.end() if before is not None else 0  # it always matches, if empty
        if 0 < run <= 64:
            out.append(at - run)
        at = text.find("@", at + 1)


def _plain(regex: re.Pattern[str], text: str, at: list[int]) -> list[Span]:
    """What ``regex.finditer(text)`` finds, trying only the positions ``at``."""
    found: list[Span] = []
    pos = 0
    for start in at:
        if start >= pos and (match := regex.match(text, start)) is not None:
            pos = match.end()
            found.append((start, pos))
    return found


def _checked(
    regex: re.Pattern[str], length: Callable[[str], int], text: str, at: list[int]
) -> list[Span]:
    """The longest valid prefix of each match, trying only the positions ``at``.

    A rejected match is retried one character on, so a valid number that
    follows a stray group ("ref 123 4111 1111 1111 1111") is still found.
    """
    found: list[Span] = []
    pos = 0
    for start in at:
        if start < pos or (match := regex.match(text, start)) is None:
            continue
        n = length(match.group())
        if n:
            found.append((start, start + n))
        pos = start + (n or 1)
    return found


def _ipv6s(text: str, at: Starts) -> list[Span]:
    # Real addresses carry digits; "Abc::Def" in C++ or Rust code does not.
    found = _plain(IPV6, text, at.ipv6) if at.ipv6 else []
    return [(start, end) for start, end in found if DIGIT.search(text, start, end) is not None]


def _phones(text: str, at: Starts) -> list[Span]:
    found = _checked(PHONE_INTL, phone_length, text, at.intl) if at.intl else []
    return found + _plain(PHONE_NANP, text, at.nanp) if at.nanp else found


Finder = Callable[[str, Starts], list[Span]]

# Kind -> finder, in overlap priority: a span already claimed by an earlier
# kind is not reported again, so a valid card or IBAN is never also a phone
# and an IPv6's embedded IPv4 is not an IPv4.
FINDERS: dict[str, Finder] = {
    "email": lambda text, at: _plain(EMAIL, text, at.email),
    "iban": lambda text, at: _checked(IBAN, iban_length, text, at.iban),
    "credit_card": lambda text, at: _checked(CARD, card_length, text, at.card),
    "ssn": lambda text, at: _plain(SSN, text, at.ssn),
    "ipv6": _ipv6s,
    "ipv4": lambda text, at: _plain(IPV4, text, at.ipv4),
    "phone": _phones,
}
