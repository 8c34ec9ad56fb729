"""Text under keys an adapter has not heard of: judged, not handed over unread.

Servers add fields to what their API defines (Perplexity's search results,
OpenRouter's reasoning details, LiteLLM's provider fields, a later version's
field), and a client that parses the answer reads them. So an adapter names,
at each level of an answer it reads, the keys it has heard of; every string
under any other key, at any depth, is judged as well, but identifiers.
"""

from __future__ import annotations

from typing import Any

from proxy.surfaces.base import (
    NOT_TEXT,
    AnswerPart,
    Opaque,
    Prompt,
    TextRef,
    places,
    unread_strings,
)


def every_string(value: Any, found: Prompt, not_text: frozenset[str] = NOT_TEXT) -> None:
    """Every string in ``value`` at any depth, but those under the keys ``not_text``."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, inner in node.items():
                if isinstance(inner, str):
                    if key not in not_text:
                        found.texts.append(TextRef(node, key))
                elif isinstance(inner, dict | list):
                    stack.append(inner)
        elif isinstance(node, list):
            for i, inner in enumerate(node):
                if isinstance(inner, str):
                    found.texts.append(TextRef(node, i))
                elif isinstance(inner, dict | list):
                    stack.append(inner)


def unheard_of(holder: Any, heard_of: frozenset[str], found: Prompt) -> None:
    """Every string under the keys of ``holder`` not in ``heard_of`` (nor identifiers)."""
    if not isinstance(holder, dict):
        return
    for key, value in holder.items():
        if key in heard_of:
            continue
        if isinstance(value, str):
            if key not in NOT_TEXT:  # an identifier is a string: an object there is not one
                found.texts.append(TextRef(holder, key))
        elif isinstance(value, dict | list):
            every_string(value, found)


def drop_unheard_of(holder: Any, heard_of: frozenset[str]) -> None:
    """Leave out what ``unheard_of`` judged: a withheld part loses its text everywhere."""
    if isinstance(holder, dict):
        for key in [k for k, v in holder.items() if k not in heard_of and _judged(k, v)]:
            del holder[key]


def _judged(key: str, value: Any) -> bool:
    return key not in NOT_TEXT or not isinstance(value, str)


def with_the_rest(body: Any, parts: list[AnswerPart], opaque: Opaque) -> None:
    """One more part for every string of ``body`` the parts leave out.

    The adapters read each level by its keys and each value by its expected
    shape; a key heard of whose value comes in another shape (a string where
    parts were, an object where a string was), or a level read by a type the
    upstream chose, would hand its strings over unread. So after the reading
    every string of the answer, at any depth, that no part holds is judged as
    a part of its own, emptied when withheld; but identifiers and what
    ``opaque`` skips.
    """
    read = places(ref for part in parts for ref in part.texts)
    rest = unread_strings(body, read, opaque)
    if rest:
        parts.append(AnswerPart(rest, lambda: _empty(rest)))


def _empty(refs: list[TextRef]) -> None:
    for ref in refs:
        ref.set("")
