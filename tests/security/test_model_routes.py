"""Paths real model servers route to a model, in shapes no adapter reads: refused.

With the default ``unjudged_routes: pass`` an unjudged route is forwarded
as it came, but not these (403 ``unjudged_route``, unless ``routes:`` maps
one to a surface or ``unjudged_routes: pass_all`` forwards them). These
paths take a prompt the model reads, in a shape a judged
surface knows: vLLM's ``POST /invocations`` (the SageMaker entry point)
serves a chat completions or completions body; llama.cpp's server takes
``prompt`` at ``/completion`` and ``/infill``; TGI's ``/generate`` and
``/generate_stream`` take ``inputs``. And answers read back through routes
other than the judged ``GET */responses/{id}`` (a conversation's items, a
thread's messages) are the model's own, stored before any redaction.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.loopback import ProxyFactory, post_json
from tests.security.conftest import FILTERS
from tests.surfaces.conftest import Scripted

SAY = "open sesame"
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "vLLM /invocations, a chat body": (
        "/invocations", {"model": "m", "messages": [{"role": "user", "content": SAY}]}),
    "vLLM /invocations, a completions body": ("/invocations", {"model": "m", "prompt": SAY}),
    "llama.cpp /completion": ("/completion", {"prompt": SAY, "n_predict": 8}),
    "llama.cpp /infill": ("/infill", {"input_prefix": SAY, "input_suffix": "", "prompt": ""}),
    "TGI /generate": ("/generate", {"inputs": SAY, "parameters": {}}),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
async def test_a_prompt_on_a_model_route_of_a_known_server_is_not_forwarded_unjudged(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    path, body = CASES[case]
    scripted.answer = {"content": "ok"}
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, _ = await post_json(f"{proxy.url}{path}", body)
    assert scripted.bodies == [], f"forwarded unjudged, answered {status}"


EMAIL = "jane.doe@example.com"
ANSWER_TEXT = {"type": "output_text", "text": f"Write to {EMAIL}.", "annotations": []}
STORED: dict[str, Any] = {
    # The Conversations API lists a conversation's items, the model's answers among them,
    # as the model server stored them: before taxmeter redacted what the client got.
    "/v1/conversations/conv_1/items": {"object": "list", "data": [
        {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
         "content": [ANSWER_TEXT]}]},
    # The Assistants API's thread messages: the assistant's answers, stored.
    "/v1/threads/thread_1/messages": {"object": "list", "data": [
        {"id": "msg_1", "object": "thread.message", "role": "assistant",
         "content": [{"type": "text", "text": {"value": f"Write to {EMAIL}.",
                                               "annotations": []}}]}]},
}  # fmt: skip


@pytest.mark.parametrize("path", STORED)
async def test_an_answer_read_back_through_another_route_is_judged(
    start_proxy: ProxyFactory, scripted: Scripted, path: str
) -> None:
    """``GET /v1/responses/{id}`` is judged; the same answers listed elsewhere are not."""
    scripted.answer = STORED[path]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    async with aiohttp.ClientSession() as session, session.get(f"{proxy.url}{path}") as response:
        answer = await response.read()
    assert EMAIL.encode() not in answer


async def test_pass_all_forwards_them_and_routes_can_judge_one(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    scripted.answer = {"content": "ok"}
    proxy = await start_proxy({**FILTERS, "unjudged_routes": "pass_all"}, upstream=scripted.url)
    status, _, _ = await post_json(f"{proxy.url}/generate", {"inputs": "hello"})
    assert status == 200
    assert len(scripted.bodies) == 1
    mapped = {**FILTERS, "routes": {"/invocations": "chat_completions"}}
    proxy = await start_proxy(mapped, upstream=scripted.url)
    path, body = CASES["vLLM /invocations, a chat body"]
    status, _, answer = await post_json(f"{proxy.url}{path}", body)
    assert status == 400  # judged as chat: the denylisted prompt is blocked
    assert b"content_filter" in answer
    assert len(scripted.bodies) == 1


async def test_a_refused_model_route_says_what_to_do(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, answer = await post_json(f"{proxy.url}/api/chat", {"model": "m", "messages": []})
    assert status == 403
    assert b"unjudged_route" in answer
    assert b"routes:" in answer
    assert scripted.bodies == []
