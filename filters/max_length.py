"""MaxLength: blocks text longer than a character or approximate token limit."""

from __future__ import annotations

from filters.base import FilterContext, Stage, Verdict
from filters.params import integer

# English text averages about four characters per token in BPE tokenizers;
# code, non-Latin scripts and unusual text run denser, so this undercounts them.
_CHARS_PER_TOKEN = 4


def _limit(name: str, value: object) -> int | None:
    if value is None:
        return None
    return integer(name, value, 1, expected="a positive integer")


class MaxLength:
    """Blocks text over ``max_chars`` characters or ``max_tokens`` tokens.

    Tokens are approximated as ``ceil(len(text) / 4)``, not counted with a
    tokenizer. Either limit or both may be set; at least one is required.
    The filter never redacts.
    """

    stages: tuple[Stage, ...] = ("input", "output", "stream")

    def __init__(self, *, max_chars: int | None = None, max_tokens: int | None = None) -> None:
        self._max_chars = _limit("max_chars", max_chars)
        self._max_tokens = _limit("max_tokens", max_tokens)
        if self._max_chars is None and self._max_tokens is None:
            raise ValueError("max_chars, max_tokens: at least one limit is required")

    async def check(self, ctx: FilterContext) -> Verdict:
        chars = len(ctx.text)
        if self._max_chars is not None and chars > self._max_chars:
            return Verdict.block(f"max_length: {chars} characters > {self._max_chars}")
        if self._max_tokens is not None:
            tokens = -(-chars // _CHARS_PER_TOKEN)
            if tokens > self._max_tokens:
                return Verdict.block(f"max_length: ~{tokens} tokens > {self._max_tokens}")
        return Verdict.allow()
