"""Where text lives in the items of the OpenAI Responses API, both ways.

An *input item* (of ``input`` or ``instructions``) is text the model reads:
a message (content as a string or a list of parts), a tool call's arguments
or input, a tool's output, a reasoning item's summary and content. An item
of a type not listed here is read whole: every string in it but its
identifiers, so a tool item the proxy has not heard of is still judged.
``item_reference`` points at stored content, not text in the request: it is
counted as uninspected, kind ``reference``.

An *output item* (of a Response's ``output``) is judged by its *places*:
each text the client reads, named by a kind and an index (a message's
content parts, a reasoning item's summary parts and content parts, a call's
arguments or input), so the streamed events of the same text find it again.
A Response withheld by a filter is marked the way OpenAI marks one.
"""

from __future__ import annotations

from typing import Any

from proxy.surfaces.base import NOT_TEXT, Opaque, Prompt

# The roles the APIs define (vLLM takes any other as well: a custom role is text).
from proxy.surfaces.kinds import ROLES
from proxy.surfaces.openai_text import (
    arguments_at,
    content_texts,
    media_texts,
    string_at,
    unescaped,
)
from proxy.surfaces.unheard_of import drop_unheard_of, every_string, unheard_of

# Input items whose text is in these string fields.
_STRING_FIELDS: dict[str, tuple[str, ...]] = {
    "function_call": ("name", "arguments"),
    "custom_tool_call": ("name", "input"),
    "mcp_call": ("name", "arguments", "output"),
    "mcp_approval_request": ("name", "arguments"),
    "local_shell_call_output": ("output",),
    "apply_patch_call_output": ("output",),
}
# Input items whose text is a content value (a string or a list of parts).
_CONTENT_FIELDS: dict[str, tuple[str, ...]] = {
    "message": ("content",),
    "function_call_output": ("output",),
    "custom_tool_call_output": ("output",),
    "reasoning": ("summary", "content"),
}
# Input items the model sees but no text filter can read.
_UNINSPECTED_ITEMS = {
    "item_reference": "reference",
    "computer_call_output": "image",
    "image_generation_call": "image",
}

# Output item types whose text is in one string field, by the place's kind.
_OUTPUT_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "function_call": (("name", "name"), ("arguments", "arguments")),
    "custom_tool_call": (("name", "name"), ("input", "input")),
    "mcp_call": (("name", "name"), ("arguments", "arguments"), ("output", "output")),
    "mcp_approval_request": (("name", "name"), ("arguments", "arguments")),
}

# (kind, index, holder, key): one text of an output item, at holder[key] (a
# dict and its key, or a list and a position in it).
Place = tuple[str, int, Any, Any]


def items_texts(items: list[Any], prompt: Prompt) -> bool:
    """The texts of a list of input items; False when one is not an item."""
    for item in items:
        if not isinstance(item, dict):
            return False
        item_texts(item, prompt)
    return True


def item_texts(item: dict[str, Any], prompt: Prompt) -> None:
    kind = item.get("type")
    if kind is None and ("role" in item or "content" in item):
        kind = "message"  # an easy input message: {"role": ..., "content": ...}
    role = item.get("role")
    if kind == "message" and isinstance(role, str) and role not in ROLES:
        string_at(item, "role", prompt)  # as on chat: a role not defined is text
    if not isinstance(kind, str):
        every_string(item, prompt)
        return
    uninspected = _UNINSPECTED_ITEMS.get(kind)
    if uninspected is not None:
        prompt.uninspected.append(uninspected)
        return
    known = False
    for key in _STRING_FIELDS.get(kind, ()):
        (arguments_at if key == "arguments" else string_at)(item, key, prompt)
        known = True
    for key in _CONTENT_FIELDS.get(kind, ()):
        if item.get(key) is not None:
            content_texts(item, key, prompt)
            value = item[key]
            for part in value if isinstance(value, list) else [value]:  # one part: an object
                media_texts(part, prompt)
        known = True
    if kind == "shell_call_output":
        for chunk in _list(item.get("output")):
            string_at(chunk, "stdout", prompt)
            string_at(chunk, "stderr", prompt)
    elif not known:
        every_string(item, prompt)


def unescape_arguments(item: dict[str, Any]) -> None:
    """A call's JSON arguments with their escapes written out, as the client reads them."""
    arguments = item.get("arguments")
    kind = item.get("type")  # any JSON value: a list or an object cannot be looked up
    if (
        isinstance(kind, str)
        and kind in _OUTPUT_FIELDS
        and isinstance(arguments, str)
        and "\\" in arguments
    ):
        item["arguments"] = unescaped(arguments)


