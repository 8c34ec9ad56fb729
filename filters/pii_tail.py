"""The end of a stream text that could still grow into personal data.

While a stream is arriving, ``"jane.doe@example.c"`` may be an e-mail whose
last letters have not come yet, and ``"4111 1111 1111 11"`` a card. The pii
filter reports such a tail as unsettled: the stream judge holds it back, and
the filter leaves any match in it undecided until more text (or the end of
the stream) shows where it ends. Text before the tail can no longer become
part of a match, so it goes out at once: a prose answer waits for its last
word at most.

Each kind of identifier has the characters it can be made of; the tail is
the longest run of one kind's characters at the end of the text, read as the
model reads it (a zero-width character inside a run does not end it, a
fullwidth at sign is an ``@``), and no longer than that kind's longest match.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Callable
from functools import lru_cache

_INVISIBLE = frozenset(("Cf", "Mn", "Me"))

_EMAIL_CHARS = frozenset(string.ascii_letters + string.digits + "._%+-@")
_NUMBER_CHARS = frozenset(string.digits + " .-()+/")
_NUMBER_STARTS = frozenset(string.digits + "+(")
_IPV6_CHARS = frozenset(string.hexdigits + ":.")
_IBAN_CHARS = frozenset(string.ascii_uppercase + string.digits + " ")
_IBAN_PREFIX = re.compile(r"[A-Z]{1,2}|[A-Z]{2}[0-9]{1,2}|[A-Z]{2}[0-9]{2}[A-Z0-9]{0,30}")

# The longest match of each kind, in visible characters: an address is at
# most 64 + 1 + 255; a card 19 digits in up to five groups; a phone 15 digits
# with separators and parentheses; an IPv6 39 (45 with an IPv4 tail); an IBAN
# 34 in groups of four.
_EMAIL_LONGEST = 320
_NUMBER_LONGEST = 48
_IPV6_LONGEST = 45
_IBAN_LONGEST = 42


@lru_cache(maxsize=4096)
def _as_read(ch: str) -> str:
    """A non-ASCII character as the model reads it: "" when invisible, else NFKC."""
    if unicodedata.category(ch) in _INVISIBLE:
        return ""
    if ch.isspace():
        return " "
    return unicodedata.normalize("NFKC", ch)


def _reversed_run(chars: frozenset[str], longest: int) -> re.Pattern[str]:
    return re.compile(f"[{re.escape(''.join(sorted(chars)))}]{{0,{longest}}}")


_EMAIL_RUN = _reversed_run(_EMAIL_CHARS, _EMAIL_LONGEST)
_NUMBER_RUN = _reversed_run(_NUMBER_CHARS, _NUMBER_LONGEST)
_IPV6_RUN = _reversed_run(_IPV6_CHARS, _IPV6_LONGEST)
_IBAN_RUN = _reversed_run(_IBAN_CHARS, _IBAN_LONGEST)


def _run(
    text: str, allowed: Callable[[str], bool], longest: int, ascii_run: re.Pattern[str]
) -> int:
    """Length of the run at the end of ``text`` whose characters ``allowed`` accepts.

    When the last ``longest`` characters are ASCII, each is read as itself,
    and ``ascii_run`` (``allowed``'s ASCII characters, up to ``longest``)
    matched on them reversed gives the run in one C call: a stream window is
    judged after every token, and this is on its path each time.
    """
    tail = text[-longest:]
    if tail.isascii():
        run = ascii_run.match(tail[::-1])
        return run.end() if run is not None else 0
    i = len(text)
    seen = 0
    while i > 0 and seen < longest:
        ch = text[i - 1]
        read = ch if ch.isascii() else _as_read(ch)
        if read and not all(allowed(c) for c in read):
            break
        seen += 1 if read else 0
        i -= 1
    return len(text) - i


def _email_char(ch: str) -> bool:
    return ch in _EMAIL_CHARS or (not ch.isascii() and ch.isalnum())


def email_tail(text: str) -> int:
    return _run(text, _email_char, _EMAIL_LONGEST, _EMAIL_RUN)


def number_tail(text: str) -> int:
    """Cards, phones, SSNs, IPv4: digits and their separators, opening with a digit, + or (."""
    run = _run(text, _NUMBER_CHARS.__contains__, _NUMBER_LONGEST, _NUMBER_RUN)
    start = len(text) - run
    while start < len(text) and _read(text[start]) not in _NUMBER_STARTS:
        start += 1
    return len(text) - start


def ipv6_tail(text: str) -> int:
    run = _run(text, _IPV6_CHARS.__contains__, _IPV6_LONGEST, _IPV6_RUN)
    return run if ":" in text[len(text) - run :] else 0


def iban_tail(text: str) -> int:
    """The earliest word in the trailing run of capitals, digits and spaces that opens an IBAN."""
    run = _run(text, _IBAN_CHARS.__contains__, _IBAN_LONGEST, _IBAN_RUN)
    tail = text[len(text) - run :]
    for i in range(len(tail)):
        at_word_start = (tail[i - 1] == " ") if i else not _is_word_char(text, len(text) - run - 1)
        if not at_word_start or tail[i] == " ":
            continue
        compact = "".join(_read(c) for c in tail[i:]).replace(" ", "")
        if _IBAN_PREFIX.fullmatch(compact):
            return run - i
    return 0


def _read(ch: str) -> str:
    return ch if ch.isascii() else _as_read(ch)


def _is_word_char(text: str, i: int) -> bool:
    return i >= 0 and (text[i].isalnum() or text[i] == "_")


TAILS: dict[str, Callable[[str], int]] = {
    "email": email_tail,
    "credit_card": number_tail,
    "phone": number_tail,
    "ssn": number_tail,
    "ipv4": number_tail,
    "ipv6": ipv6_tail,
    "iban": iban_tail,
}
