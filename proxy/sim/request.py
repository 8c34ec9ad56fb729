"""What a request asks the mock upstream to generate, parsed and validated.

Each ``parse_*`` function turns a JSON body into a small frozen job, or raises
:class:`~proxy.sim.fields.MockAPIError`. Every generating API reads its
prompt as a conversation (:func:`conversation`), so the same turns get the
same answer on chat completions, the Responses API and the Messages API.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from proxy.sim.fields import int_field, invalid, is_int, missing, model_name
from proxy.sim.text import count_words, echo_text, pseudo_tokens, split_tokens

MAX_N = 8


@dataclass(frozen=True, slots=True)
class Choice:
    """One completion to generate: its tokens and why it ends."""

    tokens: tuple[str, ...]
    finish_reason: str  # OpenAI's words: "stop", or "length" when cut by a limit


@dataclass(frozen=True, slots=True)
class GenerationJob:
    """A parsed generation request: chat, text completion, Responses or Messages."""

    chat: bool
    model: str
    choices: tuple[Choice, ...]
    prompt_tokens: int
    stream: bool
    include_usage: bool
    # Request fields the answer repeats back (the Responses API's settings).
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def completion_tokens(self) -> int:
        return sum(len(c.tokens) for c in self.choices)

    @property
    def longest(self) -> int:
        return max(len(c.tokens) for c in self.choices)

    @property
    def last_step(self) -> int:
        """The step of the last token, when the answer is complete."""
        return max(self.longest - 1, 0)


@dataclass(frozen=True, slots=True)
class EmbeddingInput:
    key: bytes
    tokens: int
    chars: int


@dataclass(frozen=True, slots=True)
class EmbeddingJob:
    model: str
    inputs: tuple[EmbeddingInput, ...]
    dim: int
    base64: bool


@dataclass(frozen=True, slots=True)
class Prompt:
    """What the pseudo-text is derived from, what may start with ``echo:``, its tokens."""

    seed: str
    echo_source: str | None
    tokens: int


def conversation(turns: Iterable[tuple[object, str]]) -> Prompt:
    """The prompt of (role, text) turns; the last user turn is what an ``echo:`` is read from."""
    lines: list[str] = []
    last_user: str | None = None
    words = 0
    for role, text in turns:
        if role == "user":
            last_user = text
        lines.append(f"{role}: {text}")
        words += count_words(text)
    return Prompt("\n".join(lines), last_user, words)


def content_text(content: object, param: str) -> str:
    """A message's text: a string, or the ``text`` of each part that has one."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        return "\n".join(p for p in parts if isinstance(p, str))
    raise invalid(param, "messages whose content is a string or an array of parts")


def parse_chat(body: dict[str, Any], model: str, default_max_tokens: int) -> GenerationJob:
    messages = body.get("messages")
    if messages is None:
        raise missing("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages", "a non-empty array of messages")
    turns: list[tuple[object, str]] = []
    for message in messages:
        if not isinstance(message, dict):
            raise invalid("messages", "a non-empty array of messages")
        turns.append((message.get("role"), content_text(message.get("content"), "messages")))
    prompt = conversation(turns)
    return _job(body, [prompt], chat=True, model=model, default_max_tokens=default_max_tokens)


def parse_completions(body: dict[str, Any], model: str, default_max_tokens: int) -> GenerationJob:
    prompts = [
        Prompt(p, p, count_words(p)) if isinstance(p, str) else _ids(p) for p in _prompts(body)
    ]
    return _job(body, prompts, chat=False, model=model, default_max_tokens=default_max_tokens)


def parse_embeddings(body: dict[str, Any], model: str, full_dim: int) -> EmbeddingJob:
    raw = body.get("input")
    if raw is None:
        raise missing("input")
    items: list[str | list[int]]
    if isinstance(raw, str) or (isinstance(raw, list) and raw and all(is_int(t) for t in raw)):
        items = [raw]
    elif isinstance(raw, list) and raw and all(_is_text_or_ids(x) for x in raw):
        items = raw
    else:
        raise invalid("input", "a string, an array of strings or an array of token arrays")
    inputs = tuple(
        EmbeddingInput(b"s:" + x.encode(), count_words(x), len(x))
        if isinstance(x, str)
        else EmbeddingInput(b"t:" + orjson.dumps(x), len(x), 4 * len(x))
        for x in items
    )
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise invalid("encoding_format", "'float' or 'base64'")
    dim = int_field(body, "dimensions", full_dim, 1, full_dim)
    return EmbeddingJob(model_name(body, model), inputs, dim, encoding == "base64")


def one_answer(
    body: dict[str, Any],
    prompt: Prompt,
    limit_field: str,
    *,
    model: str,
    default_length: int,
    params: Mapping[str, Any] | None = None,
) -> GenerationJob:
    """A job of one answer, of the default length or cut short by a smaller limit.

    The Responses and Messages APIs read their limit as a ceiling (Messages
    requires one), not as the length to write: asking for up to 4096 tokens
    does not make the simulated model talk for a minute and a half.
    """
    limit = int_field(body, limit_field, default_length, 1, 1 << 20)
    finish = "length" if limit < default_length else "stop"
    return GenerationJob(
        chat=True,
        model=model,
        choices=(_answer(prompt, 0, min(limit, default_length), finish),),
        prompt_tokens=prompt.tokens,
        stream=body.get("stream") is True,
        include_usage=False,
        params=params or {},
    )


def _job(
    body: dict[str, Any],
    prompts: list[Prompt],
    *,
    chat: bool,
    model: str,
    default_max_tokens: int,
) -> GenerationJob:
    n = int_field(body, "n", 1, 1, MAX_N)
    limit_field = (
        "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    )
    requested = body.get(limit_field)
    length = int_field(body, limit_field, default_max_tokens, 1, 1 << 20)
    # A request that names a limit gets exactly that many tokens, cut off by it
    # ("length"); otherwise the mock "chooses" to stop at the default length.
    finish = "stop" if requested is None else "length"
    choices = [_answer(prompt, j, length, finish) for prompt in prompts for j in range(n)]
    options = body.get("stream_options")
    return GenerationJob(
        chat=chat,
        model=model_name(body, model),
        choices=tuple(choices),
        prompt_tokens=sum(p.tokens for p in prompts),
        stream=body.get("stream") is True,
        include_usage=isinstance(options, dict) and options.get("include_usage") is True,
    )


def _answer(prompt: Prompt, j: int, length: int, finish: str) -> Choice:
    """Answer ``j`` to ``prompt``: an echo sets its own length and always stops."""
    echo = echo_text(prompt.echo_source) if prompt.echo_source is not None else None
    if echo is not None:
        return Choice(tuple(split_tokens(echo)), "stop")
    return Choice(tuple(pseudo_tokens(f"{prompt.seed}\0{j}", length)), finish)


def _prompts(body: dict[str, Any]) -> list[str | list[int]]:
    raw = body.get("prompt")
    if raw is None:
        raise missing("prompt")
    if isinstance(raw, str) or (isinstance(raw, list) and raw and all(is_int(t) for t in raw)):
        return [raw]
    if isinstance(raw, list) and raw and all(_is_text_or_ids(p) for p in raw):
        return raw
    raise invalid("prompt", "a string, an array of strings or an array of token arrays")


def _ids(ids: list[int]) -> Prompt:
    return Prompt(",".join(map(str, ids)), None, len(ids))


def _is_text_or_ids(value: object) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and bool(value) and all(is_int(t) for t in value)
    )
