"""Deterministic content for the mock upstream: pseudo-text, echo tokens, embedding vectors.

Everything here is a pure function of its input, so the same request always gets
the same answer and test runs and demos are reproducible.
"""

from __future__ import annotations

import hashlib
import math
import random
import re

# Plain, inoffensive words: the safety filters in front of the mock should see
# ordinary prose and pass it, unless a test deliberately echoes something else.
_WORDS = (
    "the", "model", "server", "answers", "every", "request", "with", "a", "short",
    "and", "friendly", "note", "about", "weather", "gardens", "rivers", "maps",
    "quiet", "bright", "morning", "tea", "books", "music", "simple", "careful",
    "latency", "tokens", "stream", "bridge", "window", "garden", "light", "small",
    "steady", "green", "blue", "paper", "letter", "city", "harbour", "mountain",
    "clear", "calm", "open", "warm", "gentle", "road", "table", "kitchen", "story",
    "today", "often", "always", "near", "under", "over", "between", "through",
    "people", "friends", "ideas", "plans", "questions", "answers", "measured",
)  # fmt: skip

_ECHO_PREFIX = "echo:"

# A token is a run of non-space characters carrying the whitespace before it;
# trailing whitespace sticks to the last token, so joining the tokens gives the
# text back byte for byte.
_TOKEN_RE = re.compile(r"\s*\S+(?:\s+$)?|\s+$")


def _rng(key: str | bytes) -> random.Random:
    # hash() is salted per process; blake2b keeps seeds stable across runs.
    data = key.encode() if isinstance(key, str) else key
    return random.Random(int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big"))


def echo_text(prompt: str) -> str | None:
    """The text to echo back if ``prompt`` starts with ``echo:``, else None.

    One space after the colon is dropped, so ``"echo: hi"`` echoes ``"hi"``.
    """
    if not prompt.startswith(_ECHO_PREFIX):
        return None
    text = prompt[len(_ECHO_PREFIX) :]
    return text[1:] if text.startswith(" ") else text


def split_tokens(text: str) -> list[str]:
    """Split ``text`` into word tokens; ``"".join(split_tokens(t)) == t`` always holds."""
    return _TOKEN_RE.findall(text)


def count_words(text: str) -> int:
    """The mock's token count for a prompt: its whitespace-separated words."""
    return len(text.split())


def pseudo_tokens(seed: str, count: int) -> list[str]:
    """``count`` word tokens of sentence-like text, fixed by ``seed``."""
    rng = _rng(seed)
    tokens: list[str] = []
    left_in_sentence = 0
    for i in range(count):
        word = rng.choice(_WORDS)
        if left_in_sentence == 0:
            left_in_sentence = rng.randint(6, 14)
            word = word.capitalize()
        left_in_sentence -= 1
        if left_in_sentence == 0:
            word += "."
        tokens.append(word if i == 0 else " " + word)
    return tokens


def unit_vector(key: bytes, dim: int) -> list[float]:
    """A unit-length vector of ``dim`` floats fixed by ``key``.

    A shorter ``dim`` gives the renormalised prefix of a longer one (same random
    sequence), which is how OpenAI's ``dimensions`` parameter behaves.
    """
    rng = _rng(key)
    values = [rng.gauss(0.0, 1.0) for _ in range(dim)]
    norm = math.sqrt(math.fsum(v * v for v in values)) or 1.0
    return [v / norm for v in values]
