"""The surface rows of bench/micro.py: reading a chat request and answer, and the sweep.

An adapter reads each level of a body by its keys; the sweep after it walks
the whole body once more for strings the reading left out
(proxy.surfaces.unheard_of, proxy.surfaces.base.unread_strings). Each pair of
rows times the same body with and without the sweep: the difference is its
cost. The bodies are parsed afresh in every call (the reading keeps
references into them), so both rows include the parse.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from proxy.formats.sse import SseEvent
from proxy.surfaces.base import unread_strings
from proxy.surfaces.chat import Chat, ChatStream
from proxy.surfaces.unheard_of import with_the_rest

CHAT = Chat()
# A system prompt and ten turns: about 4 KB.
REQUEST = orjson.dumps({"model": "m", "messages": [
    {"role": "system", "content": "Answer the customer politely. " * 12},
    *({"role": "user" if i % 2 == 0 else "assistant",
       "content": "My order has not arrived yet, can you check it? " * 6} for i in range(10)),
]})  # fmt: skip
ANSWER = orjson.dumps({
    "id": "c", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                 "message": {"role": "assistant", "content": "Your order left today. " * 40}}],
    "usage": {"prompt_tokens": 900, "completion_tokens": 200, "total_tokens": 1100},
})  # fmt: skip
CHUNK = orjson.dumps({
    "id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
    "choices": [{"index": 0, "delta": {"content": " order"}, "finish_reason": None}],
}).decode()  # fmt: skip
EVENT = SseEvent(raw=b"", data=CHUNK, event=None, id=None, comment_only=False)


def _prompt(sweep: bool) -> object:
    body = orjson.loads(REQUEST)
    return CHAT.read_prompt(body) if sweep else CHAT.prompt(body)


def _answer(sweep: bool) -> object:
    body = orjson.loads(ANSWER)
    parts = CHAT.answer(body)
    if sweep and parts is not None:
        with_the_rest(body, parts, CHAT.answer_opaque)
    return parts


def _chunk(codec: ChatStream, sweep: bool) -> object:
    step = codec.step(EVENT)
    if sweep and step is not None:
        return unread_strings(step.document, step.read, codec.opaque)
    return step


def surface_cases() -> dict[str, Callable[[], object]]:
    codec = ChatStream()
    return {
        "chat request (4 KB, 11 messages) read": lambda: _prompt(False),
        "the same, and swept (read_prompt)": lambda: _prompt(True),
        "chat answer (1 KB) read": lambda: _answer(False),
        "the same, and swept (with_the_rest)": lambda: _answer(True),
        "a streamed chunk read (ChatStream.step)": lambda: _chunk(codec, False),
        "the same, and swept (unread_strings)": lambda: _chunk(codec, True),
    }
