"""The events of a Responses stream, and the part of the answer each one concerns.

A *part* is one text of a streamed Response, the channel the stream judge
keeps: an output item's content part (output_text or refusal), reasoning
text part or reasoning summary part, a call's arguments, input or output, a code interpreter's
code or logs, or a string of an output item of another type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Delta events, by the kind of part they carry.
DELTAS = {
    "response.output_text.delta": "content",
    "response.refusal.delta": "content",
    "response.reasoning_text.delta": "reasoning",
    "response.reasoning_summary_text.delta": "summary",
    "response.function_call_arguments.delta": "arguments",
    "response.mcp_call_arguments.delta": "arguments",
    "response.custom_tool_call_input.delta": "input",
    "response.code_interpreter_call_code.delta": "code",
    "response.audio.transcript.delta": "transcript",  # its done event repeats no text
}
# Done events: the kind of part they end and the field repeating its text.
DONES = {
    "response.output_text.done": ("content", "text"),
    "response.refusal.done": ("content", "refusal"),
    "response.reasoning_text.done": ("reasoning", "text"),
    "response.reasoning_summary_text.done": ("summary", "text"),
    "response.function_call_arguments.done": ("arguments", "arguments"),
    "response.mcp_call_arguments.done": ("arguments", "arguments"),
    "response.custom_tool_call_input.done": ("input", "input"),
    "response.code_interpreter_call_code.done": ("code", "code"),
}
# Part events: whether each ends its part (and repeats its text).
PART_EVENTS = {
    "response.content_part.added": False,
    "response.content_part.done": True,
    "response.reasoning_summary_part.added": False,
    "response.reasoning_summary_part.done": True,
}
# The stream's last events; an upstream that sends them on carries on unread.
TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
# Quoted as in the JSON, so a text that says one is not taken for the event.
TERMINAL_MARKS = tuple(f'"{name}"' for name in TERMINAL)
# Events announcing the Response: its last announcement is a blocked stream's ending.
LIFECYCLE = frozenset({"response.created", "response.queued", "response.in_progress"})
# The keys of the events named above that say where a text is, or no text (a
# delta's logprobs spell its text out, and are dropped with it; OpenAI's
# ``obfuscation`` is random padding). Each kind of event adds the key of its own
# text; a string under any other key is judged as it stands.
_PLACE_KEYS = frozenset({
    "type", "sequence_number", "item_id", "output_index", "content_index", "summary_index",
    "logprobs", "obfuscation",
})  # fmt: skip
EVENT_KEYS: dict[str, frozenset[str]] = {
    **{kind: _PLACE_KEYS | {"delta"} for kind in DELTAS},
    **{kind: _PLACE_KEYS | {key} for kind, (_, key) in DONES.items()},
    **{kind: _PLACE_KEYS | {"part"} for kind in PART_EVENTS},
    "response.output_item.added": _PLACE_KEYS | {"item"},
    "response.output_item.done": _PLACE_KEYS | {"item"},
    **{kind: _PLACE_KEYS | {"response"} for kind in TERMINAL | LIFECYCLE},
    "response.function_call_arguments.done": _PLACE_KEYS | {"arguments", "name"},
    "response.mcp_call_arguments.done": _PLACE_KEYS | {"arguments", "name"},
    "response.audio.transcript.done": _PLACE_KEYS,
    "response.audio.delta": _PLACE_KEYS | {"delta"},
}

# Events whose strings are no text: an audio answer's base64 data. (Every
# other event not named here is read whole, but its identifiers.)
OPAQUE = frozenset({"response.audio.delta"})


@dataclass(frozen=True, slots=True)
class Part:
    """One text of a streamed Response; its own group (it ends on its own)."""

    output: int  # output_index
    kind: str  # content, reasoning, summary, arguments, input, output, code, logs, other
    index: int  # content_index or summary_index; 0 for a call's one text


def default_delta(part: Part, added: dict[int, dict[str, Any]]) -> str | None:
    """The delta event of a part no delta event has named yet."""
    item_type = added.get(part.output, {}).get("type")
    if part.kind == "arguments":
        if item_type == "mcp_call":
            return "response.mcp_call_arguments.delta"
        return "response.function_call_arguments.delta"
    return {
        "content": "response.output_text.delta",
        "reasoning": "response.reasoning_text.delta",
        "summary": "response.reasoning_summary_text.delta",
        "input": "response.custom_tool_call_input.delta",
        "code": "response.code_interpreter_call_code.delta",
        # No "transcript": an audio transcript's text comes only in its own deltas,
        # which name their event before any of it can be held back.
    }.get(part.kind)
