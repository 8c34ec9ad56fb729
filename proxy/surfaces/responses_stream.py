"""The event stream of the OpenAI Responses API, to text deltas and back.

Each text of the answer is a channel, a :class:`Part`: an output item's
content part (output_text or refusal), reasoning text part, reasoning
summary part, or a call's arguments or input. Its text arrives in
``.delta`` events, and is repeated whole by its ``.done`` event, its
``content_part.done`` (or ``reasoning_summary_part.done``), its
``output_item.done`` and the terminal event's ``response.output``: those
places are *fills*, given the text as released, so the client never reads
there what the filters changed or held. A part first seen at one of them
(no delta ever carried it) is judged there and reaches the client only in
those places. A part ends at its ``.done`` event; an item at its
``output_item.done``; everything at the terminal event
(``response.completed``, ``response.incomplete``, ``response.failed``, or a
``data: [DONE]`` some servers send after it).

A block ends the stream with ``response.incomplete``,
``incomplete_details.reason: "content_filter"``, the items finished so far
and the blocked one emptied. Events are inserted (text released at a part's
end) and dropped (a delta whose text is held back), so ``sequence_number``
is renumbered to stay strictly increasing.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable
from typing import Any

import orjson

from proxy.formats.sse import DONE_DATA, SseEvent
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
    written_out,
)
from proxy.surfaces.json_escapes import ArgumentStreams
from proxy.surfaces.responses_items import (
    PART_AUDIO,
    PART_KEYS,
    REASONING_PART_KEYS,
    RESPONSE_KEYS,
    RESPONSES_OPAQUE,
    Place,
    annotation_places,
    empty_item,
    finish_reason,
    forget_written,
    mark_filtered,
    notes_places,
    other_places,
    output_places,
    part_keys,
    unheard_of_places,
)
from proxy.surfaces.responses_numbers import Numbering
from proxy.surfaces.responses_parts import (
    DELTAS,
    DONES,
    EVENT_KEYS,
    LIFECYCLE,
    OPAQUE,
    PART_EVENTS,
    TERMINAL,
    TERMINAL_MARKS,
    Part,
    default_delta,
)
from proxy.surfaces.unheard_of import unheard_of


class ResponsesStream(StreamCodec):
    keeps_text = True  # fills repeat a part's whole text as released
    # No text: tokens, OpenAI's padding, item ids, base64 audio and images, and
    # what a Response echoes of its request.
    opaque = Opaque(
        anywhere=frozenset({"logprobs", "obfuscation", "item_id", "partial_image_b64"}),
        by_type={
            **RESPONSES_OPAQUE.by_type,
            "response": RESPONSES_OPAQUE.top,
            "response.audio.delta": frozenset({"delta"}),
        },
    )

    def __init__(self) -> None:
        self._numbers = Numbering()
        self._arguments = ArgumentStreams()  # calls' JSON arguments, escapes written out
        self._named = True  # upstream events carry "event:" lines
        self._step: StreamStep | None = None  # the event being judged
        self._template: dict[str, Any] = {}  # the Response as last announced
        self._added: dict[int, dict[str, Any]] = {}  # output items as added
        self._done: dict[int, dict[str, Any]] = {}  # output items as finished
        self._parts: dict[int, list[Part]] = {}  # parts seen, per output item
        self._seen: set[Part] = set()
        self._delta_type: dict[Part, str] = {}
        self._announced = 0  # texts judged whole where they were announced
        self._done_now: int | None = None  # the item the event being judged finishes

    # -- reading -------------------------------------------------------------
    def is_terminal(self, event: SseEvent) -> bool:
        data = event.data
        if data == DONE_DATA:
            return True
        if data is None or not may_say(data, *TERMINAL_MARKS):
            return False
        document = parse_event(event)
        return isinstance(document, dict) and document.get("type") in TERMINAL

    def usage_in(self, event: SseEvent) -> Usage | None:
        if event.data is None or not may_say(event.data, '"usage"'):
            return None
        document = parse_event(event)
        if not isinstance(document, dict) or document.get("type") not in TERMINAL:
            return None
        response = document.get("response")
        if not isinstance(response, dict):
            return None
        return usage_of(response.get("usage"), "input_tokens", "output_tokens")

    def finish_reasons_in(self, event: SseEvent) -> list[str]:
        data = event.data
        if data is None or not may_say(data, *TERMINAL_MARKS):
            return []
        document = parse_event(event)
        if not isinstance(document, dict) or document.get("type") not in TERMINAL:
            return []
        reason = finish_reason(document.get("response"))
        return [] if reason is None else [reason]

    def step(self, event: SseEvent) -> StreamStep | None:
        if event.data is None:
            return None
        self._done_now = None
        if event.data == DONE_DATA:
            # LiteLLM ends its Responses streams as chat streams end, after response.completed.
            self._numbers.arrive(None)  # text released here goes after all that was sent
            step = self._step = StreamStep(terminal=True)
            return step
        document = parse_event(event)
        if not isinstance(document, dict):
            raise StreamMalformed("an event is not an object")
        self._named = event.event is not None
        step = self._step = StreamStep(document=document)
        number = document.get("sequence_number")
        step.rebuild = self._numbers.arrive(number if isinstance(number, int) else None)
        kind = document.get("type")
        if kind is not None and not isinstance(kind, str):
            raise StreamMalformed("an event's type is not a string")
        if kind in DELTAS:
            part = self._part(document, DELTAS[kind])
            text = document.get("delta")
            if isinstance(text, str) and part.kind == "arguments":
                text = self._arguments.decode(part, document, "delta", step)
            if isinstance(text, str):
                self._delta_type[part] = kind
                self._seen.add(part)
                step.reads(document, "delta")
                step.deltas.append(Delta(part, text, _setter(document, "delta")))
                step.drop_tokens = lambda: _empty_logprobs(document)
        elif kind in DONES:
            part_kind, key = DONES[kind]
            part = self._part(document, part_kind)
            self._place(step, part, document, key, end=True)
            if part_kind == "arguments":  # OpenAI repeats the call's name here
                self._place(step, self._part_at(part.output, "name", 0), document, "name", True)
        elif kind in PART_EVENTS:
            self._part_event(step, document, end=PART_EVENTS[kind])
        elif kind in ("response.output_item.added", "response.output_item.done"):
            self._item_event(step, document, end=kind == "response.output_item.done")
        elif kind in TERMINAL:
            self._terminal(step, document)
        elif kind in LIFECYCLE:
            self._announced_response(step, document)
        elif kind == "response.audio.transcript.done":
            step.ends.append(self._part(document, "transcript"))
        elif kind not in OPAQUE:
            # An event not heard of (an annotation, a later version's): every
            # string in it but identifiers, each judged whole before it goes out,
            # and joined with those of the events of the same place before it.
            for _, _, holder, key in other_places(document):
                self._announce(step, holder, key, _family(document))
        heard_of = EVENT_KEYS.get(kind) if kind is not None else None
        if heard_of is not None:
            # A known event's strings under keys not heard of: judged the same way.
            found: list[Place] = []
            unheard_of_places(document, heard_of, found)
            for _, _, holder, key in found:
                self._announce(step, holder, key, _family(document))
        return step

    def _announced_response(self, step: StreamStep, document: dict[str, Any]) -> None:
        """The Response as announced: its last announcement is a blocked stream's
        ending, and items announced in it are judged as they stand."""
        response = document.get("response")
        if not isinstance(response, dict):
            return
        self._template = response
        self._announce_written(step, response)
        output = response.get("output")
        for item in output if isinstance(output, list) else ():
            if not isinstance(item, dict):
                raise StreamMalformed("an output item is not an object")
            for _, _, holder, key in output_places(item) + annotation_places(item):
                self._announce(step, holder, key)

    def _announce_written(self, step: StreamStep, response: dict[str, Any]) -> None:
        """vLLM's ``output_messages`` (the answer as the model wrote it): every string
        and key judged whole, as the answer's output is where it is given; and the
        Response's strings under keys not heard of, as they stand."""
        found = Prompt()
        written_out(response.get("output_messages"), found)
        unheard_of(response, RESPONSE_KEYS, found)
        for ref in found.texts:
            self._announced += 1
            channel = Part(-self._announced, "announced", 0)
            step.reads(ref.container, ref.key)
            step.wholes.append(Delta(channel, ref.get(), ref.set))

    def _announce(self, step: StreamStep, holder: Any, key: Any, family: Any = None) -> None:
        """A text given once, whole, that no later event repeats as such: its own
        channel, judged to its end before its event goes out (and joined with the
        texts of its ``family`` before it, see StreamJudge)."""
        text = _at(holder, key)
        if isinstance(text, str) and text:
            self._announced += 1
            channel = Part(-self._announced, "announced", 0)  # no output item's
            step.reads(holder, key)
            step.wholes.append(Delta(channel, text, _setter(holder, key), family=family))

    def _announce_all(self, step: StreamStep, places: list[Place]) -> None:
        for _, _, holder, key in places:
            self._announce(step, holder, key)

    def _part(self, document: dict[str, Any], kind: str) -> Part:
        # An audio transcript belongs to no output item: it ends with the Response.
        output = -1 if kind == "transcript" else document.get("output_index", 0)
        index = document.get("summary_index" if kind == "summary" else "content_index", 0)
        if kind not in ("content", "reasoning", "summary"):
            index = 0
        if not isinstance(output, int) or not isinstance(index, int):
            raise StreamMalformed("an event's output_index or content_index is not a number")
        return self._part_at(output, kind, index)

    def _part_at(self, output: int, kind: str, index: int) -> Part:
        part = Part(output, kind, index)
        known = self._parts.setdefault(output, [])
        if part not in known:
            known.append(part)
        return part

    def _place(self, step: StreamStep, part: Part, holder: Any, key: Any, end: bool) -> None:
        """A place in an event where a part's text is (its start, or a repetition)."""
        text = _at(holder, key)
        if not isinstance(text, str):
            return
        if part.kind == "arguments" and part not in self._seen and isinstance(holder, dict):
            text = self._arguments.decode(part, holder, key, step)  # as the client parses it
        step.reads(holder, key)
        if key == "refusal":
            self._delta_type.setdefault(part, "response.refusal.delta")
        if not end:
            if part in self._seen:
                step.fills.append((part, _filler(holder, key)))  # what was sent so far
            elif text:
                # An item or part announced with text in it: the part's first text.
                self._seen.add(part)
                step.deltas.append(Delta(part, text, _setter(holder, key)))
            return
        if part not in self._seen:
            # Text no delta carried: judged here, and given only where it is repeated
            # (the part ends here, so what the judge held back goes out here too).
            self._seen.add(part)
            step.deltas.append(Delta(part, text, _discard))
        step.fills.append((part, _filler(holder, key)))
        if part not in step.ends:
            step.ends.append(part)

    def _part_event(self, step: StreamStep, document: dict[str, Any], end: bool) -> None:
        part_doc = document.get("part")
        if not isinstance(part_doc, dict):
            return
        if "summary_index" in document:
            kind = "summary"
        else:
            kind = "reasoning" if part_doc.get("type") == "reasoning_text" else "content"
        part = self._part(document, kind)
        found: list[Place] = []  # judged as they stand: annotations, keys not heard of
        if kind != "content":
            unheard_of_places(part_doc, REASONING_PART_KEYS, found)
            self._announce_all(step, found)
            self._place(step, part, part_doc, "text", end)
            return
        found += notes_places(part_doc)  # annotations: given whole, wherever repeated
        keys = part_keys(part_doc)  # none: a part not heard of, read whole
        if keys:
            unheard_of_places(part_doc, PART_KEYS, found)
        else:
            found += other_places(part_doc, skip=PART_AUDIO)  # a part not heard of
        self._announce_all(step, found)
        for place_kind, key in keys:
            at = part if place_kind == "content" else self._part_at(part.output, "also", part.index)
            self._place(step, at, part_doc, key, end)

    def _item_event(self, step: StreamStep, document: dict[str, Any], end: bool) -> None:
        item = document.get("item")
        output = document.get("output_index", 0)
        if not isinstance(item, dict) or not isinstance(output, int):
            raise StreamMalformed("an output item event has no item or no output_index")
        (self._done if end else self._added)[output] = item
        if end:
            self._done_now = output  # not filled yet: a block now must not repeat it
        for _, _, holder, key in annotation_places(item):
            self._announce(step, holder, key)
        for kind, index, holder, key in output_places(item):
            part = self._part_at(output, kind, index)
            if end:
                self._place(step, part, holder, key, end=True)
            elif kind == "other":
                # An item not heard of, announced: its strings are judged as they
                # stand, and again as the item is done (they may differ by then).
                self._announce(step, holder, key)
            elif kind == "name":
                # A call's name comes whole when it is announced: judged there, to
                # its end (an empty one is no name yet: judged where it comes).
                if holder[key] and part not in self._seen:
                    self._seen.add(part)
                    step.reads(holder, key)
                    step.wholes.append(Delta(part, holder[key], _setter(holder, key)))
            else:
                self._place(step, part, holder, key, end=False)
        if end:
            for part in self._parts.get(output, ()):
                if part not in step.ends:
                    step.ends.append(part)

    def _terminal(self, step: StreamStep, document: dict[str, Any]) -> None:
        step.terminal = True
        response = document.get("response")
        if not isinstance(response, dict):
            return
        self._announce_written(step, response)
        output = response.get("output")
        for position, item in enumerate(output if isinstance(output, list) else ()):
            if not isinstance(item, dict):
                raise StreamMalformed("an output item is not an object")
            for _, _, holder, key in annotation_places(item):
                self._announce(step, holder, key)
            for kind, index, holder, key in output_places(item):
                part = self._part_at(position, kind, index)
                self._place(step, part, holder, key, end=True)
        for parts in self._parts.values():
            step.ends += [part for part in parts if part not in step.ends]
        step.usage = usage_of(response.get("usage"), "input_tokens", "output_tokens")
        step.drop_tokens = lambda: forget_written(response)
        step.finish_reason = finish_reason(response)

        def set_reason(reason: str) -> None:
            # An at_stream_end filter blocked text already sent: the end says so.
            mark_filtered(response, reason)
            document["type"] = "response.incomplete"

        step.set_finish_reason = set_reason

    # -- writing -------------------------------------------------------------
    def encode(self, event: SseEvent, step: StreamStep) -> bytes:
        document = step.document
        kind = document.get("type")
        if kind in DELTAS and document.get("delta") == "" and document.keys() <= EVENT_KEYS[kind]:
            self._numbers.dropped()  # all of its text is held back, and it says nothing else
            return b""
        if self._numbers.current is not None:
            document["sequence_number"] = self._numbers.current
        return self._event(document)

    def text_event(self, channel: Hashable, text: str) -> bytes:
        assert isinstance(channel, Part)
        kind = self._delta_type.get(channel) or default_delta(channel, self._added)
        if kind is None:
            return b""  # its text is given where it is repeated
        step = self._step
        if step is not None and (step.terminal or channel in step.ends):
            number = self._numbers.before_current()  # the rest, before the part's end
            step.rebuild = True
        else:
            number = self._numbers.after()  # the stream ended without its terminal event
        document: dict[str, Any] = {"type": kind, "sequence_number": number}
        item = self._added.get(channel.output) or self._done.get(channel.output) or {}
        if isinstance(item.get("id"), str):
            document["item_id"] = item["id"]
        if channel.output >= 0:  # an audio transcript is no output item's
            document["output_index"] = channel.output
        if channel.kind in ("content", "reasoning"):
            document["content_index"] = channel.index
        elif channel.kind == "summary":
            document["summary_index"] = channel.index
        document["delta"] = text
        if kind == "response.output_text.delta":
            document["logprobs"] = []
        return self._event(document)

    def blocked(self, channel: Hashable | None) -> bytes:
        stopped = channel.output if isinstance(channel, Part) else None
        output: list[Any] = []
        for position in sorted(self._added.keys() | self._done.keys()):
            item = self._done.get(position)
            if item is None or position in (stopped, self._done_now):
                item = copy.deepcopy(self._added.get(position) or item or {})
                empty_item(item)
                item["status"] = "incomplete"
                for ref in unread_strings(item, set(), Opaque()):  # what no judge has seen yet
                    ref.set("")
            output.append(item)
        # Only what was heard of: a string elsewhere may be what was blocked, or unjudged.
        template = {
            k: v
            for k, v in self._template.items()
            if k in RESPONSE_KEYS | NOT_TEXT and not unread_strings({k: v}, set(), RESPONSES_OPAQUE)
        }
        # Ended by a filter, not an error: OpenAI's own end says ``"error": null``.
        response = {**template, "output": output, "usage": None, "error": None}
        forget_written(response)  # as announced, they may hold what was blocked
        mark_filtered(response, "content_filter")
        document = {"type": "response.incomplete", "sequence_number": self._numbers.after(),
                    "response": response}  # fmt: skip
        return self._event(document)

    def _event(self, document: dict[str, Any]) -> bytes:
        name = document.get("type") if self._named else None
        return encode_sse(orjson.dumps(document), name if isinstance(name, str) else None)


def _at(holder: Any, key: Any) -> Any:
    """``holder[key]`` of a dict or a list (a string in a list of an item's strings)."""
    return holder.get(key) if isinstance(holder, dict) else holder[key]


def _setter(holder: Any, key: Any) -> Callable[[str], None]:
    def put(value: str) -> None:
        holder[key] = value

    return put


def _filler(holder: Any, key: Any) -> Callable[[str], None]:
    def fill(released: str) -> None:
        if _at(holder, key) != released:
            holder[key] = released
            if isinstance(holder, dict):
                _empty_logprobs(holder)  # they would spell out what was changed

    return fill


def _family(document: dict[str, Any]) -> tuple[Any, ...]:
    """Where an event's text is: its output, content or summary index, its item id."""
    place = document.items()
    return tuple(v for k, v in place if k.endswith(("_index", "item_id")) and _key(v))


def _key(value: Any) -> bool:
    return isinstance(value, int | str)


def _discard(value: str) -> None:
    pass


def _empty_logprobs(holder: dict[str, Any]) -> None:
    if holder.get("logprobs"):
        holder["logprobs"] = []
