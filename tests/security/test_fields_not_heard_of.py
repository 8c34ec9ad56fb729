"""Answer text under a key the proxy has not heard of is judged too.

Servers add fields to the answers they give: Perplexity's `search_results`
(a page's title and snippet), OpenRouter's `reasoning_details`, LiteLLM's
`provider_specific_fields`, a later version's field. An adapter that read
only the fields it knows would hand their text over unjudged, so at every
level of an answer the adapter reads, every string under any other key is
judged with its part (a choice's with the choice), but identifiers.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.judge.sample_filters import Recording
from tests.loopback import ProxyFactory, post_json
from tests.security.conftest import EMAIL, FILTERS
from tests.surfaces.conftest import Scripted

CHAT = ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]})
COMPLETIONS = ("/v1/completions", {"model": "m", "prompt": "hi"})
MESSAGES = (
    "/v1/messages",
    {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
)
RESPONSES = ("/v1/responses", {"model": "m", "input": "hi"})
SAID = f"mail {EMAIL}"
DENIED = "the word is open sesame"
RECORDING = {"name": "rec", "type": "tests.judge.sample_filters:Recording"}


def chat(
    message: dict[str, Any] | None = None, choice: dict[str, Any] | None = None, **top: Any
) -> dict[str, Any]:
    message = {"role": "assistant", "content": "hi", **(message or {})}
    choices = [{"index": 0, "message": message, "finish_reason": "stop", **(choice or {})}]
    return {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
            "choices": choices, **top}  # fmt: skip


def completion(choice: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    choices = [{"index": 0, "text": "hi", "finish_reason": "stop", "logprobs": None,
                **(choice or {})}]  # fmt: skip
    return {"id": "c", "object": "text_completion", "created": 1, "model": "m",
            "choices": choices, **top}  # fmt: skip


def message(block: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    content = [{"type": "text", "text": "hi", **(block or {})}]
    return {"id": "m", "type": "message", "role": "assistant", "model": "m", "content": content,
            "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 1}, **top}  # fmt: skip


def response(item: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    part = {"type": "output_text", "text": "hi", "annotations": [], "logprobs": []}
    item = item or {"type": "message", "id": "msg", "role": "assistant", "status": "completed",
                    "content": [part]}  # fmt: skip
    return {"id": "r", "object": "response", "created_at": 1, "status": "completed",
            "model": "m", "output": [item], "usage": {"input_tokens": 1, "output_tokens": 1},
            **top}  # fmt: skip


def said_item(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "id": "i", "status": "completed", **fields}


# (route, the answer with SAID somewhere the adapter has not heard of)
ANSWERS: dict[str, tuple[tuple[str, dict[str, Any]], dict[str, Any]]] = {
    "chat: a message's field": (CHAT, chat({"note": SAID})),
    "chat: a message's name": (CHAT, chat({"name": SAID})),
    "chat: a message's nested field": (CHAT, chat({"reasoning_details": [
        {"type": "reasoning.text", "text": SAID, "id": "r1", "format": "x"}]})),
    "chat: a choice's field": (CHAT, chat(choice={"note": SAID})),
    "chat: the answer's field": (CHAT, chat(search_results=[
        {"title": SAID, "url": "https://example.com/a", "snippet": SAID}])),
    "chat: a tool call's field": (CHAT, chat({"content": None, "tool_calls": [
        {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"},
         "note": SAID}]})),
    "chat: a function's field": (CHAT, chat({"content": None, "tool_calls": [
        {"id": "t", "type": "function",
         "function": {"name": "f", "arguments": "{}", "description": SAID}}]})),
    "chat: the audio's field": (CHAT, chat({"audio": {
        "id": "a", "data": "AAAA", "expires_at": 1, "transcript": "hi", "note": SAID}})),
    "chat: an annotation of another type": (CHAT, chat({"annotations": [
        {"type": "file_citation", "file_citation": {"file_id": "f", "filename": SAID}}]})),
    "chat: a citation's field": (CHAT, chat({"annotations": [
        {"type": "url_citation", "url_citation": {"url": "https://e.com", "title": "t",
                                                  "start_index": 0, "end_index": 1,
                                                  "snippet": SAID}}]})),
    "chat: provider_specific_fields beside thinking blocks": (CHAT, chat(
        {"provider_specific_fields": {"thinking_blocks": [], "citations": [SAID]}})),
    "completions: a choice's field": (COMPLETIONS, completion({"note": SAID})),
    "completions: the answer's field": (COMPLETIONS, completion(note={"said": SAID})),
    "messages: a text block's field": (MESSAGES, message({"note": SAID})),
    "messages: a thinking block's field": (MESSAGES, message(
        {"type": "thinking", "thinking": "hm", "signature": "c2ln", "summary": SAID})),
    "messages: a tool call's field": (MESSAGES, message(
        {"type": "tool_use", "id": "t", "name": "f", "input": {}, "title": SAID})),
    "messages: the message's field": (MESSAGES, message(search_results=[{"snippet": SAID}])),
    "messages: a refusal's explanation": (MESSAGES, message(
        stop_details={"type": "refusal", "category": "x", "explanation": SAID})),
    "responses: the Response's field": (RESPONSES, response(output_text=SAID)),
    "responses: a failed Response's error": (RESPONSES, response(
        error={"code": "server_error", "message": SAID})),
    "responses: a message's field": (RESPONSES, response(said_item(
        "message", role="assistant", content=[], note=SAID))),
    "responses: an output_text part's field": (RESPONSES, response(said_item(
        "message", role="assistant",
        content=[{"type": "output_text", "text": "hi", "annotations": [], "source": SAID}]))),
    "responses: a reasoning part's field": (RESPONSES, response(said_item(
        "reasoning", summary=[{"type": "summary_text", "text": "hm", "title": SAID}]))),
    "responses: a function call's field": (RESPONSES, response(said_item(
        "function_call", call_id="c", name="f", arguments="{}", description=SAID))),
    "responses: an MCP call's error": (RESPONSES, response(said_item(
        "mcp_call", server_label="s", name="f", arguments="{}", output=None, error=SAID))),
    "responses: a code interpreter's output's field": (RESPONSES, response(said_item(
        "code_interpreter_call", code="1", container_id="c",
        outputs=[{"type": "logs", "logs": "1", "note": SAID}]))),
    # Heard of, but in a shape the adapter does not read, or never read at all:
    # the sweep after the reading judges every string the parts left out.
    "chat: an object under an identifier's key": (CHAT, chat(choice={"status": {"x": SAID}})),
    "chat: a function's input": (CHAT, chat({"content": None, "tool_calls": [
        {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}",
                                                     "input": SAID}}]})),
    "chat: a custom call's arguments": (CHAT, chat({"content": None, "tool_calls": [
        {"id": "t", "type": "custom", "custom": {"name": "f", "input": "x",
                                                 "arguments": SAID}}]})),
    "chat: a choice's stop_reason (vLLM's stop string)": (CHAT, chat(choice={
        "stop_reason": SAID})),
    "chat: a tool call as a string": (CHAT, chat({"content": None, "tool_calls": [SAID]})),
    "chat: a refusal as an object": (CHAT, chat({"refusal": {"text": SAID}})),
    "chat: an annotation as a string": (CHAT, chat({"annotations": [SAID]})),
    "chat: a content part's field": (CHAT, chat({"content": [
        {"type": "text", "text": "hi", "note": SAID}]})),
    "chat: a generated image's caption": (CHAT, chat({"images": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"},
         "caption": SAID}]})),
    "responses: a message's phase": (RESPONSES, response(said_item(
        "message", role="assistant", content=[], phase=SAID))),
    "responses: a content part as a string": (RESPONSES, response(said_item(
        "message", role="assistant", content=[SAID]))),
    "responses: content as one part": (RESPONSES, response(said_item(
        "message", role="assistant", content={"type": "output_text", "text": SAID}))),
    "responses: an annotation as a string": (RESPONSES, response(said_item(
        "message", role="assistant",
        content=[{"type": "output_text", "text": "hi", "annotations": [SAID]}]))),
    "responses: a summary as a string": (RESPONSES, response(said_item(
        "reasoning", summary=SAID))),
    "responses: a code output's url": (RESPONSES, response(said_item(
        "code_interpreter_call", code="1", container_id="c",
        outputs=[{"type": "image", "url": SAID}]))),
    "messages: stop_sequence": (MESSAGES, message(stop_sequence=SAID)),
    "messages: a tool call's caller": (MESSAGES, message(
        {"type": "tool_use", "id": "t", "name": "f", "input": {}, "caller": {"x": SAID}})),
    "messages: a citation as a string": (MESSAGES, message({"citations": [SAID]})),
    "messages: a document block's field": (MESSAGES, message(
        {"type": "document", "source": {"type": "text", "data": "hi"}, "note": SAID})),
    "messages: an image block's field": (MESSAGES, message(
        {"type": "image", "source": {"type": "base64", "data": "AAAA"}, "note": SAID})),
    "messages: a search result typed as a url": (MESSAGES, message(
        {"type": "web_search_tool_result", "tool_use_id": "t",
         "content": [{"type": "url", "title": SAID}]})),
}  # fmt: skip


async def answered(
    start_proxy: ProxyFactory,
    scripted: Scripted,
    route: tuple[str, dict[str, Any]],
    answer: dict[str, Any],
) -> Any:
    """What a client gets when the model server answers ``answer`` on ``route`` (a 200)."""
    scripted.answer = answer
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, body = await post_json(f"{proxy.url}{route[0]}", route[1])
    assert status == 200
    return orjson.loads(body)


@pytest.mark.parametrize("case", ANSWERS)
async def test_text_under_a_key_not_heard_of_is_redacted(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    (path, request), answer = ANSWERS[case]
    scripted.answer = answer
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, body = await post_json(f"{proxy.url}{path}", request)
    assert status == 200
    assert EMAIL.encode() not in body
    assert b"mail [EMAIL]" in body


@pytest.mark.parametrize("route", [CHAT, COMPLETIONS], ids=["chat", "completions"])
async def test_a_choice_blocked_for_a_field_not_heard_of_loses_that_field(
    start_proxy: ProxyFactory, scripted: Scripted, route: tuple[str, dict[str, Any]]
) -> None:
    shape = chat if route == CHAT else completion
    answer = await answered(start_proxy, scripted, route, shape(choice={"note": DENIED}))
    (choice,) = answer["choices"]
    assert choice["finish_reason"] == "content_filter"
    assert "note" not in choice


@pytest.mark.parametrize("route", [CHAT, COMPLETIONS], ids=["chat", "completions"])
async def test_the_answer_s_own_field_blocked_is_left_out(
    start_proxy: ProxyFactory, scripted: Scripted, route: tuple[str, dict[str, Any]]
) -> None:
    shape = chat if route == CHAT else completion
    answer = await answered(start_proxy, scripted, route, shape(note=DENIED))
    assert "note" not in answer
    assert answer["choices"] == shape()["choices"]  # the choice was not at fault


async def test_a_message_blocked_for_a_field_not_heard_of_loses_that_field(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    answer = await answered(start_proxy, scripted, MESSAGES, message(note=DENIED))
    assert (answer["stop_reason"], answer["content"]) == ("refusal", [])
    assert "note" not in answer


async def test_a_responses_item_blocked_for_a_field_not_heard_of_loses_that_field(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    item = said_item("message", role="assistant", content=[], note=DENIED)
    answer = await answered(start_proxy, scripted, RESPONSES, response(item, note=DENIED))
    assert answer["incomplete_details"] == {"reason": "content_filter"}
    assert answer["output"] == [{"type": "message", "id": "i", "status": "incomplete",
                                 "role": "assistant", "content": []}]  # fmt: skip
    assert "note" not in answer


# Words the denylist refuses, where no text is: each answer goes out as it came.
NO_TEXT: dict[str, tuple[tuple[str, dict[str, Any]], dict[str, Any]]] = {
    "identifiers and known fields": (CHAT, chat(
        {"tool_calls": [{"id": DENIED, "type": "function",
                         "function": {"name": "f", "arguments": "{}"}}]},
        {"stop_reason": None, "token_ids": None},
        id=DENIED, model=DENIED, system_fingerprint=DENIED, service_tier="default")),
    # Judged as the prompt when it was sent; here it is the request's, not the model's.
    "what a Response echoes of its request": (RESPONSES, response(
        said_item("reasoning", summary=[], encrypted_content=DENIED),
        instructions=DENIED, metadata={"a": DENIED}, user=DENIED,
        tools=[{"type": "function", "name": "f", "description": DENIED, "parameters": {}}])),
    "tokens, counts, audio and images (the sweep's opaque keys)": (CHAT, chat(
        {"audio": {"id": "a", "data": DENIED, "expires_at": 1, "transcript": "hi"},
         "images": [{"type": "image_url", "image_url": {"url": DENIED}}]},
        {"logprobs": {"content": [{"token": DENIED, "logprob": -1.0, "top_logprobs": []}]},
         "finish_reason": "stop"},
        usage={"prompt_tokens": 1, "completion_tokens": 1, "tier": DENIED})),
}  # fmt: skip


@pytest.mark.parametrize("case", NO_TEXT)
async def test_where_no_text_is_the_answer_goes_out_as_it_came(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    route, answer = NO_TEXT[case]
    assert await answered(start_proxy, scripted, route, answer) == answer


async def test_a_string_the_sweep_found_is_emptied_when_blocked(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    answer = await answered(start_proxy, scripted, CHAT, chat({"annotations": [DENIED]}))
    assert answer["choices"][0]["message"]["annotations"] == [""]


async def test_the_strings_nested_in_a_field_not_heard_of_are_judged_with_their_choice(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """A choice is one text to the output filters (a moderation model judges it whole):
    the strings of a field not heard of, at any depth, are judged in it, but identifiers."""
    Recording.seen.clear()
    nested = {"note": "nested words", "id": "x1", "more": [{"deep": "deeper"}, "listed"]}
    scripted.answer = chat({"content": "hello", "extra": nested})
    proxy = await start_proxy({"filters": [RECORDING]}, upstream=scripted.url)
    status, _, _ = await post_json(f"{proxy.url}{CHAT[0]}", CHAT[1])
    assert status == 200
    judged = [ctx.text for ctx in Recording.seen if ctx.stage == "output"]
    assert judged == ["hello\n\nnested words\n\nlisted\n\ndeeper"]  # x1 left out