# The keys of a Response read as its output, or no text: what it echoes of its
# request (judged as the prompt), settings, states and counts. A string under
# any other key (an ``error``'s message, an ``output_text`` a server adds) is judged.
RESPONSE_KEYS = frozenset({
    "id", "object", "created_at", "completed_at", "status", "background", "billing",
    "conversation", "incomplete_details", "instructions", "max_output_tokens",
    "max_tool_calls", "metadata", "model", "output", "output_messages", "input_messages",
    "parallel_tool_calls", "previous_response_id", "prompt", "prompt_cache_key",
    "prompt_cache_retention", "reasoning", "safety_identifier", "service_tier", "store",
    "temperature", "top_p", "top_k", "frequency_penalty", "presence_penalty", "text",
    "tool_choice", "tools", "top_logprobs", "truncation", "usage", "user",
    "kv_transfer_params",
})  # fmt: skip

# No text, for the sweep after the reading: what a Response echoes of its
# request (judged as the prompt), its model and settings, its counts; tokens
# (dropped with their text), base64 audio and images, sealed reasoning.
RESPONSES_OPAQUE = Opaque(
    # (vLLM's input_messages hold previous_response_id's turns as stored, unjudged)
    top=RESPONSE_KEYS - {"output", "output_messages", "input_messages"},
    anywhere=frozenset({"logprobs", "top_logprobs"}),
    by_type={
        "image_generation_call": frozenset({"result", "partial_image_b64"}),
        "output_audio": frozenset({"data"}),
    },
)

# Strings of an output item of another type that are no text to judge: a
# generated image's base64 data, besides the identifiers of input items.
_NOT_OUTPUT_TEXT = NOT_TEXT | {"partial_image_b64", "item_id"}
# A content part's base64 audio, beside its transcript.
PART_AUDIO = frozenset({"data"})
# The keys of an output item its own places cover (or no text), by the item's
# type: a string under any other key is a place of kind ``other``. (An item of
# a type not listed is read whole; an MCP call's ``error`` is the server's text.)
_ITEM_KEYS = {
    "message": frozenset({"content", "phase"}),
    "reasoning": frozenset({"summary", "content", "encrypted_content"}),
    "code_interpreter_call": frozenset({"code", "outputs"}),
    "function_call": frozenset({"name", "arguments"}),
    "custom_tool_call": frozenset({"name", "input"}),
    "mcp_call": frozenset({"name", "arguments", "output", "server_label"}),
    "mcp_approval_request": frozenset({"name", "arguments", "server_label"}),
}
# The keys of a message's content part read as its places (its tokens are
# dropped, not judged), of a reasoning item's part, of a code interpreter's output.
PART_KEYS = frozenset({"text", "refusal", "annotations", "logprobs"})
REASONING_PART_KEYS = frozenset({"text"})
_CODE_OUTPUT_KEYS = frozenset({"logs", "url"})


def output_places(item: dict[str, Any]) -> list[Place]:
    """Every text of an output item the client reads.

    An item of a type not known here (a file search's results, a shell
    call's commands...) is read whole: every string in it but identifiers,
    each a place of kind ``other``.
    """
    kind = item.get("type")
    places: list[Place] = []
    if kind == "message":
        content = item.get("content")
        if isinstance(content, str):
            places.append(("content", 0, item, "content"))
        for i, part in enumerate(_list(content)):
            keys = part_keys(part)
            if keys:
                places += [(kind, i, part, key) for kind, key in keys]
                unheard_of_places(part, PART_KEYS, places)
            elif isinstance(part, dict):  # a part not heard of: its strings, its audio not
                found = other_places(part, skip=PART_AUDIO)
                places += [("other", len(places) + n, *place[2:]) for n, place in enumerate(found)]
    elif kind == "reasoning":
        for kind_of_part, key in (("summary", "summary"), ("reasoning", "content")):
            for i, part in enumerate(_list(item.get(key))):
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    places.append((kind_of_part, i, part, "text"))
                unheard_of_places(part, REASONING_PART_KEYS, places)
    elif kind == "code_interpreter_call":
        if isinstance(item.get("code"), str):
            places.append(("code", 0, item, "code"))
        for i, output in enumerate(_list(item.get("outputs"))):
            if isinstance(output, dict) and isinstance(output.get("logs"), str):
                places.append(("logs", i, output, "logs"))
            unheard_of_places(output, _CODE_OUTPUT_KEYS, places)
    elif isinstance(kind, str) and kind in _OUTPUT_FIELDS:
        for place_kind, key in _OUTPUT_FIELDS[kind]:
            if isinstance(item.get(key), str):
                places.append((place_kind, 0, item, key))
    else:
        return other_places(item)
    unheard_of_places(item, _ITEM_KEYS[kind], places)
    return places


