"""The pii filter as it was before it tried its regexes at candidate positions
only, kept unchanged as the oracle tests/filters/test_pii_same.py holds the
filter to: the same matches, kinds, redactions and unsettled tails.

It scans each text once per regex, from every position (see the filter's
own docstring for what it detects and how).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence

from filters.base import Edit, FilterContext, Verdict
from filters.normal_text import NormalText, as_written, views, warm_up
from tests.filters.pii_tail_oracle import TAILS

PII_TYPES = ("email", "phone", "credit_card", "ipv4", "ipv6", "ssn", "iban")

Span = tuple[int, int]
Finder = Callable[[str], Iterator[Span]]

_DIGIT = re.compile(r"[0-9]")
_CARD_SEP = re.compile("[ .-]")
_PHONE_SEP = re.compile("[ .-]")
_LUHN_DOUBLE = str.maketrans("0123456789", "0246813579")
_EMAIL = re.compile(
    r"(?<![\w.%+-])[\w.%+-]{1,64}@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,63}(?![\w-])"
)
# International numbers start with "+"; North American ones need separators, so
# a bare run of digits (an order id, a card, an account) is never a phone.
_PHONE_INTL = re.compile(r"(?<![\w+])\+[1-9][0-9]*(?:(?:[ .-]|[ .-]?\([0-9]{1,4}\)[ .-]?)[0-9]+)*")
_PHONE_NANP = re.compile(
    r"(?<![\w+.-])(?<![0-9][ .])(?:1[ .-])?(?:\([2-9][0-9]{2}\)[ .-]?|[2-9][0-9]{2}[ .-])"
    r"[0-9]{3}[ .-][0-9]{4}(?![\w-]|[ .][0-9])"
)
# Cards are written unbroken or in the issuers' groupings (4-4-4-4, 4-4-4-4-3,
# Amex 4-6-5, Diners 4-6-4), always opening with four digits, the groups
# separated by spaces, dashes or dots, mixed or not.
_CARD = re.compile(r"(?<![\w+.])(?:[0-9]{13,19}|[0-9]{4}(?:[ .-][0-9]{3,6}){2,4})(?!\w)")
_SSN = re.compile(r"(?<![\w-])(?!000|666|9)[0-9]{3}-(?!00)[0-9]{2}-(?!0000)[0-9]{4}(?![\w-])")
_IBAN = re.compile(r"(?<!\w)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}(?!\w)")

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_V4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_IPV4 = re.compile(rf"(?<![\w.]){_V4}(?!\w|\.[0-9])")
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
# such as 12:30:45 or a MAC address never matches. The leading lookahead is
# only there for speed: it rejects most positions before the alternation runs.
_IPV6 = re.compile(rf"(?<![\w:.])(?=[0-9A-Fa-f]{{0,4}}:)(?:{'|'.join(_V6_FORMS)})(?![\w:]|\.[0-9])")


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


def _card_length(token: str) -> int:
    for length, digits in _cuts(token, _CARD_SEP):
        if len(digits) > 19:
            continue
        if len(digits) < 13:
            break
        # Zero-padded ids pass Luhn trivially; no issuer number starts with 0.
        if digits[0] != "0" and _luhn(digits):
            return length
    return 0


def _iban_length(token: str) -> int:
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


def _phone_length(token: str) -> int:
    for length, kept in _cuts(token, _PHONE_SEP):
        if 8 <= sum(ch.isdigit() for ch in kept) <= 15:  # E.164 allows at most 15
            return length
    return 0


def _scan(regex: re.Pattern[str], length: Callable[[str], int]) -> Finder:
    """A finder that keeps the longest valid prefix of each regex match.

    A rejected match is retried one character on, so a valid number that
    follows a stray group ("ref 123 4111 1111 1111 1111") is still found.
    """

    def find(text: str) -> Iterator[Span]:
        pos = 0
        while (match := regex.search(text, pos)) is not None:
            start = match.start()
            n = length(match.group())
            if n:
                yield start, start + n
            pos = start + (n or 1)

    return find


def _plain(regex: re.Pattern[str]) -> Finder:
    return lambda text: (m.span() for m in regex.finditer(text))


_intl_phones = _scan(_PHONE_INTL, _phone_length)
_nanp_phones = _plain(_PHONE_NANP)


def _phones(text: str) -> Iterator[Span]:
    yield from _intl_phones(text)
    yield from _nanp_phones(text)


def _ipv6s(text: str) -> Iterator[Span]:
    # Real addresses carry digits; "Abc::Def" in C++ or Rust code does not.
    return (m.span() for m in _IPV6.finditer(text) if _DIGIT.search(m.group()))


# Kind -> (a substring every match contains, finder), in overlap priority: a
# span already claimed by an earlier kind is not reported again, so a valid
# card or IBAN is never also a phone and an IPv6's embedded IPv4 is not an IPv4.
_DETECTORS: dict[str, tuple[str, Finder]] = {
    "email": ("@", _plain(_EMAIL)),
    "iban": ("", _scan(_IBAN, _iban_length)),
    "credit_card": ("", _scan(_CARD, _card_length)),
    "ssn": ("-", _plain(_SSN)),
    "ipv6": (":", _ipv6s),
    "ipv4": (".", _plain(_IPV4)),
    "phone": ("", _phones),
}
_PLACEHOLDERS = {kind: f"[{kind.upper()}]" for kind in PII_TYPES}


class Pii:
    """Redacts (or blocks on) emails, phones, cards, IPs, SSNs and IBANs.

    ``types`` limits detection to a subset of :data:`PII_TYPES`. Redaction
    replaces each match with a placeholder such as ``[EMAIL]``; reasons name
    the types found, never the values. ``normalize`` (default true) matches
    the normalised view of the text.
    """

    stages: tuple[str, ...] = ("input", "output", "stream")

    def __init__(
        self, *, action: str = "redact", types: Sequence[str] = PII_TYPES, normalize: bool = True
    ) -> None:
        if action not in ("redact", "block"):
            raise ValueError(f'action: expected "redact" or "block", got {action!r}')
        if not isinstance(types, list | tuple) or not all(isinstance(t, str) for t in types):
            raise TypeError("types: expected a list of strings")
        for kind in types:
            if kind not in PII_TYPES:
                raise ValueError(f"types: unknown type {kind!r}; known: {', '.join(PII_TYPES)}")
        if not types:
            raise ValueError("types: expected at least one type")
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize: expected true or false, got {normalize!r}")
        self._normalize = normalize
        if normalize:
            warm_up()
        self._block = action == "block"
        self._detectors = tuple(
            (kind, marker, find) for kind, (marker, find) in _DETECTORS.items() if kind in types
        )
        self._tails = tuple({TAILS[kind] for kind in types})

    def _find(
        self, text: str, shadowed: list[tuple[int, int]] | None = None
    ) -> list[tuple[int, int, str]]:
        """Non-overlapping (start, end, kind) matches, sorted by start.

        ``shadowed`` gets the span of each match an overlapping one of an
        earlier kind set aside: in a stream, that earlier match may not last
        (``0958::`` is an IPv6 only until a third ``:`` comes), and the one
        it hides must be held back with it.
        """
        has_digit = _DIGIT.search(text) is not None
        starts: list[int] = []
        found: list[tuple[int, int, str]] = []
        for kind, marker, find in self._detectors:
            # Cheap substring tests skip whole regex scans; every kind but
            # email contains a digit.
            if marker not in text or (kind != "email" and not has_digit):
                continue
            for start, end in find(text):
                i = bisect_right(starts, start)
                if (i and found[i - 1][1] > start) or (i < len(starts) and starts[i] < end):
                    if shadowed is not None:
                        shadowed.append((start, end))
                    continue
                starts.insert(i, start)
                found.insert(i, (start, end, kind))
        return found

    def _found(
        self, text: str, shadowed: list[tuple[int, int]] | None = None
    ) -> list[tuple[int, int, str]]:
        """The matches in every view, as spans of ``text``; the first view's win overlaps.

        ``shadowed`` gets the spans of ``text`` of the matches set aside (see _find).
        """
        seen: tuple[NormalText, ...] = views(text) if self._normalize else (as_written(text),)
        found: list[tuple[int, int, str]] = []
        for view in seen:
            hidden: list[tuple[int, int]] | None = [] if shadowed is not None else None
            for start, end, kind in self._find(view.text, hidden):
                start, end = view.span(start, end)
                if not any(start < e and s < end for s, e, _ in found):
                    found.append((start, end, kind))
                elif shadowed is not None:
                    shadowed.append((start, end))
            if shadowed is not None and hidden:
                shadowed += [view.span(start, end) for start, end in hidden]
        found.sort()
        return found

    def unsettled(self, text: str) -> int:
        """The end of ``text`` that could still grow into personal data (see filters.pii_tail)."""
        return max(tail(text) for tail in self._tails)

    async def check(self, ctx: FilterContext) -> Verdict:
        text = ctx.text
        shadowed: list[tuple[int, int]] | None = [] if ctx.partial else None
        found = self._found(text, shadowed)
        unsettled: int | None = None
        if ctx.partial:
            # A match reaching into the tail may not be whole yet: it is decided
            # once more text shows where it ends, and held back until then, with
            # any match it hides that reaches into it.
            cut = len(text) - self.unsettled(text)
            held = [start for start, end, _ in found if end > cut]
            first_held = min(held, default=cut)
            hidden = [start for start, end in shadowed or () if end > first_held]
            cut = min([cut, *held, *hidden])
            decided = [f for f in found if f[1] <= cut]
            found, unsettled = decided, len(text) - cut
        if not found:
            return Verdict.allow(unsettled)
        present = {kind for _, _, kind in found}
        kinds = ", ".join(kind for kind in PII_TYPES if kind in present)
        if self._block:
            return Verdict.block(f"pii: found {kinds}")
        edits = [Edit(start, end, _PLACEHOLDERS[kind]) for start, end, kind in found]
        return Verdict.redact_spans(text, edits, f"pii: redacted {kinds}", unsettled)
