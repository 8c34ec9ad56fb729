"""OpenAI (legacy) completions and embeddings: a prompt or input of strings or tokens.

Token ids carry text no text filter can read: they are counted as
uninspected parts of kind ``tokens`` (and refused with ``uninspected: block``).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from proxy.surfaces.base import (
    AnswerPart,
    Prompt,
    StreamCodec,
    StreamStep,
    Surface,
    TextRef,
    Usage,
    usage_of,
)
from proxy.surfaces.chat import (
    ANSWER_KEYS,
    OPENAI_OPAQUE,
    Chat,
    ChoiceStream,
    _delta_at,
    _tokens_dropper,
    choice_finish_reasons,
)
from proxy.surfaces.unheard_of import drop_unheard_of, unheard_of

_CHAT = Chat()  # stateless: vLLM's embeddings of chat messages are read as its

# A choice's keys with no text but its own (vLLM gives the prompt's tokens per choice).
_CHOICE_KEYS = frozenset({
    "index", "text", "finish_reason", "logprobs", "stop_reason", "token_ids", "matched_stop",
    "prompt_logprobs", "prompt_token_ids",
})  # fmt: skip


def _strings_or_tokens(holder: dict[str, Any], key: str, prompt: Prompt) -> bool:
    """The texts of ``holder[key]``: a string, or a list of strings and token lists."""
    value = holder.get(key)
    if isinstance(value, str):
        prompt.texts.append(TextRef(holder, key))
        return True
    if not isinstance(value, list):
        return False
    tokens = False
    for i, item in enumerate(value):
        if isinstance(item, str):
            prompt.texts.append(TextRef(value, i))
        elif isinstance(item, int | list):
            tokens = True
        else:
            return False
    if tokens:
        prompt.uninspected.append("tokens")
    return True


class Completions(Surface):
    label = "completions"
    needs = "prompt"
    answer_opaque = OPENAI_OPAQUE
    prompt_swept = ("prompt",)  # llama.cpp tokenizes strings in nested lists too

    def prompt(self, body: Any) -> Prompt | None:
        if not isinstance(body, dict):
            return None
        prompt = Prompt()
        if body.get("prompt") is None and body.get("prompt_embeds") is not None:
            prompt.uninspected.append("embeddings")  # vLLM: the prompt as vectors
            return prompt
        if not _strings_or_tokens(body, "prompt", prompt):
            return None
        if isinstance(body.get("suffix"), str):
            prompt.texts.append(TextRef(body, "suffix"))
        if body.get("prompt_embeds") is not None:
            prompt.uninspected.append("embeddings")  # vLLM: the prompt as vectors
        return prompt

    def answer(self, body: Any) -> list[AnswerPart] | None:
        choices = body.get("choices") if isinstance(body, dict) else None
        if not isinstance(choices, list):
            return None
        parts: list[AnswerPart] = []
        for choice in choices:
            if not isinstance(choice, dict) or not isinstance(choice.get("text"), str):
                return None
            found = Prompt([TextRef(choice, "text")])
            unheard_of(choice, _CHOICE_KEYS, found)
            parts.append(AnswerPart(found.texts, _withhold(choice), _tokens_dropper(choice)))
        rest = Prompt()
        unheard_of(body, ANSWER_KEYS, rest)
        if rest.texts:  # the answer's own, beside its choices: left out if blocked
            parts.append(AnswerPart(rest.texts, lambda: drop_unheard_of(body, ANSWER_KEYS)))
        return parts

    def stream(self, request_body: Any) -> StreamCodec:
        return CompletionsStream()

    def usage(self, body: Any) -> Usage | None:
        return usage_of(body.get("usage"), "prompt_tokens", "completion_tokens")

    def finish_reasons(self, body: Any) -> list[str]:
        return choice_finish_reasons(body)

    def input_messages(self, body: Any) -> Any:
        return body.get("prompt") if isinstance(body, dict) else None

    def output_messages(self, body: Any) -> Any:
        choices = body.get("choices") if isinstance(body, dict) else None
        if not isinstance(choices, list):
            return None
        return [c.get("text") for c in choices if isinstance(c, dict)]


def _withhold(choice: dict[str, Any]) -> Any:
    def withhold() -> None:
        choice["finish_reason"] = "content_filter"
        choice["text"] = ""
        choice["logprobs"] = None
        drop_unheard_of(choice, _CHOICE_KEYS)

    return withhold


class CompletionsStream(ChoiceStream):
    def choice_deltas(self, index: int, choice: dict[str, Any], step: StreamStep) -> None:
        _delta_at(choice, "text", (index, "text"), step)
        found = Prompt()
        unheard_of(choice, _CHOICE_KEYS, found)
        self.wholes(found, index, step)

    def text_event(self, channel: Hashable, text: str) -> bytes:
        assert isinstance(channel, tuple)
        return self.chunk({"index": channel[0], "text": text, "finish_reason": None})

    def block_choice(self, index: Any) -> dict[str, Any]:
        return {"index": index, "text": "", "finish_reason": "content_filter"}

    def empty(self, choice: dict[str, Any]) -> bool:
        return (
            choice.get("finish_reason") is None
            and not choice.get("text")
            and choice.keys() <= _CHOICE_KEYS
        )


class Embeddings(Surface):
    """Input judged before it is embedded; the answer (vectors) has no text."""

    label = "embeddings"
    needs = "input' or 'messages"  # the error reads: no valid 'input' or 'messages'
    streams = False
    # llama.cpp tokenizes strings in nested lists too, and vLLM embeds a
    # conversation given as chat messages, rendered by the chat template.
    prompt_swept = ("input", "messages")
    prompt_opaque = Chat.prompt_opaque

    def prompt(self, body: Any) -> Prompt | None:
        if not isinstance(body, dict):
            return None
        prompt = Prompt()
        conversation_only = body.get("input") is None and body.get("messages") is not None
        if not conversation_only and not _strings_or_tokens(body, "input", prompt):
            return None
        if body.get("messages") is not None:  # read as chat's: its template, kwargs, tools
            conversation = _CHAT.prompt(body)
            if conversation is None:
                return None
            prompt.texts += conversation.texts
            prompt.uninspected += conversation.uninspected
        return prompt

    def answer(self, body: Any) -> list[AnswerPart] | None:
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            return None
        return []

    def usage(self, body: Any) -> Usage | None:
        return usage_of(body.get("usage"), "prompt_tokens", "completion_tokens")

    def input_messages(self, body: Any) -> Any:
        return body.get("input") if isinstance(body, dict) else None
