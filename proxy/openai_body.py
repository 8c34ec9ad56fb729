"""OpenAI request and response bodies: routes, the text filters judge, write-back.

The prompt of a request is a list of text *segments* (each chat message's
string content or text part; each completions prompt string) so that a
redaction lands in the field it came from. A response's completions are one
segment per choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ROUTES = {
    "/v1/chat/completions": "chat_completions",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
}
ROUTE_LABELS = ("chat_completions", "completions", "embeddings", "other")
JUDGED_ROUTES = frozenset({"chat_completions", "completions"})


def classify(path: str) -> str:
    """The route label of a request path; never a value taken from the request."""
    return ROUTES.get(path.rstrip("/") or "/", "other")


@dataclass(frozen=True, slots=True)
class TextRef:
    """Where one segment of text lives in a parsed body: container[key]."""

    container: Any  # dict or list
    key: Any  # str or int

    def get(self) -> str:
        value: str = self.container[self.key]
        return value

    def set(self, text: str) -> None:
        self.container[self.key] = text


def prompt_refs(route: str, body: Any) -> list[TextRef] | None:
    """The prompt's text segments, or None when the body is not of the route's shape."""
    if not isinstance(body, dict):
        return None
    refs: list[TextRef] = []
    if route == "chat_completions":
        messages = body.get("messages")
        if not isinstance(messages, list):
            return None
        for message in messages:
            if not isinstance(message, dict):
                return None
            _content_refs(message, "content", refs)
    elif route == "completions":
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            refs.append(TextRef(body, "prompt"))
        elif isinstance(prompt, list):
            # Token-id prompts (lists of ints) carry no text to judge.
            refs.extend(TextRef(prompt, i) for i, p in enumerate(prompt) if isinstance(p, str))
        else:
            return None
    return refs


def completion_refs(route: str, body: Any) -> list[tuple[dict[str, Any], TextRef]] | None:
    """(choice, text) for each choice of a non-streamed response; None if malformed."""
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
        return None
    found: list[tuple[dict[str, Any], TextRef]] = []
    for choice in body["choices"]:
        if not isinstance(choice, dict):
            return None
        if route == "chat_completions":
            message = choice.get("message")
            if not isinstance(message, dict):
                return None
            refs: list[TextRef] = []
            _content_refs(message, "content", refs)
            found.extend((choice, ref) for ref in refs)
        elif isinstance(choice.get("text"), str):
            found.append((choice, TextRef(choice, "text")))
    return found


def block_choice(route: str, choice: dict[str, Any]) -> None:
    """Withhold a choice's completion the way OpenAI does for filtered content."""
    choice["finish_reason"] = "content_filter"
    if route == "chat_completions":
        message = choice.get("message")
        if isinstance(message, dict):
            message["content"] = None
    else:
        choice["text"] = ""


def _content_refs(message: dict[str, Any], key: str, refs: list[TextRef]) -> None:
    content = message.get(key)
    if isinstance(content, str):
        refs.append(TextRef(message, key))
    elif isinstance(content, list):
        for part in content:
            if (
                isinstance(part, dict)
                and part.get("type") == "text"
                and isinstance(part.get("text"), str)
            ):
                refs.append(TextRef(part, "text"))