def unheard_of_places(holder: Any, heard_of: frozenset[str], places: list[Place]) -> None:
    """The strings of ``holder`` under keys not in ``heard_of``, as places of kind
    ``other`` (numbered on from ``places``, so that each is its own)."""
    found = Prompt()
    unheard_of(holder, heard_of, found)
    places += [
        ("other", len(places) + n, ref.container, ref.key) for n, ref in enumerate(found.texts)
    ]


def annotation_places(item: dict[str, Any]) -> list[Place]:
    """The strings of a message's annotations (a cited page's title and URL, a
    file's name): text the client reads, given whole, not part of any delta."""
    places: list[Place] = []
    if item.get("type") == "message":
        for part in _list(item.get("content")):
            places += notes_places(part)
    return places


def notes_places(part: Any) -> list[Place]:
    """The strings of one text part's annotations. A part not heard of has none
    here: it is read whole (``other_places``), its annotations with it, and read
    twice they would be judged twice."""
    places: list[Place] = []
    if not part_keys(part):
        return places
    for note in _list(part.get("annotations")):
        if isinstance(note, dict):
            places += other_places(note)
    return places


def part_keys(part: Any) -> list[tuple[str, str]]:
    """The texts of a message's content part, by place kind: its ``text`` (an
    output_text's) or ``refusal`` (a refusal's), and the other too when a part
    has both (kind ``also``): each is text the client reads."""
    if not isinstance(part, dict):
        return []
    keys = [key for key in ("text", "refusal") if isinstance(part.get(key), str)]
    return [("content" if n == 0 else "also", key) for n, key in enumerate(keys)]


def other_places(item: dict[str, Any], skip: frozenset[str] = frozenset()) -> list[Place]:
    """Every string of an output item of an unknown type (or of a stream's event
    not heard of), but identifiers, images and the keys in ``skip`` (of the item
    itself, not of what is nested in it)."""
    places: list[Place] = []
    stack: list[Any] = [item]
    if item.get("type") == "image_generation_call":
        skip = skip | {"result"}  # the image, base64
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        not_text = _NOT_OUTPUT_TEXT | skip if node is item else _NOT_OUTPUT_TEXT
        for key, inner in items:
            if isinstance(inner, str):
                if not (isinstance(node, dict) and key in not_text):
                    places.append(("other", len(places), node, key))
            elif isinstance(inner, dict | list):
                stack.append(inner)
    return places


def empty_item(item: dict[str, Any]) -> None:
    """Withhold an output item: its text emptied, its status incomplete."""
    kind = item.get("type")
    if kind == "message":
        item["content"] = []
        drop_unheard_of(item, _ITEM_KEYS[kind])
    elif kind == "reasoning":
        item["summary"] = []
        if item.get("content") is not None:
            item["content"] = []
        drop_unheard_of(item, _ITEM_KEYS[kind])
    else:
        for _, _, holder, key in output_places(item):
            holder[key] = ""
    if "status" in item:
        item["status"] = "incomplete"


def drop_tokens(response: dict[str, Any], item: dict[str, Any]) -> None:
    """What spells an item's text out again: its output_text parts' logprobs
    (emptied), and the Response's ``output_messages`` (vLLM's
    ``enable_response_messages``: the answer as the model wrote it)."""
    forget_written(response)
    if item.get("type") != "message":
        return
    for part in _list(item.get("content")):
        if isinstance(part, dict) and part.get("logprobs"):
            part["logprobs"] = []


def forget_written(response: dict[str, Any]) -> None:
    """Drop a Response's ``output_messages``: they repeat its text whole."""
    if response.get("output_messages") is not None:
        response["output_messages"] = None


def mark_filtered(response: dict[str, Any], reason: str) -> None:
    """A Response ended by a filter, as OpenAI ends one: incomplete, and why."""
    response["status"] = "incomplete"
    response["incomplete_details"] = {"reason": reason}


def finish_reason(response: Any) -> str | None:
    """Why a Response ended: its incomplete_details' reason, else its status."""
    if not isinstance(response, dict):
        return None
    details = response.get("incomplete_details")
    reason = details.get("reason") if isinstance(details, dict) else None
    if isinstance(reason, str):
        return reason
    status = response.get("status")
    return status if isinstance(status, str) else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
