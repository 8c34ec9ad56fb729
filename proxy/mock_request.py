"""What an OpenAI-style request asks the mock upstream for, parsed and validated.

Each ``parse_*`` function turns a JSON body into a small frozen job, or raises
:class:`MockAPIError`, which the server renders in OpenAI's error shape.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.mock_text import count_words, echo_text, pseudo_tokens, split_tokens

MAX_N = 8


class MockAPIError(Exception):
    """A request the mock refuses, rendered as ``{"error": {...}}`` with ``status``."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def payload(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": "invalid_request_error",
                "param": self.param,
                "code": self.code,
            }
        }


@dataclass(frozen=True, slots=True)
class Choice:
    """One completion to generate: its tokens and why it ends."""

    tokens: tuple[str, ...]
    finish_reason: str


@dataclass(frozen=True, slots=True)
class GenerationJob:
    """A parsed chat or text completion request."""

    chat: bool
    model: str
    choices: tuple[Choice, ...]
    prompt_tokens: int
    stream: bool
    include_usage: bool

    @property
    def completion_tokens(self) -> int:
        return sum(len(c.tokens) for c in self.choices)

    @property
    def longest(self) -> int:
        return max(len(c.tokens) for c in self.choices)


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
class _Prompt:
    seed: str  # what the pseudo-text is derived from
    echo_source: str | None  # what may start with "echo:"
    tokens: int


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MockAPIError(
            400, f"We could not parse the JSON body of your request: {exc}", code="invalid_json"
        ) from None
    if not isinstance(body, dict):
        raise MockAPIError(400, "The request body must be a JSON object.", code="invalid_type")
    return body


def header_float(headers: Mapping[str, str], name: str, default: float, *, zero_ok: bool) -> float:
    """A numeric override header, or ``default`` when absent."""
    raw = headers.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        bound = "non-negative" if zero_ok else "positive"
        raise MockAPIError(
            400, f"Header {name} must be a {bound} number, got {raw!r}.", code="invalid_header"
        )
    return value


def parse_chat(body: dict[str, Any], model: str, default_max_tokens: int) -> GenerationJob:
    messages = body.get("messages")
    if messages is None:
        raise _missing("messages")
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages", "a non-empty array of messages")
    lines: list[str] = []
    last_user: str | None = None
    words = 0
    for message in messages:
        if not isinstance(message, dict):
            raise _invalid("messages", "a non-empty array of messages")
        text = _content_text(message.get("content"))
        if message.get("role") == "user":
            last_user = text
        lines.append(f"{message.get('role')}: {text}")
        words += count_words(text)
    prompt = _Prompt("\n".join(lines), last_user, words)
    return _job(body, [prompt], chat=True, model=model, default_max_tokens=default_max_tokens)


def parse_completions(body: dict[str, Any], model: str, default_max_tokens: int) -> GenerationJob:
    prompts = [
        _Prompt(p, p, count_words(p)) if isinstance(p, str) else _ids(p) for p in _prompts(body)
    ]
    return _job(body, prompts, chat=False, model=model, default_max_tokens=default_max_tokens)


def parse_embeddings(body: dict[str, Any], model: str, full_dim: int) -> EmbeddingJob:
    raw = body.get("input")
    if raw is None:
        raise _missing("input")
    items: list[str | list[int]]
    if isinstance(raw, str) or (isinstance(raw, list) and raw and all(_is_int(t) for t in raw)):
        items = [raw]
    elif isinstance(raw, list) and raw and all(_is_text_or_ids(x) for x in raw):
        items = raw
    else:
        raise _invalid("input", "a string, an array of strings or an array of token arrays")
    inputs = tuple(
        EmbeddingInput(b"s:" + x.encode(), count_words(x), len(x))
        if isinstance(x, str)
        else EmbeddingInput(b"t:" + orjson.dumps(x), len(x), 4 * len(x))
        for x in items
    )
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise _invalid("encoding_format", "'float' or 'base64'")
    dim = _int_field(body, "dimensions", full_dim, 1, full_dim)
    return EmbeddingJob(_model(body, model), inputs, dim, encoding == "base64")


def _job(
    body: dict[str, Any],
    prompts: list[_Prompt],
    *,
    chat: bool,
    model: str,
    default_max_tokens: int,
) -> GenerationJob:
    n = _int_field(body, "n", 1, 1, MAX_N)
    limit_field = (
        "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    )
    requested = body.get(limit_field)
    length = _int_field(body, limit_field, default_max_tokens, 1, 1 << 20)
    # A request that names a limit gets exactly that many tokens, cut off by it
    # ("length"); otherwise the mock "chooses" to stop at the default length.
    finish = "stop" if requested is None else "length"
    choices: list[Choice] = []
    for prompt in prompts:
        echo = echo_text(prompt.echo_source) if prompt.echo_source is not None else None
        for j in range(n):
            if echo is not None:
                choices.append(Choice(tuple(split_tokens(echo)), "stop"))
            else:
                choices.append(Choice(tuple(pseudo_tokens(f"{prompt.seed}\0{j}", length)), finish))
    options = body.get("stream_options")
    return GenerationJob(
        chat=chat,
        model=_model(body, model),
        choices=tuple(choices),
        prompt_tokens=sum(p.tokens for p in prompts),
        stream=body.get("stream") is True,
        include_usage=isinstance(options, dict) and options.get("include_usage") is True,
    )


def _prompts(body: dict[str, Any]) -> list[str | list[int]]:
    raw = body.get("prompt")
    if raw is None:
        raise _missing("prompt")
    if isinstance(raw, str) or (isinstance(raw, list) and raw and all(_is_int(t) for t in raw)):
        return [raw]
    if isinstance(raw, list) and raw and all(_is_text_or_ids(p) for p in raw):
        return raw
    raise _invalid("prompt", "a string, an array of strings or an array of token arrays")


def _ids(ids: list[int]) -> _Prompt:
    return _Prompt(",".join(map(str, ids)), None, len(ids))


def _content_text(content: object) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return "\n".join(p for p in parts if isinstance(p, str))
    raise _invalid("messages", "messages whose content is a string or an array of parts")


def _model(body: dict[str, Any], default: str) -> str:
    model = body.get("model")
    return model if isinstance(model, str) and model else default


def _int_field(body: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    if not _is_int(value) or not low <= value <= high:
        raise _invalid(name, f"an integer from {low} to {high}")
    return int(value)


def _is_int(value: object) -> bool:
    # bool is an int subclass; JSON true is not a token id or a count.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_text_or_ids(value: object) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and bool(value) and all(_is_int(t) for t in value)
    )


def _missing(param: str) -> MockAPIError:
    return MockAPIError(
        400,
        f"Missing required parameter: '{param}'.",
        param=param,
        code="missing_required_parameter",
    )


def _invalid(param: str, expected: str) -> MockAPIError:
    return MockAPIError(
        400, f"Invalid value for '{param}': expected {expected}.", param=param, code="invalid_value"
    )
