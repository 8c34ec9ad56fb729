"""OpenAI chat completions: ``POST /v1/chat/completions`` and its aliases.

The prompt is every text of every message, whatever its role: content in
any shape, an assistant's refusal and reasoning (LiteLLM's thinking blocks
too), its tool calls' names and arguments (and the legacy ``function_call``),
a message's ``name``, tool results; and every tool's description and every string of its parameter
schema, ``chat_template`` and ``documents`` (vLLM reads both into the
prompt), ``response_format`` and ``tool_choice``. The answer, per choice:
content, refusal, reasoning and thinking blocks, tool-call names and
arguments and an audio transcript. A stream's channels
are the same fields of each choice's deltas (content given as parts
too), a tool call's arguments one channel per call.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable
from typing import Any

import orjson

from proxy.formats.sse import SseEvent
from proxy.surfaces.base import (
    PROMPT_DEFINED,
    PROMPT_NOT_TEXT,
    AnswerPart,
    Delta,
    KeyRef,
    Opaque,
    Prompt,
    StreamCodec,
    StreamMalformed,
    StreamStep,
    Surface,
    TextRef,
    Usage,
    encode_sse,
    may_say,
    parse_event,
    unread_strings,
    usage_of,
    written_out,
)
from proxy.surfaces.json_escapes import ArgumentStreams

# The roles the APIs define (vLLM takes any other as well: a custom role is text).
from proxy.surfaces.kinds import ROLES
from proxy.surfaces.openai_text import (
    arguments_at,
    content_texts,
    media_texts,
    string_at,
)
from proxy.surfaces.unheard_of import drop_unheard_of, unheard_of

DONE = b"data: [DONE]\n\n"
# A finish_reason that is a string, not null (a text's own quotes are escaped: \").
_NAMED_REASON = re.compile(r'"finish_reason"\s*:\s*"')
# Message fields that are text the model reads, beside content.
_MESSAGE_TEXT = ("refusal", "reasoning_content", "reasoning")
# Answer fields withheld with a filtered choice.
_ANSWER_FIELDS = (
    "refusal", "reasoning_content", "reasoning", "tool_calls", "function_call", "audio",
    "annotations", "thinking_blocks", "provider_specific_fields",
)  # fmt: skip
# The keys of an answer's objects read above (or no text: counts, token ids, the
# prompt's own logprobs); a string under any other key is judged too.
ANSWER_KEYS = frozenset({
    "id", "object", "created", "model", "choices", "usage", "system_fingerprint",
    "service_tier", "prompt_logprobs", "prompt_token_ids", "kv_transfer_params",
})  # fmt: skip
_CHOICE_KEYS = frozenset(
    {"index", "message", "finish_reason", "logprobs", "stop_reason", "token_ids", "matched_stop"}
)
# A chunk's and a streamed choice's (OpenAI's ``obfuscation`` is random padding).
CHUNK_KEYS = ANSWER_KEYS | {"obfuscation"}
_STREAM_CHOICE_KEYS = _CHOICE_KEYS - {"message"} | {"delta"}
# What each chunk written by the proxy repeats of the upstream's (no text).
_TEMPLATE_KEYS = CHUNK_KEYS - {"choices", "usage", "obfuscation"}
# (OpenRouter's generated "images" are data URLs: no text.)
_MESSAGE_KEYS = frozenset({"content", "tool_calls", "function_call", "audio", "annotations",
                           "images", *_MESSAGE_TEXT, *_ANSWER_FIELDS})  # fmt: skip
_CALL_KEYS = frozenset({"index", "function", "custom"})
# A request's tool call: what its reading takes, and the types the API defines.
_PROMPT_CALL_KEYS = _CALL_KEYS | {"id", "type"}
_PROMPT_FUNCTION_KEYS = frozenset({"name", "arguments", "parameters"})
_CALL_TYPES = frozenset({"function", "custom"})
_CUSTOM_KEYS = frozenset({"name", "input"})
_FUNCTION_KEYS = frozenset({"name", "arguments", "input"})
_AUDIO_KEYS = frozenset({"data", "expires_at", "transcript"})
_ANNOTATION_KEYS = frozenset({"url_citation"})
_CITATION_KEYS = frozenset({"title", "url", "start_index", "end_index"})
_THINKING_KEYS = frozenset({"thinking", "data"})
_PROVIDER_KEYS = frozenset({"thinking_blocks"})
_PART_KEYS = frozenset({"text", "refusal"})  # a streamed content part's (Mistral's)
# No text, at any depth of an answer: the model's name and the server's, counts,
# tokens (they spell a text out, and are dropped with it), an end's reason, base64
# audio, a generated image (OpenRouter's, a data URL).
OPENAI_OPAQUE = Opaque(
    top=frozenset({"model", "system_fingerprint", "service_tier", "kv_transfer_params"}),
    anywhere=frozenset({"usage", "logprobs", "token_ids", "prompt_logprobs", "prompt_token_ids",
                        "finish_reason", "data"}),
    by_type={"image_url": frozenset({"image_url"})},
)  # fmt: skip
# A stream's chunks: the same, and OpenAI's random padding.
_STREAM_OPAQUE = Opaque(
    OPENAI_OPAQUE.top, OPENAI_OPAQUE.anywhere | {"obfuscation"}, OPENAI_OPAQUE.by_type
)


class Chat(Surface):
    label = "chat_completions"
    needs = "messages"
    answer_opaque = OPENAI_OPAQUE
    prompt_swept = ("messages",)
    # An image, audio or file given inline (counted as uninspected by the reading).
    prompt_opaque = Opaque(by_type={
        "image_url": frozenset({"image_url"}), "input_audio": frozenset({"input_audio"}),
        "file": frozenset({"file"}), "video_url": frozenset({"video_url"}),
    }, not_text=PROMPT_NOT_TEXT, defined=PROMPT_DEFINED)  # fmt: skip

    def prompt(self, body: Any) -> Prompt | None:
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return None
        prompt = Prompt()
        for message in body["messages"]:
            if not isinstance(message, dict):
                return None
            message_texts(message, prompt)
            _rendered_beside(message, prompt)
            string_at(message, "name", prompt)  # a speaker's name, rendered by some templates
            role = message.get("role")  # vLLM takes any role, and templates print it
            if isinstance(role, str) and role not in ROLES:
                string_at(message, "role", prompt)
        # A template writes tools and documents out whole: every string and key.
        written_out(_list(body.get("tools")), prompt)
        written_out(_list(body.get("functions")), prompt)
        written_out(_list(body.get("documents")), prompt)
        # Rendered by some templates (a schema to answer in, the tool to call).
        written_out(body.get("response_format"), prompt)
        written_out(body.get("tool_choice"), prompt)
        string_at(body, "chat_template", prompt)
        # vLLM's template variables, merged over tools and documents: text it renders.
        written_out(body.get("chat_template_kwargs"), prompt)
        written_out(body.get("prompt_variables"), prompt)  # LiteLLM's prompt management
        # TGI writes tool_prompt out before the tools and hands guideline to the template.
        string_at(body, "tool_prompt", prompt)
        string_at(body, "guideline", prompt)
        for plugin in _list(body.get("plugins")):  # OpenRouter's web plugin: a system message
            string_at(plugin, "search_prompt", prompt)
        # Azure OpenAI On Your Data: a data source's role_information is the system message
        # (its other settings are endpoints and keys, not text).
        for source in _list(body.get("data_sources")):
            parameters = source.get("parameters") if isinstance(source, dict) else None
            string_at(parameters, "role_information", prompt)
        return prompt

    def answer(self, body: Any) -> list[AnswerPart] | None:
        choices = body.get("choices") if isinstance(body, dict) else None
        if not isinstance(choices, list):
            return None
        parts: list[AnswerPart] = []
        for choice in choices:
            if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
                return None
            found = Prompt()
            message = choice["message"]
            message_texts(message, found)
            for holder, key in citation_texts(message):
                found.texts.append(TextRef(holder, key))
            audio = message.get("audio")
            string_at(audio, "transcript", found)
            _unheard_of_in_choice(choice, _CHOICE_KEYS, message, found)
            parts.append(AnswerPart(found.texts, _withhold(choice), _tokens_dropper(choice)))
        rest = Prompt()
        unheard_of(body, ANSWER_KEYS, rest)
        if rest.texts:  # the answer's own, beside its choices: left out if blocked
            parts.append(AnswerPart(rest.texts, lambda: drop_unheard_of(body, ANSWER_KEYS)))
        return parts

    def stream(self, request_body: Any) -> StreamCodec:
        return ChatStream()

    def usage(self, body: Any) -> Usage | None:
        return usage_of(body.get("usage"), "prompt_tokens", "completion_tokens")

    def finish_reasons(self, body: Any) -> list[str]:
        return choice_finish_reasons(body)

    def input_messages(self, body: Any) -> Any:
        return body.get("messages") if isinstance(body, dict) else None

    def output_messages(self, body: Any) -> Any:
        choices = body.get("choices") if isinstance(body, dict) else None
        if not isinstance(choices, list):
            return None
        return [c.get("message") for c in choices if isinstance(c, dict)]


def message_texts(message: dict[str, Any], prompt: Prompt) -> None:
    content_texts(message, "content", prompt)
    for key in _MESSAGE_TEXT:
        string_at(message, key, prompt)
    calls = [call for call in _list(message.get("tool_calls")) if isinstance(call, dict)]
    for function in [*(call.get("function") for call in calls), message.get("function_call")]:
        string_at(function, "name", prompt)  # the template writes the call's name out
        arguments_at(function, "arguments", prompt)
        if isinstance(function, dict) and isinstance(function.get("arguments"), dict | list):
            written_out(function["arguments"], prompt)  # an object (vLLM, Mistral): keys too
    for call in calls:  # a custom tool's call: its name and its free-form input
        string_at(call.get("custom"), "name", prompt)
        string_at(call.get("custom"), "input", prompt)
    for _, holder in thinking_holders(message):
        for block in _list(holder.get("thinking_blocks")):
            string_at(block, "thinking", prompt)
            if isinstance(block, dict) and block.get("type") == "redacted_thinking":
                prompt.uninspected.append("encrypted")


def _rendered_beside(message: dict[str, Any], prompt: Prompt) -> None:
    """What model servers write out of a request's message beyond the API's texts."""
    # vLLM keeps a developer message's own tools for the template (DeepSeek V3.2's
    # encoder writes every key and value of them out).
    written_out(_list(message.get("tools")), prompt)
    content = message.get("content")
    for part in content if isinstance(content, list) else [content]:  # one part: an object
        media_texts(part, prompt)
    for call in _list(message.get("tool_calls")):
        if not isinstance(call, dict):
            continue
        function = call.get("function")
        # TGI takes a call's arguments as "parameters" too, and writes them out.
        if isinstance(function, dict) and isinstance(function.get("parameters"), dict | list):
            written_out(function["parameters"], prompt)
        else:
            arguments_at(function, "parameters", prompt)
        # TGI takes any type and writes it out; vLLM hands a call whole to
        # templates that write it out as JSON, keys and all (Granite's, Mistral's).
        kind = call.get("type")
        if isinstance(kind, str) and kind not in _CALL_TYPES:
            string_at(call, "type", prompt)
        elif isinstance(kind, dict | list):
            written_out(kind, prompt)
        _written_out_unheard_of(call, _PROMPT_CALL_KEYS, prompt)
        _written_out_unheard_of(function, _PROMPT_FUNCTION_KEYS, prompt)
        _written_out_unheard_of(call.get("custom"), _CUSTOM_KEYS, prompt)
    _written_out_unheard_of(message.get("function_call"), _PROMPT_FUNCTION_KEYS, prompt)


def _written_out_unheard_of(holder: Any, heard_of: frozenset[str], prompt: Prompt) -> None:
    """Each key of ``holder`` not heard of, and what is under it, keys and all."""
    if not isinstance(holder, dict):
        return
    for key in [k for k in holder if isinstance(k, str) and k not in heard_of]:
        if isinstance(holder[key], str):
            prompt.texts.append(TextRef(holder, key))
        else:
            written_out(holder[key], prompt)
        prompt.texts.append(KeyRef(holder, key))  # after its value (see written_out)


def _unheard_of_in_choice(
    choice: dict[str, Any], heard_of: frozenset[str], message: dict[str, Any], found: Prompt
) -> None:
    """The strings of a choice under keys not read above, at each level it has
    (``message`` is its message, or its delta in a stream)."""
    unheard_of(choice, heard_of, found)
    unheard_of(message, _MESSAGE_KEYS, found)
    for call in _list(message.get("tool_calls")):
        unheard_of(call, _CALL_KEYS, found)
        if isinstance(call, dict):
            unheard_of(call.get("function"), _FUNCTION_KEYS, found)
            unheard_of(call.get("custom"), _FUNCTION_KEYS, found)
    unheard_of(message.get("function_call"), _FUNCTION_KEYS, found)
    unheard_of(message.get("audio"), _AUDIO_KEYS, found)
    for note in _list(message.get("annotations")):
        unheard_of(note, _ANNOTATION_KEYS, found)
        if isinstance(note, dict):
            unheard_of(note.get("url_citation"), _CITATION_KEYS, found)
    for _, holder in thinking_holders(message):
        if holder is not message:
            unheard_of(holder, _PROVIDER_KEYS, found)
        for block in _list(holder.get("thinking_blocks")):
            unheard_of(block, _THINKING_KEYS, found)


def citation_texts(message: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """A cited page's title and URL, as OpenAI's search models annotate an answer."""
    places = []
    for note in _list(message.get("annotations")):
        citation = note.get("url_citation") if isinstance(note, dict) else None
        if isinstance(citation, dict):
            places += [(citation, key) for key in ("title", "url")
                       if isinstance(citation.get(key), str)]  # fmt: skip
    return places


def thinking_holders(message: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Where LiteLLM repeats a thinking model's reasoning as thinking blocks: the
    message (or delta) itself and its provider_specific_fields, each named."""
    holders = [("thinking_blocks", message)]
    extra = message.get("provider_specific_fields")
    if isinstance(extra, dict):
        holders.append(("provider_thinking_blocks", extra))
    return holders


