"""Text under keys an adapter has not heard of: judged, not handed over unread.

Servers add fields to what their API defines (Perplexity's search results,
OpenRouter's reasoning details, LiteLLM's provider fields, a later version's
field), and a client that parses the answer reads them. So an adapter names,
at each level of an answer it reads, the keys it has heard of; every string
under any other key, at any depth, is judged as well, but identifiers.
"""

from __future__ import annotations

from typing import Any

from proxy.surfaces.base import Prompt, TextRef

# Keys whose strings are not text: identifiers, states, sealed state.
# (A name is text: the model reads the name of the tool it called.)
NOT_TEXT = frozenset({
    "id", "type", "status", "role", "object", "call_id", "tool_call_id", "server_label",
    "approval_request_id", "caller_id", "namespace", "encrypted_content", "fingerprint",
    "file_id", "container_id", "signature",
})  # fmt: skip


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
        if key in heard_of or key in NOT_TEXT:
            continue
        if isinstance(value, str):
            found.texts.append(TextRef(holder, key))
        elif isinstance(value, dict | list):
            every_string(value, found)


def drop_unheard_of(holder: Any, heard_of: frozenset[str]) -> None:
    """Leave out what ``unheard_of`` judged: a withheld part loses its text everywhere."""
    if isinstance(holder, dict):
        for key in [k for k in holder if k not in heard_of and k not in NOT_TEXT]:
            del holder[key]
