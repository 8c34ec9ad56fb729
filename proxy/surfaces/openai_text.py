"""Finding text in OpenAI-style bodies: content in every shape it comes in.

Shared by the chat and Responses surfaces. Content is a string, a list of
parts, or one part given as an object; a part's text is under ``text`` or
``refusal`` whatever its ``type`` says (``text``, ``input_text``,
``output_text``, ``refusal``, or none), so a part type the proxy has not heard
of is still read. A part with no text is counted by its kind.
"""

from __future__ import annotations

from typing import Any

from proxy.surfaces.base import Prompt, TextRef, part_kind

TEXT_KEYS = ("text", "refusal")


def content_texts(holder: dict[str, Any], key: str, prompt: Prompt) -> None:
    """The texts of ``holder[key]``, a content value of any shape."""
    value = holder.get(key)
    if isinstance(value, str):
        prompt.texts.append(TextRef(holder, key))
    elif isinstance(value, list):
        for i, part in enumerate(value):
            if isinstance(part, str):
                prompt.texts.append(TextRef(value, i))
            else:
                part_texts(part, prompt)
    elif isinstance(value, dict):
        part_texts(value, prompt)
    elif value is not None:
        prompt.uninspected.append("other")


def part_texts(part: Any, prompt: Prompt) -> None:
    if not isinstance(part, dict):
        prompt.uninspected.append("other")
        return
    found = False
    for key in TEXT_KEYS:
        if isinstance(part.get(key), str):
            prompt.texts.append(TextRef(part, key))
            found = True
    kind = part_kind(part)
    if kind != "other" or not found:
        prompt.uninspected.append(kind)


def string_at(holder: Any, key: str, prompt: Prompt) -> None:
    if isinstance(holder, dict) and isinstance(holder.get(key), str):
        prompt.texts.append(TextRef(holder, key))


def descriptions(schema: Any, prompt: Prompt, depth: int = 0) -> None:
    """Every ``description`` in a tool's JSON schema: the model reads them."""
    if depth > 32:
        return
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "description" and isinstance(value, str):
                prompt.texts.append(TextRef(schema, key))
            else:
                descriptions(value, prompt, depth + 1)
    elif isinstance(schema, list):
        for value in schema:
            descriptions(value, prompt, depth + 1)