def choice_finish_reasons(body: Any) -> list[str]:
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list):
        return []
    return [
        c["finish_reason"]
        for c in choices
        if isinstance(c, dict) and isinstance(c.get("finish_reason"), str)
    ]


def _withhold(choice: dict[str, Any]) -> Callable[[], None]:
    def withhold() -> None:
        # As OpenAI answers content its filter stopped.
        choice["finish_reason"] = "content_filter"
        choice["logprobs"] = None
        message = choice["message"]
        message["content"] = None
        for key in _ANSWER_FIELDS:
            message.pop(key, None)
        drop_unheard_of(message, _MESSAGE_KEYS)
        drop_unheard_of(choice, _CHOICE_KEYS)

    return withhold


def _tokens_dropper(choice: dict[str, Any]) -> Callable[[], None]:
    return lambda: _drop_tokens([choice])


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


class ChoiceStream(StreamCodec):
    """The chunks of an OpenAI stream (chat or completions): choices, each with an index."""

    opaque = _STREAM_OPAQUE

    def __init__(self) -> None:
        self._template: dict[str, Any] = {}
        self._wholes = 0  # texts given whole, each its own channel

    def is_terminal(self, event: SseEvent) -> bool:
        return event.data == "[DONE]"

    def quiet(self, chunk: bytes) -> bool:
        # Literal keys only: a text's own quotes are escaped (\"), so it cannot
        # spell one; any other spelling of a null reason is parsed to be sure,
        # and so is any \u escape, which can spell a key as well as a letter.
        return (
            b"\\u" not in chunk
            and b"[DONE]" not in chunk
            and b'"usage"' not in chunk
            and chunk.count(b'"finish_reason"') == chunk.count(b'"finish_reason":null')
        )

    def usage_in(self, event: SseEvent) -> Usage | None:
        if event.data is None or not may_say(event.data, '"usage"'):
            return None
        chunk = parse_event(event)
        return usage_of(chunk.get("usage"), "prompt_tokens", "completion_tokens")

    def finish_reasons_in(self, event: SseEvent) -> list[str]:
        # Every chunk names a finish_reason, nearly all of them null: look for a string.
        data = event.data
        if data is None or ("\\u" not in data and _NAMED_REASON.search(data) is None):
            return []
        chunk = parse_event(event)
        choices = chunk.get("choices") if isinstance(chunk, dict) else None
        return [
            c["finish_reason"]
            for c in _list(choices)
            if isinstance(c, dict) and isinstance(c.get("finish_reason"), str)
        ]

    def step(self, event: SseEvent) -> StreamStep | None:
        if event.data is None:
            return None
        if event.data == "[DONE]":
            return StreamStep(terminal=True)
        chunk = parse_event(event)
        if not isinstance(chunk, dict):
            raise StreamMalformed("a chunk is not an object")
        step = StreamStep(document=chunk)
        step.usage = usage_of(chunk.get("usage"), "prompt_tokens", "completion_tokens")
        found = Prompt()
        unheard_of(chunk, CHUNK_KEYS, found)  # an error the upstream reports, a server's field
        self.wholes(found, "chunk", step)
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices:
            return step  # usage, or an error: no choice's content
        self._template = {
            k: v
            for k, v in chunk.items()
            if k in _TEMPLATE_KEYS and not unread_strings({k: v}, set(), self.opaque)
        }
        for choice in choices:
            if not isinstance(choice, dict):
                raise StreamMalformed("a choice is not an object")
            index = choice.get("index", 0)
            if not isinstance(index, int):
                raise StreamMalformed("a choice's index is not a number")
            self.choice_deltas(index, choice, step)
            reason = choice.get("finish_reason")
            if reason is not None:
                step.ends.append(index)
                step.finish_reason = str(reason)
                step.set_finish_reason = _setter(choice, "finish_reason")
        step.drop_tokens = lambda: _drop_tokens(choices)
        return step

    def choice_deltas(self, index: int, choice: dict[str, Any], step: StreamStep) -> None:
        raise NotImplementedError

    def wholes(self, found: Prompt, group: Hashable, step: StreamStep) -> None:
        """Texts given whole (under keys not heard of, a citation's): each its own
        channel of ``group``, judged to its end before its chunk goes out, and
        joined with those of the chunks before (they may be pieces of one text)."""
        for ref in found.texts:
            self._wholes += 1
            channel = (group, "note", self._wholes)
            step.reads(ref.container, ref.key)
            step.wholes.append(Delta(channel, ref.get(), ref.set, family=(group, "note")))

    def encode(self, event: SseEvent, step: StreamStep) -> bytes:
        chunk = step.document
        choices = chunk.get("choices")
        if isinstance(choices, list):
            kept = [c for c in choices if not self.empty(c)]
            if not kept and not chunk.get("usage") and chunk.keys() <= CHUNK_KEYS:
                return b""  # (a server's own field, or an error, goes out)
            chunk["choices"] = kept
        return encode_sse(orjson.dumps(chunk))

    def empty(self, choice: dict[str, Any]) -> bool:
        """A choice left with no text, no finish_reason and nothing else to say."""
        raise NotImplementedError

    def chunk(self, choice: dict[str, Any]) -> bytes:
        return encode_sse(orjson.dumps({**self._template, "choices": [choice]}))

    def blocked(self, channel: Hashable | None) -> bytes:
        index = channel[0] if isinstance(channel, tuple) else 0
        if isinstance(index, tuple):  # a call's name: (choice, call)
            index = index[0]
        if not isinstance(index, int):  # the chunk's own text: the first choice ends
            index = 0
        return self.chunk(self.block_choice(index)) + DONE

    def block_choice(self, index: Any) -> dict[str, Any]:
        raise NotImplementedError


