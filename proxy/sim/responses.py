"""OpenAI's Responses API on the simulated model server: create, streamed or not, and retrieve.

- ``POST /v1/responses`` (and ``/responses``) answers with a Response object:
  one assistant message whose one ``output_text`` part is the answer, and
  ``usage``. The prompt is ``instructions`` (as a system turn) and ``input``
  (a string, or items: messages with text content, tool results) read as a
  conversation, so the same turns get the same text as on chat completions,
  and a last user message starting with ``echo:`` is echoed.
  ``max_output_tokens`` below the default length cuts the answer: status
  ``incomplete``, ``incomplete_details.reason`` ``max_output_tokens``.
- ``stream: true`` sends the typed events, each with its ``sequence_number``:
  ``response.created`` and ``response.in_progress`` at once (before the first
  token, as OpenAI does), ``response.output_item.added``,
  ``response.content_part.added``, one ``response.output_text.delta`` per
  token, ``response.output_text.done``, ``response.content_part.done``,
  ``response.output_item.done``, and ``response.completed`` with the whole
  response (``response.incomplete`` when cut).
- ``GET /v1/responses/{id}`` returns a response that was created with
  ``store`` not false, among the last :data:`STORED_RESPONSES`; any other id
  is a 404 in OpenAI's shape.

The settings a request gives (``instructions``, ``metadata``, ``temperature``,
``tools``, ...) are repeated in the response, as OpenAI does; the simulated
model ignores them.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from proxy.sim.fields import MockAPIError, invalid, missing, model_name
from proxy.sim.request import GenerationJob, content_text, conversation, one_answer
from proxy.sim.send import AT_ONCE, generate, json_response
from proxy.sim.wire import named_event

PATHS = ("/v1/responses", "/responses")
STORED_RESPONSES = 1024

# What a response repeats of its request: (accepted JSON types, their name, the default).
_ECHOED: dict[str, tuple[tuple[type, ...], str, object]] = {
    "instructions": ((str,), "a string", None),
    "max_output_tokens": ((int,), "an integer", None),
    "metadata": ((dict,), "an object", {}),
    "parallel_tool_calls": ((bool,), "a boolean", True),
    "previous_response_id": ((str,), "a string", None),
    "reasoning": ((dict,), "an object", {"effort": None, "summary": None}),
    "store": ((bool,), "a boolean", True),
    "temperature": ((int, float), "a number", 1.0),
    "text": ((dict,), "an object", {"format": {"type": "text"}}),
    "tool_choice": ((str, dict), "a string or an object", "auto"),
    "tools": ((list,), "an array", []),
    "top_p": ((int, float), "a number", 1.0),
    "truncation": ((str,), "a string", "disabled"),
    "user": ((str,), "a string", None),
}


class ResponseStore:
    """The most recent stored responses by id; the oldest goes when it is full."""

    def __init__(self, capacity: int = STORED_RESPONSES) -> None:
        self._capacity = capacity
        self._responses: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def put(self, response: dict[str, Any]) -> None:
        self._responses[response["id"]] = response
        while len(self._responses) > self._capacity:
            self._responses.popitem(last=False)

    def get(self, response_id: str) -> dict[str, Any] | None:
        return self._responses.get(response_id)


RESPONSE_STORE = web.AppKey("response_store", ResponseStore)


def add_routes(app: web.Application) -> None:
    app[RESPONSE_STORE] = ResponseStore()
    for path in PATHS:
        app.router.add_post(path, create_response)
        app.router.add_get(path + "/{response_id}", retrieve_response)


async def create_response(request: web.Request) -> web.StreamResponse:
    created_at = int(time.time())
    store = request.app[RESPONSE_STORE]

    def keep(job: GenerationJob) -> Callable[[dict[str, Any]], None]:
        return store.put if job.params["store"] else lambda _response: None

    def body(job: GenerationJob) -> dict[str, Any]:
        final = _Draft.of(job, created_at).final()
        keep(job)(final)
        return final

    def events(job: GenerationJob) -> Iterator[tuple[int, bytes]]:
        return _events(_Draft.of(job, created_at), keep(job))

    return await generate(request, parse_responses, body, events)


async def retrieve_response(request: web.Request) -> web.Response:
    response_id = request.match_info["response_id"]
    found = request.app[RESPONSE_STORE].get(response_id)
    if found is None:
        raise MockAPIError(404, f"Response with id '{response_id}' not found.")
    return json_response(found)


def parse_responses(body: dict[str, Any], model: str, default_length: int) -> GenerationJob:
    params = _settings(body)
    turns: list[tuple[object, str]] = []
    if params["instructions"]:
        turns.append(("system", params["instructions"]))
    turns.extend(_input_turns(body.get("input")))
    return one_answer(
        body,
        conversation(turns),
        "max_output_tokens",
        model=model_name(body, model),
        default_length=default_length,
        params=params,
    )


def _settings(body: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, (types, expected, default) in _ECHOED.items():
        value = body.get(name)
        if value is None:
            params[name] = default
        elif isinstance(value, types) and (bool in types or not isinstance(value, bool)):
            params[name] = value
        else:
            raise MockAPIError(
                400,
                f"Invalid type for '{name}': expected {expected}.",
                param=name,
                code="invalid_type",
            )
    return params


def _input_turns(raw: object) -> list[tuple[object, str]]:
    if raw is None:
        raise missing("input")
    if isinstance(raw, str):
        return [("user", raw)]
    if not isinstance(raw, list) or not raw or not all(isinstance(i, dict) for i in raw):
        raise invalid("input", "a string or a non-empty array of input items")
    turns: list[tuple[object, str]] = []
    for item in raw:
        if "role" in item:
            turns.append((item["role"], content_text(item.get("content"), "input")))
        elif isinstance(item.get("output"), str):  # a tool's result
            turns.append(("tool", item["output"]))
    return turns


@dataclass(frozen=True, slots=True)
class _Draft:
    """One response being written: its ids, and the objects it shows at each stage."""

    job: GenerationJob
    id: str
    item_id: str
    created_at: int

    @classmethod
    def of(cls, job: GenerationJob, created_at: int) -> _Draft:
        return cls(job, "resp_" + uuid.uuid4().hex, "msg_" + uuid.uuid4().hex, created_at)

    @property
    def text(self) -> str:
        return "".join(self.job.choices[0].tokens)

    @property
    def status(self) -> str:
        return "incomplete" if self.job.choices[0].finish_reason == "length" else "completed"

    def response(
        self, status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None
    ) -> dict[str, Any]:
        incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "completed_at": int(time.time()) if status == "completed" else None,
            "error": None,
            "incomplete_details": incomplete,
            "model": self.job.model,
            "output": output,
            **self.job.params,
            "usage": usage,
        }

    def message(self, status: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.item_id,
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": parts,
        }

    def final(self) -> dict[str, Any]:
        output = [self.message(self.status, [_text_part(self.text)])]
        return self.response(self.status, output, _usage(self.job))


def _events(draft: _Draft, keep: Callable[[dict[str, Any]], None]) -> Iterator[tuple[int, bytes]]:
    """(token step, SSE event) pairs, numbered in the order they are sent."""
    numbers = itertools.count()

    def event(kind: str, **fields: Any) -> bytes:
        return named_event({"type": kind, "sequence_number": next(numbers), **fields})

    started = draft.response("in_progress", [], None)
    yield AT_ONCE, event("response.created", response=started)
    yield AT_ONCE, event("response.in_progress", response=started)
    item = draft.message("in_progress", [])
    yield 0, event("response.output_item.added", output_index=0, item=item)
    where = {"item_id": draft.item_id, "output_index": 0, "content_index": 0}
    yield 0, event("response.content_part.added", **where, part=_text_part(""))
    for step, token in enumerate(draft.job.choices[0].tokens):
        yield step, event("response.output_text.delta", **where, delta=token, logprobs=[])
    last = draft.job.last_step
    final = draft.final()
    yield last, event("response.output_text.done", **where, text=draft.text, logprobs=[])
    yield last, event("response.content_part.done", **where, part=_text_part(draft.text))
    yield last, event("response.output_item.done", output_index=0, item=final["output"][0])
    # Kept before the last event is sent: a client that has it can retrieve it at once.
    keep(final)
    yield last, event(f"response.{final['status']}", response=final)


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _usage(job: GenerationJob) -> dict[str, Any]:
    return {
        "input_tokens": job.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": job.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": job.prompt_tokens + job.completion_tokens,
    }
