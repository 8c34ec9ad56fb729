"""Finding text in Anthropic content blocks, for the Messages surface (both ways).

A block's text is where its ``type`` says: ``text.text`` and its citations
(a web page's or a document's text quoted, a title, a URL),
``thinking.thinking``, a ``tool_use``'s (or ``server_tool_use``'s) ``name``
and every string and key inside its ``input`` at any depth, a
``tool_result``'s content (a string or blocks), a ``document``'s text
source (``data``) or content source, its ``title`` and ``context``, a
``search_result``'s ``title``, ``source`` and content. A block type the
proxy has not heard of is still read: every string in it, at any depth,
except the keys that never hold prose (ids, signatures, media types); a
block nested in it goes by its own type, and its ``input`` is read as a
tool's input (every string and key).

What no text filter can read is counted by kind: ``image``, ``file`` (a PDF
given as base64, a URL or a file id; a container upload) and ``encrypted``
(``redacted_thinking``, a search result's ``encrypted_content``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from proxy.surfaces.base import Prompt, TextRef, content_at, written_out

# Keys of a block that are not prose, left out of a block read whole (the ids
# among them are judged by the sweep after the reading: templates write ids out).
_NOT_TEXT = frozenset(
    {"type", "id", "tool_use_id", "signature", "cache_control", "media_type", "file_id",
     "caller"}
)  # fmt: skip
# Keys whose value is text no filter can read (its kind counted instead).
_ENCRYPTED = frozenset({"encrypted_content", "encrypted_index"})
# Sources of a document or image that are not text.
_BINARY_SOURCES = frozenset({"base64", "url", "file"})
# Blocks nested deeper than this are no request Anthropic's API accepts: past
# it every string is read, whatever its key (no recursion, nothing skipped).
MAX_DEPTH = 32


def content_texts(holder: dict[str, Any], key: str, found: Prompt, depth: int = 0) -> None:
    """The texts of ``holder[key]``: a string or a list of blocks."""
    content_at(holder, key, found, lambda block: block_texts(block, found, depth))


def block_texts(block: Any, found: Prompt, depth: int = 0) -> None:
    """The texts of one content block, by its type."""
    if depth > MAX_DEPTH and isinstance(block, dict):
        strings_in(block, found)
        return
    if not isinstance(block, dict):
        found.uninspected.append("other")
        return
    kind = block.get("type")
    reader = _READERS.get(kind) if isinstance(kind, str) else None
    if reader is None:
        _any_block(block, found, depth)
    else:
        reader(block, found, depth)


def strings_in(value: Any, found: Prompt) -> None:
    """Every string inside a JSON value, at any depth, and every key (a tool's
    input: written out as JSON for the model, parsed by the client, keys and all)."""
    written_out(value, found)


def _string(block: dict[str, Any], key: str, found: Prompt) -> None:
    if isinstance(block.get(key), str):
        found.texts.append(TextRef(block, key))


def _text(block: dict[str, Any], found: Prompt, depth: int) -> None:
    _string(block, "text", found)
    citations = block.get("citations")
    for citation in citations if isinstance(citations, list) else [citations]:
        if isinstance(citation, dict):
            _nested(citation, found, depth)  # cited_text: a web page's words, quoted


def _thinking(block: dict[str, Any], found: Prompt, depth: int) -> None:
    _string(block, "thinking", found)


def _tool_use(block: dict[str, Any], found: Prompt, depth: int) -> None:
    _string(block, "name", found)  # written out for the model, read by the client
    value = block.get("input")
    if isinstance(value, dict | list):
        strings_in(value, found)
    elif isinstance(value, str):
        found.texts.append(TextRef(block, "input"))


def _tool_result(block: dict[str, Any], found: Prompt, depth: int) -> None:
    content_texts(block, "content", found, depth + 1)


def _document(block: dict[str, Any], found: Prompt, depth: int) -> None:
    _string(block, "title", found)
    _string(block, "context", found)
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "text":
        assert isinstance(source, dict)
        _string(source, "data", found)
    elif kind == "content":
        assert isinstance(source, dict)
        content_texts(source, "content", found, depth + 1)
    else:
        found.uninspected.append("file")


def _search_result(block: dict[str, Any], found: Prompt, depth: int) -> None:
    _string(block, "title", found)
    _string(block, "source", found)
    content_texts(block, "content", found, depth + 1)


def _counted(kind: str) -> Callable[[dict[str, Any], Prompt, int], None]:
    def count(block: dict[str, Any], found: Prompt, depth: int) -> None:
        found.uninspected.append(kind)

    return count


def _any_block(block: dict[str, Any], found: Prompt, depth: int) -> None:
    """A block of a type not known here: every string in it but ids and the like."""
    for key, value in block.items():
        if key in _NOT_TEXT:
            continue
        if key in _ENCRYPTED:
            found.uninspected.append("encrypted")
        elif key == "input" and isinstance(value, dict | list):
            strings_in(value, found)  # a tool's input, keys and all (not a block)
        elif isinstance(value, str):
            found.texts.append(TextRef(block, key))
        elif isinstance(value, dict):
            _nested(value, found, depth)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, str):
                    found.texts.append(TextRef(value, i))
                elif isinstance(item, dict):
                    _nested(item, found, depth)


def _nested(value: dict[str, Any], found: Prompt, depth: int) -> None:
    kind = value.get("type")  # any JSON value: a list or an object cannot be looked up
    if isinstance(kind, str) and kind in _BINARY_SOURCES:
        found.uninspected.append("file")  # a source: base64 data, a URL, a file id
    else:
        block_texts(value, found, depth + 1)


_READERS: dict[str, Callable[[dict[str, Any], Prompt, int], None]] = {
    "text": _text,
    "thinking": _thinking,
    "tool_use": _tool_use,
    "server_tool_use": _tool_use,
    "tool_result": _tool_result,
    "document": _document,
    "search_result": _search_result,
    "image": _counted("image"),
    "redacted_thinking": _counted("encrypted"),
    "container_upload": _counted("file"),
}