class ChatStream(ChoiceStream):
    def __init__(self) -> None:
        super().__init__()
        self._arguments = ArgumentStreams()
        # Each call whose name was seen, (choice, call), and its kind: function,
        # custom or function_call.
        self._kinds: dict[tuple[int, Any], str] = {}

    def _arguments_at(self, holder: Any, channel: Hashable, step: StreamStep) -> None:
        """A call's streamed arguments, escapes written out (see proxy.surfaces.json_escapes)."""
        if not isinstance(holder, dict):
            return
        if isinstance(holder.get("arguments"), dict | list):
            # Given whole, as an object (Mistral): its keys are text too, judged whole
            # here (its values are too, by the sweep after the step).
            found = Prompt()
            written_out(holder["arguments"], found)
            self.wholes(found, channel[0] if isinstance(channel, tuple) else 0, step)
            return
        if not isinstance(holder.get("arguments"), str):
            return
        text = self._arguments.decode(channel, holder, "arguments", step)
        step.reads(holder, "arguments")
        step.deltas.append(Delta(channel, text, _setter(holder, "arguments")))

    def _name_at(self, holder: Any, call: tuple[int, Any], kind: str, step: StreamStep) -> None:
        """A call's name: a channel of its own, a group of its own (``call`` is the
        choice's index and the call's), so its pieces are judged joined and what is
        held of it goes out before the call's arguments begin: an SDK reports the
        call's arguments under the name it has by then."""
        if not isinstance(holder, dict):
            return
        if isinstance(holder.get("name"), str):
            self._kinds.setdefault(call, kind)
            step.reads(holder, "name")
            step.deltas.append(Delta((call, "name"), holder["name"], _setter(holder, "name")))
        elif holder.get("arguments") or holder.get("input"):
            step.ends.append(call)  # the name is complete: the rest of it goes out first

    def choice_deltas(self, index: int, choice: dict[str, Any], step: StreamStep) -> None:
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return
        for key in ("content", *_MESSAGE_TEXT):
            _delta_at(delta, key, (index, key), step)
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for position, call in enumerate(calls):
                if not isinstance(call, dict):
                    continue
                number = call.get("index", position)
                if not isinstance(number, int):
                    raise StreamMalformed("a tool call's index is not a number")
                for kind in ("function", "custom"):
                    self._name_at(call.get(kind), (index, number), kind, step)
                self._arguments_at(call.get("function"), (index, "tool", number), step)
                _delta_at(call.get("custom"), "input", (index, "custom", number), step)
        self._name_at(delta.get("function_call"), (index, "function_call"), "function_call", step)
        self._arguments_at(delta.get("function_call"), (index, "function_call"), step)
        _delta_at(delta.get("audio"), "transcript", (index, "audio"), step)
        found = Prompt()  # given once, whole: a citation's title and URL, keys not heard of
        found.texts += [TextRef(holder, key) for holder, key in citation_texts(delta)]
        _unheard_of_in_choice(choice, _STREAM_CHOICE_KEYS, delta, found)
        for part in content if isinstance(content := delta.get("content"), list) else ():
            unheard_of(part, _PART_KEYS, found)
        self.wholes(found, index, step)
        if choice.get("finish_reason") is not None:
            # The choice's end ends its calls' names.
            step.ends += [call for call in self._kinds if call[0] == index]
        content = delta.get("content")
        if isinstance(content, list):  # parts, as Mistral streams them
            for part in content:
                for key in ("text", "refusal"):
                    _delta_at(part, key, (index, "content" if key == "text" else key), step)
        for name, holder in thinking_holders(delta):
            blocks = holder.get("thinking_blocks")
            for position, block in enumerate(blocks if isinstance(blocks, list) else ()):
                _delta_at(block, "thinking", (index, name, position), step)

    def text_event(self, channel: Hashable, text: str) -> bytes:
        assert isinstance(channel, tuple)
        index, key = channel[0], channel[1]
        delta: dict[str, Any]
        if key == "name":  # a call's name: (choice, call), "name"
            kind = self._kinds[index]
            index, call = index
            named = {"name": text}
            if kind == "function_call":
                delta = {"function_call": named}
            else:
                delta = {"tool_calls": [{"index": call, kind: named}]}
        elif key == "tool":
            delta = {"tool_calls": [{"index": channel[2], "function": {"arguments": text}}]}
        elif key == "custom":
            delta = {"tool_calls": [{"index": channel[2], "custom": {"input": text}}]}
        elif key == "function_call":
            delta = {"function_call": {"arguments": text}}
        elif key == "audio":
            delta = {"audio": {"transcript": text}}
        elif key in ("thinking_blocks", "provider_thinking_blocks"):
            blocks = {"thinking_blocks": [{"type": "thinking", "thinking": text}]}
            delta = blocks if key == "thinking_blocks" else {"provider_specific_fields": blocks}
        else:
            delta = {key: text}
        return self.chunk({"index": index, "delta": delta, "finish_reason": None})

    def block_choice(self, index: Any) -> dict[str, Any]:
        return {"index": index, "delta": {}, "finish_reason": "content_filter"}

    def empty(self, choice: dict[str, Any]) -> bool:
        if choice.get("finish_reason") is not None or not choice.keys() <= _STREAM_CHOICE_KEYS:
            return False
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return False
        for key, value in delta.items():
            if key == "tool_calls" and isinstance(value, list):
                if any(_call_says_more(call) for call in value):
                    return False
            elif key == "function_call" and isinstance(value, dict):
                if value.get("name") or value.get("arguments"):
                    return False
            elif value not in (None, ""):
                return False
        return True


def _call_says_more(call: Any) -> bool:
    if not isinstance(call, dict):
        return True
    if call.get("id") or call.get("type"):
        return True
    function, custom = call.get("function"), call.get("custom")
    if isinstance(custom, dict) and (custom.get("name") or custom.get("input")):
        return True
    return isinstance(function, dict) and bool(function.get("name") or function.get("arguments"))


def _delta_at(holder: Any, key: str, channel: Hashable, step: StreamStep) -> None:
    if isinstance(holder, dict) and isinstance(holder.get(key), str):
        step.reads(holder, key)
        step.deltas.append(Delta(channel, holder[key], _setter(holder, key)))


def _setter(holder: dict[str, Any], key: str) -> Callable[[str], None]:
    def put(value: str) -> None:
        holder[key] = value

    return put


def _drop_tokens(choices: list[Any]) -> None:
    """What spells the choices' text out again: logprobs, and the token ids
    vLLM's ``return_token_ids`` adds (a client decodes them)."""
    for choice in choices:
        if isinstance(choice, dict):
            for key in ("logprobs", "token_ids"):
                if choice.get(key) is not None:
                    choice[key] = None
