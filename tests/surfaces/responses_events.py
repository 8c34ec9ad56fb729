"""Responses API answers and event streams as OpenAI sends them, for scripted upstreams."""

from __future__ import annotations

from typing import Any

from tests.surfaces.conftest import Script, sse

EMAIL = "jane.doe@example.com"
RESPONSE_ID = "resp_1"


def response(
    status: str, output: list[Any] | None = None, usage: dict[str, int] | None = None
) -> dict[str, Any]:
    return {
        "id": RESPONSE_ID,
        "object": "response",
        "created_at": 1,
        "model": "m",
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "output": output or [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
    }


def message(
    text: str | None = None,
    logprobs: list[Any] | None = None,
    refusal: str | None = None,
    status: str = "completed",
    item_id: str = "msg_1",
) -> dict[str, Any]:
    content: list[Any] = []
    if text:
        content.append(
            {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs or []}
        )
    if refusal:
        content.append({"type": "refusal", "refusal": refusal})
    return {"type": "message", "id": item_id, "role": "assistant", "status": status,
            "content": content}  # fmt: skip


def function_call(
    arguments: str, status: str = "completed", item_id: str = "fc_1"
) -> dict[str, Any]:
    return {"type": "function_call", "id": item_id, "call_id": f"call_{item_id}",
            "name": "send", "arguments": arguments, "status": status}  # fmt: skip


def reasoning(
    summary: str | None = None, content: str | None = None, status: str = "completed"
) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "reasoning", "id": "rs_1", "status": status, "summary": []}
    if summary:
        item["summary"] = [{"type": "summary_text", "text": summary}]
    if content:
        item["content"] = [{"type": "reasoning_text", "text": content}]
    return item


class Events:
    """A Responses event stream, numbered as OpenAI numbers it."""

    def __init__(self, named: bool = True) -> None:
        self.events: list[bytes] = []
        self.named = named  # each event with an "event:" line, as OpenAI sends them

    def add(self, kind: str, **fields: Any) -> None:
        document = {"type": kind, "sequence_number": len(self.events), **fields}
        self.events.append(sse(document, kind if self.named else None))

    def start(self) -> None:
        self.add("response.created", response=response("in_progress"))
        self.add("response.in_progress", response=response("in_progress"))

    def end(self, kind: str, output: list[Any], usage: dict[str, int] | None = None) -> None:
        status = {"response.completed": "completed", "response.incomplete": "incomplete"}
        self.add(kind, response=response(status.get(kind, "failed"), output, usage))

    def script(self) -> Script:
        return list(self.events)
