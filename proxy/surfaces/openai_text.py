"""Finding text in OpenAI-style bodies: content in every shape it comes in.

Shared by the chat and Responses surfaces. Content is a string, a list of
parts, or one part given as an object; a part's text is under ``text`` or
``refusal`` whatever its ``type`` says (``text``, ``input_text``,
``output_text``, ``refusal``, or none), so a part type the proxy has not heard
of is still read. A part with no text is counted by its kind.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from proxy.surfaces.base import Prompt, TextRef, content_at, part_kind

TEXT_KEYS = ("text", "refusal")

# The data of a data URL given in base64, which is not judged (the reading counts
# the image as uninspected); its header is, and every other URL is whole.
_BASE64 = re.compile(r"[A-Za-z0-9+/]*+={0,2}", re.ASCII)


@dataclass(frozen=True, slots=True)
class DataUrlHeader(TextRef):
    """The header of a data URL at ``container[key]`` (``data:image/png;base64``):
    its type and parameters are text, its base64 data after the comma is not."""

    def get(self) -> str:
        url: str = self.container[self.key]
        return url[: url.index(",")]

    def set(self, text: str) -> None:
        url: str = self.container[self.key]
        self.container[self.key] = text + url[url.index(",") :]


def url_texts(holder: dict[str, Any], key: str, prompt: Prompt) -> None:
    """A URL a server may write out as text: whole, or a base64 data URL's header."""
    url: str = holder[key]
    comma = url.find(",") if url[:5].lower() == "data:" else -1
    if comma > 0 and url[:comma].lower().endswith(";base64") and _BASE64.fullmatch(url, comma + 1):
        prompt.texts.append(DataUrlHeader(holder, key))
    else:
        prompt.texts.append(TextRef(holder, key))


def media_texts(part: Any, prompt: Prompt) -> None:
    """The strings of a media part that a server writes out as text: an image's
    URL, but its base64 data (TGI gives a model that reads no images ``![](url)``, and
    LiteLLM turns a Responses image into a chat one), a file's name and URL."""
    if not isinstance(part, dict):
        return
    kind = part.get("type")
    if kind == "image_url":
        holder, key = part.get("image_url"), "url"
    elif kind == "input_image":
        holder, key = part, "image_url"
    else:
        if kind == "file":
            string_at(part.get("file"), "filename", prompt)
        elif kind == "input_file":
            string_at(part, "file_url", prompt)
        return
    if isinstance(holder, dict) and isinstance(holder.get(key), str):
        url_texts(holder, key, prompt)


def content_texts(holder: dict[str, Any], key: str, prompt: Prompt) -> None:
    """The texts of ``holder[key]``, a content value of any shape."""
    content_at(holder, key, prompt, lambda part: part_texts(part, prompt))


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


def arguments_at(holder: Any, key: str, prompt: Prompt) -> None:
    """A call's JSON arguments, as the model server and the client read them.

    Both parse the JSON (vLLM before its chat template writes the arguments
    out again), so ``"open \\u0073esame"`` is read as ``open sesame``:
    arguments with an escape in them are written out without it first.
    """
    value = holder.get(key) if isinstance(holder, dict) else None
    if not isinstance(value, str):
        return
    if "\\" in value:
        holder[key] = unescaped(value)
    prompt.texts.append(TextRef(holder, key))


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def unescaped(arguments: str) -> str:
    """JSON text with its escapes written out (but those JSON needs); as given if not JSON."""
    try:
        parsed = json.loads(arguments)
    except (ValueError, RecursionError):
        return arguments
    text = json.dumps(parsed, ensure_ascii=False)
    # A lone surrogate cannot be written as UTF-8: it stays an escape.
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def string_at(holder: Any, key: str, prompt: Prompt) -> None:
    if isinstance(holder, dict) and isinstance(holder.get(key), str):
        prompt.texts.append(TextRef(holder, key))
