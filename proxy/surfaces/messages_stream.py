"""The event stream of Anthropic's Messages API, judged content block by content block.

Events: ``message_start``, ``content_block_start``, ``content_block_delta``,
``content_block_stop``, ``message_delta``, ``message_stop`` (the terminal
event), ``ping`` and ``error``. The official clients go by an event's data
``type``, other readers by its ``event:`` name; Anthropic sends both alike,
and an event whose two differ is malformed, so either reader sees what was
judged.

Each block index is a channel per kind of text: ``(index, "text")``,
``(index, "thinking")`` and ``(index, "input")`` (a tool's input JSON as it
streams). Text a block's start already carries is judged as a first delta
(a tool's whole input given in its start is sent on as an
``input_json_delta``). ``content_block_stop`` ends the block's channels:
what was held back goes out in a ``content_block_delta`` just before it.
``message_delta`` ends every block again, so that a block an ``at_stream_end``
filter rejected turns the message's ``stop_reason`` into ``"refusal"``.
Signatures pass as they come. What comes once, whole, is judged to its end
in the event that carries it: a tool block's name, a block given whole in
its start (a server tool's result), a citation delta, and the strings of
a delta or an event not heard of (``ping`` aside).

A block ends the stream as Anthropic's classifiers do: every block the
client saw open is closed, then a ``message_delta`` with ``stop_reason:
"refusal"`` and ``message_stop``. Usage is read from ``message_start``
(input tokens) and ``message_delta`` (output tokens), one figure each.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable
from typing import Any

import orjson

from proxy.formats.sse import SseEvent
from proxy.surfaces.anthropic_text import block_texts
from proxy.surfaces.base import (
    NOT_TEXT,
    Delta,
    Opaque,
    Prompt,
    StreamCodec,
    StreamMalformed,
    StreamStep,
    Usage,
    encode_sse,
    may_say,
    parse_event,
    unread_strings,
    usage_of,
)
from proxy.surfaces.json_escapes import ArgumentStreams
from proxy.surfaces.unheard_of import unheard_of

# A delta's type -> the channel kind it streams and the key of its text.
_DELTAS = {
    "text_delta": ("text", "text"),
    "thinking_delta": ("thinking", "thinking"),
    "input_json_delta": ("input", "partial_json"),
}
_KINDS = {kind: (delta, key) for delta, (kind, key) in _DELTAS.items()}
# A stop_reason that is a string, not null (a text's own quotes are escaped: \").
_NAMED_STOP = re.compile(r'"stop_reason"\s*:\s*"')
_TOOL_BLOCKS = frozenset({"tool_use", "server_tool_use"})
# The keys of a message (an answer, or message_start's) its reading covers, or
# no text (a refusal's `stop_details` is not among them: its explanation is text).
MESSAGE_KEYS = frozenset({
    "id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage",
    "container", "context_management",
})  # fmt: skip
# The keys of a message's blocks its reading covers, by the block's type (a
# block of a type not listed is read whole).
BLOCK_KEYS = {
    "text": frozenset({"text", "citations"}),
    "thinking": frozenset({"thinking"}),
    "redacted_thinking": frozenset({"data"}),
    "tool_use": frozenset({"name", "input", "caller"}),
    "server_tool_use": frozenset({"name", "input", "caller"}),
}

# No text, for the sweep after the reading: the model's name, counts, an end's
# reason, sealed thinking, base64 sources.
OPAQUE = Opaque(
    top=frozenset({"model", "stop_reason", "usage"}),
    anywhere=frozenset({"usage", "stop_reason", "model"}),
    by_type={"redacted_thinking": frozenset({"data"}), "base64": frozenset({"data"})},
)
# The keys of each event read above (or no text): a string under any other is
# judged whole, as is every string of an event of a type not listed.
_EVENT_KEYS = {
    "message_start": frozenset({"message"}),
    "content_block_start": frozenset({"index", "content_block"}),
    "content_block_delta": frozenset({"index", "delta"}),
    "content_block_stop": frozenset({"index"}),
    "message_delta": frozenset({"delta", "usage", "context_management"}),
    "message_stop": frozenset(),
    "ping": frozenset(),
}
# The keys of a message_delta's delta read above: its refusal's stop_details are not (text).
_STOP_KEYS = frozenset({"stop_reason", "stop_sequence", "container"})
# The keys of each delta read above, by the delta's type.
_DELTA_KEYS = {
    "text_delta": frozenset({"text"}),
    "thinking_delta": frozenset({"thinking"}),
    "input_json_delta": frozenset({"partial_json"}),
    "signature_delta": frozenset({"signature"}),
}
REFUSAL_DETAILS = {
    "type": "refusal",
    "category": None,
    "explanation": "withheld by a content filter of taxmeter",
}


class MessagesStream(StreamCodec):
    """One streamed message; remembers which blocks the client has seen open."""

    opaque = OPAQUE

    def __init__(self) -> None:
        self._open: set[int] = set()  # blocks started and not stopped, as the client saw
        self._inputs = ArgumentStreams()
        self._change: Callable[[], None] | None = None  # the last event's, once it went out
        self._blocks: list[int] = []  # every block index seen, in order
        self._message: dict[str, Any] | None = None  # message_start's message
        self._message_sent = False
        self._start_inputs: dict[int, str] = {}  # a tool's input given whole in its start
        self._input: int | None = None
        self._output: int | None = None
        self._wholes = 0  # texts judged whole, each its own channel

    def is_terminal(self, event: SseEvent) -> bool:
        data = event.data
        return (
            data is not None
            and may_say(data, "message_stop")
            and self._type(event) == "message_stop"
        )

    def usage_in(self, event: SseEvent) -> Usage | None:
        if event.data is None or not may_say(event.data, '"usage"'):
            return None
        document = parse_event(event)
        if not isinstance(document, dict):
            return None
        if document.get("type") == "message_start":
            message = document.get("message")
            return self._usage(message.get("usage") if isinstance(message, dict) else None)
        return self._usage(document.get("usage"))

    def finish_reasons_in(self, event: SseEvent) -> list[str]:
        data = event.data
        if data is None:
            return []
        if "\\u" not in data and ("message_delta" not in data or _NAMED_STOP.search(data) is None):
            return []
        document = parse_event(event)
        if not isinstance(document, dict) or document.get("type") != "message_delta":
            return []
        delta = document.get("delta")
        reason = delta.get("stop_reason") if isinstance(delta, dict) else None
        return [reason] if isinstance(reason, str) else []

    def step(self, event: SseEvent) -> StreamStep | None:
        if event.data is None:
            return None
        if self._change is not None:
            self._change()  # the event before this one went out whole
            self._change = None
        document = parse_event(event)
        if not isinstance(document, dict):
            raise StreamMalformed("an event is not an object")
        kind = document.get("type")
        if event.event is not None and kind != event.event:
            raise StreamMalformed("an event's name is not its type")
        step = StreamStep(document=document)
        heard_of = _EVENT_KEYS.get(kind) if isinstance(kind, str) else None
        if heard_of is not None:  # an event's own strings: those a server adds
            self._unheard_of(document.get("index", -1), document, heard_of, step)
        if kind == "content_block_delta":
            self._delta(document, step)
        elif kind == "content_block_start":
            index = _index(document)
            block = document.get("content_block")
            if not isinstance(block, dict):
                raise StreamMalformed("a content_block_start has no block")
            self._started(index, block, step)
            self._change = lambda: self._open.add(index)
        elif kind == "content_block_stop":
            index = _index(document)
            step.ends.append(index)
            self._change = lambda: self._open.discard(index)
        elif kind == "message_start":
            self._message_start(document, step)
        elif kind == "message_delta":
            self._message_delta(document, step)
        elif kind == "message_stop":
            step.terminal = True
        elif kind == "ping":
            return step if step.wholes else None  # nothing to judge: it goes out as it came
        else:
            # An error, an event of a later version: every string in it but
            # identifiers, each judged whole before it goes out.
            self._read_whole(-1, document, step, family=-1)
        return step

    def _read_whole(
        self, index: int, value: dict[str, Any], step: StreamStep, family: int | None = None
    ) -> None:
        """Texts given once, whole (a server tool's result, a delta or an event not
        heard of): each its own channel, judged to its end before the event goes out."""
        found = Prompt()
        block_texts(value, found)
        self._wholes_of(index, found, step, family)

    def _unheard_of(
        self, index: Any, holder: Any, heard_of: frozenset[str], step: StreamStep
    ) -> None:
        """The strings of ``holder`` under keys not ``heard_of``, judged as wholes are."""
        found = Prompt()
        unheard_of(holder, heard_of, found)
        family = index if isinstance(index, int) else -1
        self._wholes_of(family, found, step, family)

    def _wholes_of(self, index: int, found: Prompt, step: StreamStep, family: int | None) -> None:
        for ref in found.texts:
            self._wholes += 1
            channel = (index, "whole", self._wholes)
            step.reads(ref.container, ref.key)
            step.wholes.append(Delta(channel, ref.get(), ref.set, family=family))

    def encode(self, event: SseEvent, step: StreamStep) -> bytes:
        document = step.document
        if (
            document.get("type") == "content_block_delta"
            and document.keys() <= _EVENT_KEYS["content_block_delta"] | {"type"}
            and _empty(document.get("delta"))
        ):
            return b""  # all its text is held back, and it says nothing else
        out = encode_sse(orjson.dumps(document), event.event)
        for index, text in self._start_inputs.items():
            if text:
                out += self.text_event((index, "input"), text)
        self._start_inputs.clear()
        return out

    def text_event(self, channel: Hashable, text: str) -> bytes:
        assert isinstance(channel, tuple)
        index, kind = channel
        delta_type, key = _KINDS[kind]
        delta = {"type": delta_type, key: text}
        return _event({"type": "content_block_delta", "index": index, "delta": delta})

    def blocked(self, channel: Hashable | None) -> bytes:
        out = bytearray()
        if not self._message_sent and self._message is not None:
            # Only what was heard of: a string elsewhere may be what was blocked.
            message = {
                k: v
                for k, v in self._message.items()
                if k in MESSAGE_KEYS | NOT_TEXT and not unread_strings({k: v}, set(), OPAQUE)
            }
            out += _event({"type": "message_start", "message": {**message, "content": []}})
        for index in sorted(self._open):
            out += _event({"type": "content_block_stop", "index": index})
        usage: dict[str, int] = {"output_tokens": self._output or 0}
        if self._input is not None:
            usage["input_tokens"] = self._input
        delta = {"stop_reason": "refusal", "stop_sequence": None, "stop_details": REFUSAL_DETAILS}
        out += _event({"type": "message_delta", "delta": delta, "usage": usage})
        return bytes(out + _event({"type": "message_stop"}))

    # -- events ---------------------------------------------------------------
    def _delta(self, document: dict[str, Any], step: StreamStep) -> None:
        index = _index(document)
        delta = document.get("delta")
        if not isinstance(delta, dict):
            raise StreamMalformed("a content_block_delta has no delta")
        found = _delta_kind(delta)
        delta_type = delta.get("type")
        heard_of = _DELTA_KEYS.get(delta_type) if isinstance(delta_type, str) else None
        if heard_of is not None:
            self._unheard_of(index, delta, heard_of, step)
        if found is None:
            if heard_of is None:
                self._read_whole(index, delta, step, family=index)  # a citation, a later delta
            return
        kind, key = found
        if isinstance(delta.get(key), str):
            text = delta[key]
            if kind == "input":  # a tool's input as JSON: its escapes written out
                text = self._inputs.decode((index, kind), delta, key, step)
            step.reads(delta, key)
            step.deltas.append(Delta((index, kind), text, _setter(delta, key)))

    def _started(self, index: int, block: dict[str, Any], step: StreamStep) -> None:
        """A block begins: the text it carries already is its first delta."""
        if index not in self._blocks:
            self._blocks.append(index)
        kind = block.get("type")  # any JSON value: a list cannot be looked up
        if not isinstance(kind, str):
            kind = None
        elif kind in ("text", "thinking") or kind in _TOOL_BLOCKS:
            self._unheard_of(index, block, BLOCK_KEYS[kind], step)
        if kind in ("text", "thinking"):
            assert isinstance(kind, str)
            value = block.get(kind)
            if isinstance(value, str) and value:
                step.reads(block, kind)
                step.deltas.append(Delta((index, kind), value, _setter(block, kind)))
            citations = block.get("citations")
            for citation in citations if isinstance(citations, list) else [citations]:
                if isinstance(citation, dict):
                    self._read_whole(index, citation, step)  # a page's text, quoted
        elif kind in _TOOL_BLOCKS:
            if isinstance(block.get("name"), str):
                # The tool's name comes whole, once: judged to its end before the block goes out.
                step.reads(block, "name")
                step.wholes.append(Delta((index, "name"), block["name"], _setter(block, "name")))
            if block.get("input") not in (None, {}, ""):
                given = block["input"]
                text = given if isinstance(given, str) else orjson.dumps(given).decode()
                block["input"] = {}  # sent on as a delta, as it was judged
                self._start_inputs[index] = text
                step.deltas.append(Delta((index, "input"), text, self._start_input(index)))
                step.rebuild = True
        else:
            # A server tool's result (or a block not heard of) comes whole in its
            # start, no delta follows: each of its texts is judged there and then.
            self._read_whole(index, block, step)

    def _message_start(self, document: dict[str, Any], step: StreamStep) -> None:
        message = document.get("message")
        if not isinstance(message, dict):
            raise StreamMalformed("a message_start has no message")
        self._message = message
        self._unheard_of(-1, message, MESSAGE_KEYS, step)
        step.usage = self._usage(message.get("usage"))
        content = message.get("content")
        if content is not None and not isinstance(content, list):
            raise StreamMalformed("a message_start's content is not a list")
        blocks = content if isinstance(content, list) else []
        for index, block in enumerate(blocks):
            if not isinstance(block, dict):
                raise StreamMalformed("a content block is not an object")
            self._started(index, block, step)

        def sent() -> None:
            self._message_sent = True
            self._open.update(range(len(blocks)))

        self._change = sent

    def _message_delta(self, document: dict[str, Any], step: StreamStep) -> None:
        step.usage = self._usage(document.get("usage"))
        step.ends.extend(self._blocks)  # a block rejected at its end makes this a refusal
        delta = document.get("delta")
        if not isinstance(delta, dict):
            return
        self._unheard_of(-1, delta, _STOP_KEYS, step)  # a refusal's explanation, a server's field
        reason = delta.get("stop_reason")
        if isinstance(reason, str):
            step.finish_reason = reason

        def refuse(_: str) -> None:
            delta["stop_reason"] = "refusal"
            delta["stop_details"] = dict(REFUSAL_DETAILS)

        step.set_finish_reason = refuse

    def _start_input(self, index: int) -> Callable[[str], None]:
        def put(text: str) -> None:
            self._start_inputs[index] = text

        return put

    def _usage(self, usage: Any) -> Usage | None:
        """Usage so far: input tokens from the start, output tokens from the last delta."""
        found = usage_of(usage, "input_tokens", "output_tokens")
        if found is None:
            return None
        if found.input_tokens is not None:
            self._input = found.input_tokens
        if found.output_tokens is not None:
            self._output = found.output_tokens
        return Usage(self._input, self._output)

    @staticmethod
    def _type(event: SseEvent) -> Any:
        document = parse_event(event)
        return document.get("type") if isinstance(document, dict) else None


def _index(document: dict[str, Any]) -> int:
    index = document.get("index")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise StreamMalformed("a content block event's index is not a number")
    return index


def _empty(delta: Any) -> bool:
    if not isinstance(delta, dict):
        return False
    found = _delta_kind(delta)
    if found is None or not delta.keys() <= {"type", found[1]}:
        return False
    return delta.get(found[1]) == ""


def _delta_kind(delta: dict[str, Any]) -> tuple[str, str] | None:
    """The channel kind a delta streams and the key of its text; None: no text."""
    delta_type = delta.get("type")
    return _DELTAS.get(delta_type) if isinstance(delta_type, str) else None


def _setter(holder: dict[str, Any], key: str) -> Callable[[str], None]:
    def put(value: str) -> None:
        holder[key] = value

    return put


def _event(document: dict[str, Any]) -> bytes:
    """An event as Anthropic names it: by its type."""
    return encode_sse(orjson.dumps(document), document["type"])
