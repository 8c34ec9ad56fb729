"""What an API surface is to the proxy: where its text is, and how it says no.

A surface is one module with one :class:`Surface` (and, for streams, one
:class:`StreamCodec` per streamed answer). The request path calls only this
interface, so it has no code of any one API in it; adding a surface is one
module plus a line in :mod:`proxy.surfaces` (see docs/surfaces.md).

Text is found as :class:`TextRef` values, places in the parsed body that a
filter's redaction is written back into. A prompt is every text the model
will read; an answer is a list of :class:`AnswerPart` (a choice, an output
item, a message), each judged as one text and withheld whole when blocked.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import orjson

from proxy.formats.errors import error_body
from proxy.formats.sse import SseEvent, encode_event
from proxy.surfaces.kinds import KINDS, ROLES, STATES


@dataclass(frozen=True, slots=True)
class TextRef:
    """Where one text lives in a parsed body: ``container[key]``."""

    container: Any  # dict or list
    key: Any  # str or int

    def get(self) -> str:
        value: str = self.container[self.key]
        return value

    def set(self, text: str) -> None:
        self.container[self.key] = text


@dataclass(frozen=True, slots=True)
class KeyRef(TextRef):
    """A key of ``container`` that is itself text the model reads (a schema's
    property name: a template writes the definition out whole).

    Writing it back renames the key in place, keeping the order of the keys and
    the value. A new name another key already has is told apart by a number, so
    that no property is lost. A value of ``container`` judged as a text must be
    written back before its key is renamed (the prompt lists it first).
    """

    def get(self) -> str:
        name: str = self.key
        return name

    def set(self, text: str) -> None:
        mapping: dict[str, Any] = self.container
        if text == self.key or self.key not in mapping:
            return
        name, n = text, 2
        while name in mapping:
            name, n = f"{text} ({n})", n + 1
        items = [(name if key == self.key else key, value) for key, value in mapping.items()]
        mapping.clear()
        mapping.update(items)


@dataclass(slots=True)
class Prompt:
    """Every text of a request the model reads, and the parts no text filter can."""

    texts: list[TextRef] = field(default_factory=list)
    uninspected: list[str] = field(default_factory=list)  # kinds: image, audio, file, tokens


@dataclass(slots=True)
class AnswerPart:
    """One unit of an answer (a choice, an output item): judged as one text."""

    texts: list[TextRef]
    withhold: Callable[[], None]  # the API's own way of saying the content was filtered
    # Drop what spells its text out again as tokens (logprobs, vLLM's token ids).
    drop_tokens: Callable[[], None] = lambda: None


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(slots=True)
class Delta:
    """A piece of streamed text on one channel, and where to put what may go out."""

    channel: Hashable  # (group, field...): one text the stream filters judge
    text: str
    put: Callable[[str], None]
    released: str = ""  # what the stream judge put there: the text that may go out now
    # A whole text's family (the events not heard of of one item): their texts,
    # as released, are judged joined too, so a match split across them is found.
    family: Hashable = None


# Keys whose strings are not text: identifiers, states, sealed state.
# (A name is text: the model reads the name of the tool it called.)
NOT_TEXT = frozenset({
    "id", "type", "status", "role", "object", "call_id", "tool_call_id", "server_label",
    "approval_request_id", "caller_id", "namespace", "encrypted_content", "fingerprint",
    "file_id", "container_id", "signature",
})  # fmt: skip

# In a request an identifier is text too: chat templates write ids out as they
# are (Kimi K2's writes a call's ``id`` and a tool result's ``tool_call_id``), so
# what the model reads may be spelled there. Only sealed state is no text, and
# a kind, a state or a role that the APIs define (``PROMPT_DEFINED``): any other
# value of one is text, as a server that does not check it hands it on.
PROMPT_NOT_TEXT = frozenset({"encrypted_content", "signature", "fingerprint"})
PROMPT_DEFINED: Mapping[str, frozenset[str]] = MappingProxyType(
    {"type": KINDS, "status": STATES, "role": ROLES}
)

# Opaque keys that hold a string (an end's reason, a model's name, base64): an
# object or a list under one is read like any other.
_STRING_ONLY = frozenset({
    "item_id", "obfuscation", "finish_reason", "stop_reason", "model", "system_fingerprint",
    "service_tier", "data", "encrypted_index", "result", "partial_image_b64", "file_data",
    "file_url",
})  # fmt: skip


@dataclass(frozen=True, slots=True)
class Opaque:
    """Where an answer's strings are no text (see ``with_the_rest``): the keys of
    the answer itself skipped whole (echoes of the request, its model), the keys
    skipped whole at any depth (counts, tokens), and the keys skipped whole in an
    object of a given ``type`` (a generated image's base64, sealed reasoning)."""

    top: frozenset[str] = frozenset()
    anywhere: frozenset[str] = frozenset()
    by_type: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # The keys whose strings are no text, at any depth (an object under one is read),
    # and those whose strings are no text when one of the values given.
    not_text: frozenset[str] = NOT_TEXT
    defined: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def skipped(self, node: dict[str, Any], top: bool) -> frozenset[str]:
        """The keys of ``node`` skipped whole, whatever their value."""
        skipped = self.anywhere | self.top if top else self.anywhere
        kind = node.get("type", node.get("object"))  # a Response is an "object"
        if isinstance(kind, str) and kind in self.by_type:
            skipped = skipped | self.by_type[kind]
        return skipped


def places(refs: Iterable[TextRef]) -> set[tuple[int, Any]]:
    """Where ``refs`` read values, as ``unread_strings`` takes them (a key read as
    text is a ref of another kind: its value is not read by it)."""
    return {(id(ref.container), ref.key) for ref in refs if type(ref) is TextRef}


def unread_strings(body: Any, read: set[tuple[int, Any]], opaque: Opaque) -> list[TextRef]:
    """Every string of ``body``, at any depth, at no place of ``read`` (``(id(holder),
    key)``), but empty ones and what ``opaque`` skips (identifiers, unless told)."""
    found: list[TextRef] = []
    stack: list[Any] = [body] if isinstance(body, dict | list) else []
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            skipped = opaque.skipped(node, node is body)
            for key, inner in node.items():
                if key in skipped and not (key in _STRING_ONLY and isinstance(inner, dict | list)):
                    continue
                if isinstance(inner, str):
                    if (
                        inner
                        and key not in opaque.not_text
                        and inner not in opaque.defined.get(key, ())
                        and (id(node), key) not in read
                    ):
                        found.append(TextRef(node, key))
                elif isinstance(inner, dict | list):
                    stack.append(inner)
        else:  # a list
            for i, inner in enumerate(node):
                if isinstance(inner, str):
                    if inner and (id(node), i) not in read:
                        found.append(TextRef(node, i))
                elif isinstance(inner, dict | list):
                    stack.append(inner)
    return found


@dataclass(slots=True)
class StreamStep:
    """What one upstream event means to the stream judge.

    ``deltas``: new text per channel; ``ends``: groups whose every channel is
    complete (a finish_reason, an item done); ``fills``: places that repeat a
    channel's whole text (a ``.done`` event), given the text as released;
    ``terminal``: the surface's last event; ``rebuild``: encode the event
    from ``document`` even when no text in it changed (the codec edited it).
    ``wholes``: texts that arrive whole in this event and go out in it (a
    server tool's result given in its block's start), each its own channel,
    judged to its end before the event goes out.
    """

    document: Any = None
    deltas: list[Delta] = field(default_factory=list)
    wholes: list[Delta] = field(default_factory=list)
    ends: list[Hashable] = field(default_factory=list)
    fills: list[tuple[Hashable, Callable[[str], None]]] = field(default_factory=list)
    terminal: bool = False
    usage: Usage | None = None
    finish_reason: str | None = None  # an end's reason, as the client gets it
    set_finish_reason: Callable[[str], None] | None = None
    rebuild: bool = False
    drop_tokens: Callable[[], None] | None = None
    # The places the codec judges (``(id(holder), key)``): every other string of
    # the event is judged whole after the step (proxy.surfaces.unheard_of).
    read: set[tuple[int, Any]] = field(default_factory=set)

    def reads(self, holder: Any, key: Any) -> None:
        """``holder[key]`` is a text the codec judges: a delta, a fill, a whole."""
        self.read.add((id(holder), key))


class StreamMalformed(ValueError):
    """An event that is not of the surface's stream."""


class StreamCodec:
    """Reads one streamed answer's events and writes the judged ones; one per stream."""

    # Where an event's strings are no text, for the sweep after each step.
    opaque: Opaque = Opaque()

    def step(self, event: SseEvent) -> StreamStep | None:
        """What ``event`` carries; None for an event with nothing to judge (relayed as is)."""
        raise NotImplementedError

    def encode(self, event: SseEvent, step: StreamStep) -> bytes:
        """``event`` again, from its edited document (the same event name)."""
        return encode_sse(orjson.dumps(step.document), event.event)

    def text_event(self, channel: Hashable, text: str) -> bytes:
        """A new event carrying ``text`` on ``channel`` (text released at the end)."""
        raise NotImplementedError

    def blocked(self, channel: Hashable | None) -> bytes:
        """The events that end the stream when a filter blocks it."""
        raise NotImplementedError

    def is_terminal(self, event: SseEvent) -> bool:
        """Whether ``event`` is the stream's last (cheap: relayed streams ask it of every event)."""
        raise NotImplementedError

    def usage_in(self, event: SseEvent) -> Usage | None:
        """The usage ``event`` reports, if any (cheap unless it does)."""
        return None

    def quiet(self, chunk: bytes) -> bool:
        """Whether no event in ``chunk`` (whole events) can end the stream, report
        usage or name a finish reason, so a stream nothing judges may forward it
        unparsed. False when unsure: the events are then parsed and asked one by one."""
        return False

    def finish_reasons_in(self, event: SseEvent) -> list[str]:
        """The reasons the ends in ``event`` give, if any (cheap unless it has one):
        what a relayed stream, never stepped, still tells the capability record."""
        return []

    # Whether fills need each channel's whole released text (kept only then).
    keeps_text = False


class Surface:
    """One API surface; a stateless singleton per label."""

    label: str = ""
    needs: str = "a valid body"  # what a request lacks when prompt() is None
    streams: bool = True  # its answers may be event streams
    # Where an answer's strings are no text, for the sweep after the reading
    # (proxy.surfaces.unheard_of.with_the_rest).
    answer_opaque: Opaque = Opaque()
    # The request's keys that hold the conversation, swept after ``prompt``
    # (see ``read_prompt``), and where their strings are no text.
    prompt_swept: tuple[str, ...] = ()
    prompt_opaque: Opaque = Opaque(not_text=PROMPT_NOT_TEXT, defined=PROMPT_DEFINED)

    def prompt(self, body: Any) -> Prompt | None:
        """The request's texts; None when the body is not of this surface's shape."""
        raise NotImplementedError

    def read_prompt(self, body: Any) -> Prompt | None:
        """``prompt``, and every other string of the conversation.

        Model servers render more of a message than the API defines (a
        template's ``message.thinking``, a part's or a block's field a later
        version adds), and an adapter reads each value by its expected shape:
        so after the reading, every string under the keys ``prompt_swept`` it
        left out, at any depth, is judged too (identifiers among them: templates
        write them out), but what ``prompt_opaque`` skips (images, audio, files,
        sealed state, a kind, a state or a role the APIs define).
        """
        prompt = self.prompt(body)
        if prompt is None or not isinstance(body, dict):
            return prompt
        read = places(prompt.texts)
        for key in self.prompt_swept:
            value = body.get(key)
            if isinstance(value, dict | list):
                prompt.texts += unread_strings(value, read, self.prompt_opaque)
        return prompt

    def answer(self, body: Any) -> list[AnswerPart] | None:
        """The answer's parts; None when the body is not an answer of this surface."""
        raise NotImplementedError

    def stream(self, request_body: Any) -> StreamCodec:
        raise NotImplementedError

    def usage(self, body: Any) -> Usage | None:
        return None

    def finish_reasons(self, body: Any) -> list[str]:
        return []

    def model(self, body: Any) -> str | None:
        model = body.get("model") if isinstance(body, dict) else None
        return model if isinstance(model, str) else None

    def input_messages(self, body: Any) -> Any:
        """The prompt as spans show it (telemetry.trace_content)."""
        return None

    def output_messages(self, body: Any) -> Any:
        return None

    def error_body(
        self, message: str, code: str, error_type: str | None = None, status: int | None = None
    ) -> bytes:
        """An error in this API's own shape (OpenAI's unless a surface says otherwise).

        ``status``: the HTTP status it is sent with, for APIs whose error type says it.
        """
        return error_body(message, code, error_type)

    def error_event(self, message: str, code: str, status: int) -> bytes:
        """The event that ends a stream the upstream broke off (OpenAI's: a data-only event)."""
        return encode_event(self.error_body(message, code, status=status))

    def blocked_status(self) -> int:
        return 400


def encode_sse(data: bytes, event: str | None = None) -> bytes:
    """One event: an ``event:`` line when named, then the data (one JSON line)."""
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + data + b"\n\n"


def may_say(data: str, *marks: str) -> bool:
    """Whether the JSON text ``data`` may hold one of ``marks`` once parsed.

    A cheap test before a parse, made true also by any ``\\u`` escape: JSON may
    spell every letter of a key or value that way ("\\u0075sage" is "usage"),
    and a literal search would read such an event as saying nothing.
    """
    return "\\u" in data or any(mark in data for mark in marks)


def parse_event(event: SseEvent) -> Any:
    try:
        return orjson.loads(event.data or "")
    except orjson.JSONDecodeError as exc:
        raise StreamMalformed("an event's data is not JSON") from exc


def usage_of(usage: Any, input_key: str, output_key: str) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    return Usage(_count(usage.get(input_key)), _count(usage.get(output_key)))


def _count(value: Any) -> int | None:
    # JSON true is a Python int too: a span must not read it as one token.
    return value if type(value) is int and value >= 0 else None


# Part types no text filter can read, by the kind they are counted as.
UNINSPECTED_KINDS = {
    "image_url": "image",
    "input_image": "image",
    "image": "image",
    "input_audio": "audio",
    "audio": "audio",
    "file": "file",
    "input_file": "file",
    "document": "file",
    "video_url": "video",
}


def part_kind(part: Any) -> str:
    kind = part.get("type") if isinstance(part, dict) else None
    return UNINSPECTED_KINDS.get(kind, "other") if isinstance(kind, str) else "other"


def content_at(
    holder: dict[str, Any], key: str, found: Prompt, part: Callable[[Any], None]
) -> None:
    """The texts of ``holder[key]`` as both APIs give content: a string, a list of
    strings and parts, or one part; ``part`` reads a part's own texts."""
    value = holder.get(key)
    if isinstance(value, str):
        found.texts.append(TextRef(holder, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, str):
                found.texts.append(TextRef(value, i))
            else:
                part(item)
    elif isinstance(value, dict):
        part(value)
    elif value is not None:
        found.uninspected.append("other")


def written_out(value: Any, prompt: Prompt) -> None:
    """Every string in a JSON value a template writes out whole, at any depth, and
    every key: a tool's definition, a schema, a document.

    A node's values are listed before its keys, so that a redacted value is
    written back before its key is renamed (see :class:`KeyRef`).
    """
    stack = [value] if isinstance(value, dict | list) else []
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, item in items:
            if isinstance(item, str):
                prompt.texts.append(TextRef(node, key))
            elif isinstance(item, dict | list):
                stack.append(item)
        if isinstance(node, dict):
            prompt.texts.extend(KeyRef(node, key) for key in node if isinstance(key, str))
