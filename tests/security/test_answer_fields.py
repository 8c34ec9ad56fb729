"""Answer text a client reads in a field no part of the answer's judging covers.

Each case is a shape a real server sends: LiteLLM repeats a thinking
model's reasoning in ``thinking_blocks`` (and ``provider_specific_fields``)
beside ``reasoning_content``, streamed and not; OpenAI streams an audio
answer's transcript in ``delta.audio.transcript``; Mistral's API streams
``delta.content`` as a list of parts; the Responses API's code interpreter
(vLLM serves it for gpt-oss) writes code and logs in a
``code_interpreter_call`` item and streams the code in its own events.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.loopback import ProxyFactory, post_json
from tests.security.conftest import EMAIL, FILTERS, data_events, streamed
from tests.surfaces.conftest import Scripted, sse

CHAT = "/v1/chat/completions"
PROMPT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
THOUGHT = f"The user is {EMAIL}, so I will write to them."


def chat_answer(message: dict[str, Any]) -> dict[str, Any]:
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    return {"id": "c", "object": "chat.completion", "model": "m", "choices": [choice]}


def delta_chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return sse({"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [choice]})


async def test_litellm_thinking_blocks_beside_the_reasoning_are_redacted(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """LiteLLM's answer from a thinking model (Anthropic, Bedrock, Vertex) repeats the
    reasoning whole in ``thinking_blocks``: redacting ``reasoning_content`` alone leaves it."""
    blocks = [{"type": "thinking", "thinking": THOUGHT, "signature": "c2ln"}]
    scripted.answer = chat_answer(
        {
            "role": "assistant",
            "content": "Done.",
            "reasoning_content": THOUGHT,
            "thinking_blocks": blocks,
            "provider_specific_fields": {"thinking_blocks": blocks},
        }
    )
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, answer = await post_json(f"{proxy.url}{CHAT}", PROMPT)
    assert status == 200
    assert b"[EMAIL]" in answer  # reasoning_content is judged
    assert EMAIL.encode() not in answer


async def test_litellm_streamed_thinking_blocks_are_redacted(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """LiteLLM's stream carries each thinking delta three times: ``reasoning_content``,
    ``thinking_blocks`` and ``provider_specific_fields.thinking_blocks``."""
    pieces = [THOUGHT[i : i + 5] for i in range(0, len(THOUGHT), 5)]
    scripted.script = [
        delta_chunk(
            {
                "reasoning_content": piece,
                "thinking_blocks": [{"type": "thinking", "thinking": piece, "signature": None}],
                "provider_specific_fields": {
                    "thinking_blocks": [{"type": "thinking", "thinking": piece}]
                },
            }
        )
        for piece in pieces
    ]
    scripted.script += [delta_chunk({"content": "Done."}, "stop"), b"data: [DONE]\n\n"]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}{CHAT}", {**PROMPT, "stream": True})
    events = data_events(raw)
    thinking = "".join(
        block["thinking"]
        for event in events
        for choice in event["choices"]
        for block in choice["delta"].get("thinking_blocks") or ()
    )
    assert EMAIL not in thinking
    assert b"jane.doe" not in raw


async def test_a_streamed_audio_transcript_is_judged_as_the_whole_answer_is(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """The non-streamed answer's ``audio.transcript`` is judged; the streamed one was not."""
    text = f"Write to {EMAIL} today."
    scripted.script = [delta_chunk({"role": "assistant", "audio": {"id": "a1", "data": "AAAA"}})]
    scripted.script += [
        delta_chunk({"audio": {"transcript": text[i : i + 4]}}) for i in range(0, len(text), 4)
    ]
    scripted.script += [delta_chunk({}, "stop"), b"data: [DONE]\n\n"]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}{CHAT}", {**PROMPT, "stream": True})
    transcript = "".join(
        (choice["delta"].get("audio") or {}).get("transcript", "")
        for event in data_events(raw)
        for choice in event["choices"]
    )
    assert transcript == "Write to [EMAIL] today."


async def test_streamed_content_given_as_parts_is_judged(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """A non-streamed answer's content is read in any shape; a delta's list of parts was
    relayed unread (Mistral's API streams content this way)."""
    scripted.script = [
        delta_chunk({"role": "assistant", "content": [{"type": "text", "text": f"mail {EMAIL}"}]}),
        delta_chunk({}, "stop"),
        b"data: [DONE]\n\n",
    ]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}{CHAT}", {**PROMPT, "stream": True})
    assert EMAIL.encode() not in raw


RESPONSE = {"id": "resp_1", "object": "response", "created_at": 1, "model": "m",
            "status": "completed", "usage": None}  # fmt: skip
CODE = f"send_mail('{EMAIL}')"
CODE_ITEM = {"type": "code_interpreter_call", "id": "ci_1", "container_id": "cntr_1",
             "status": "completed", "code": CODE,
             "outputs": [{"type": "logs", "logs": f"sent to {EMAIL}"}]}  # fmt: skip
RESPONSES_PROMPT = {"model": "m", "input": "mail them"}


async def test_a_code_interpreter_call_in_a_response_is_judged(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """Input items of unknown types are read whole; output items of types not listed
    (code_interpreter_call, file_search_call, shell calls...) went out unread."""
    scripted.answer = {**RESPONSE, "output": [CODE_ITEM]}
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, answer = await post_json(f"{proxy.url}/v1/responses", RESPONSES_PROMPT)
    assert status == 200
    assert EMAIL.encode() not in answer


async def test_streamed_code_interpreter_code_is_judged(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    added = {**CODE_ITEM, "status": "in_progress", "code": "", "outputs": None}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {**RESPONSE, "status": "in_progress",
                                                  "output": []}},
        {"type": "response.output_item.added", "output_index": 0, "item": added},
    ]  # fmt: skip
    events += [
        {"type": "response.code_interpreter_call_code.delta", "item_id": "ci_1",
         "output_index": 0, "delta": CODE[i : i + 6]}
        for i in range(0, len(CODE), 6)
    ]  # fmt: skip
    events += [
        {"type": "response.code_interpreter_call_code.done", "item_id": "ci_1",
         "output_index": 0, "code": CODE},
        {"type": "response.output_item.done", "output_index": 0, "item": CODE_ITEM},
        {"type": "response.completed", "response": {**RESPONSE, "output": [CODE_ITEM]}},
    ]  # fmt: skip
    scripted.script = [
        sse({**event, "sequence_number": n}, event["type"]) for n, event in enumerate(events)
    ]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}/v1/responses", {**RESPONSES_PROMPT, "stream": True})
    assert b"response.completed" in raw or b"response.incomplete" in raw
    assert EMAIL.encode() not in raw


@pytest.mark.parametrize("kind", [{}, []])
async def test_a_responses_event_whose_type_is_not_a_string_is_upstream_malformed(
    start_proxy: ProxyFactory, scripted: Scripted, kind: Any
) -> None:
    """An unhashable ``type`` raised TypeError inside the codec: an internal error that
    cut the client's stream with no error event, logged with a traceback."""
    created = {"type": "response.created", "sequence_number": 0,
               "response": {**RESPONSE, "status": "in_progress", "output": []}}  # fmt: skip
    scripted.script = [sse(created, "response.created"), b"data: " + orjson.dumps(
        {"type": kind, "sequence_number": 1}) + b"\n\n"]  # fmt: skip
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}/v1/responses", {**RESPONSES_PROMPT, "stream": True})
    assert b"upstream_malformed" in raw
    await proxy.settle()
    labels = {"route": "responses", "variant": "default"}
    assert proxy.value("taxmeter_requests_total", **labels, outcome="internal_error") == 0


SEARCH_ITEM = {"type": "file_search_call", "id": "fs_1", "status": "completed",
               "queries": [f"mail of {EMAIL}"],
               "results": [{"file_id": "file_1", "filename": "staff.txt", "score": 0.9,
                            "text": f"Jane: {EMAIL}"}]}  # fmt: skip


async def test_an_output_item_of_another_type_is_read_whole_streamed_or_not(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """A file search's queries and results, as the input side reads an unknown item."""
    scripted.answer = {**RESPONSE, "output": [SEARCH_ITEM]}
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, answer = await post_json(f"{proxy.url}/v1/responses", RESPONSES_PROMPT)
    assert status == 200
    assert EMAIL.encode() not in answer
    assert orjson.loads(answer)["output"][0]["results"][0]["file_id"] == "file_1"
    added = {**SEARCH_ITEM, "status": "in_progress", "queries": [], "results": None}
    events: list[dict[str, Any]] = [
        {"type": "response.output_item.added", "output_index": 0, "item": added},
        {"type": "response.output_item.done", "output_index": 0, "item": SEARCH_ITEM},
        {"type": "response.completed", "response": {**RESPONSE, "output": [SEARCH_ITEM]}},
    ]
    scripted.script = [
        sse({**event, "sequence_number": n}, event["type"]) for n, event in enumerate(events)
    ]
    raw = await streamed(f"{proxy.url}/v1/responses", {**RESPONSES_PROMPT, "stream": True})
    assert b"response.completed" in raw
    assert EMAIL.encode() not in raw


OPEN = "open finding: not fixed in this change (see the review's findings)"


async def test_a_json_escape_in_streamed_tool_call_arguments_does_not_hide_an_email(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """Non-streamed arguments are judged parsed; streamed argument deltas are judged as
    they come, so an escaped ``@`` (``\\u0040``) reaches the client's JSON parser."""
    escaped = EMAIL.replace("@", "\\u0040")
    arguments = f'{{"to": "{escaped}"}}'
    call = {"index": 0, "id": "t", "type": "function", "function": {"name": "f", "arguments": ""}}
    scripted.script = [delta_chunk({"role": "assistant", "tool_calls": [call]})]
    scripted.script += [
        delta_chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[i : i + 5]}}]})
        for i in range(0, len(arguments), 5)
    ]
    scripted.script += [delta_chunk({}, "tool_calls"), b"data: [DONE]\n\n"]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}{CHAT}", {**PROMPT, "stream": True})
    sent = "".join(
        c["function"].get("arguments", "")
        for event in data_events(raw)
        for choice in event["choices"]
        for c in choice["delta"].get("tool_calls") or ()
    )
    assert EMAIL not in str(orjson.loads(sent))


MESSAGES_ASK = {"model": "m", "max_tokens": 8,
                "messages": [{"role": "user", "content": "call it"}]}  # fmt: skip


async def test_a_key_of_an_answered_tool_input_is_redacted_and_its_value_kept(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """The client parses the input keys and all (the SDK hands them to the tool)."""
    tool_use = {"type": "tool_use", "id": "t", "name": "f",
                "input": {f"cc {EMAIL}": {"note": f"for {EMAIL}"}, "n": 1}}  # fmt: skip
    scripted.answer = {"id": "msg", "type": "message", "role": "assistant", "model": "m",
                       "content": [tool_use], "stop_reason": "tool_use",
                       "usage": {"input_tokens": 1, "output_tokens": 1}}  # fmt: skip
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, got = await post_json(f"{proxy.url}/v1/messages", MESSAGES_ASK)
    assert status == 200, got
    (block,) = orjson.loads(got)["content"]
    assert block["input"] == {"cc [EMAIL]": {"note": "for [EMAIL]"}, "n": 1}


STREAMED_MESSAGE: dict[str, Any] = {
    "id": "msg", "type": "message", "role": "assistant", "model": "m", "content": [],
    "stop_reason": None, "usage": {"input_tokens": 1, "output_tokens": 0},
}  # fmt: skip
# Blocks a Messages stream gives whole in their start, no delta following.
WHOLE_BLOCKS: dict[str, dict[str, Any]] = {
    "a web fetch's document": {
        "type": "web_fetch_tool_result", "tool_use_id": "srvtoolu_1",
        "content": {"type": "web_fetch_result", "url": "https://example.com/staff",
                    "content": {"type": "document", "title": "Staff",
                                "source": {"type": "text", "media_type": "text/plain",
                                           "data": f"Jane: {EMAIL}"}}}},
    "a web search's result title": {
        "type": "web_search_tool_result", "tool_use_id": "srvtoolu_1",
        "content": [{"type": "web_search_result", "url": "https://example.com",
                     "title": f"Jane {EMAIL}", "encrypted_content": "EqgfCioIARgBIiQ"}]},
    "a code execution's output": {
        "type": "code_execution_tool_result", "tool_use_id": "srvtoolu_1",
        "content": {"type": "code_execution_result", "stdout": f"{EMAIL}\n",
                    "stderr": "", "return_code": 0}},
    "an MCP tool's result": {
        "type": "mcp_tool_result", "tool_use_id": "mcptoolu_1", "is_error": False,
        "content": [{"type": "text", "text": f"owner: {EMAIL}"}]},
    "a block not heard of": {"type": "x_note", "note": f"mail {EMAIL}"},
}  # fmt: skip


def whole_block_stream(block: dict[str, Any], in_message_start: bool) -> list[bytes | float]:
    """A stream whose one block comes whole: in its content_block_start, or already
    in message_start's content."""
    events: list[dict[str, Any]] = (
        [
            {"type": "message_start", "message": {**STREAMED_MESSAGE, "content": [block]}},
        ]
        if in_message_start
        else [
            {"type": "message_start", "message": STREAMED_MESSAGE},
            {"type": "content_block_start", "index": 0, "content_block": block},
        ]
    )
    events += [
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 3},
        },
        {"type": "message_stop"},
    ]
    return [sse(event, event["type"]) for event in events]  # fmt: skip


STREAMED_ASK = {"model": "m", "max_tokens": 8, "stream": True,
                "messages": [{"role": "user", "content": "fetch it"}]}  # fmt: skip


@pytest.mark.parametrize("in_message_start", [False, True], ids=["block start", "message start"])
@pytest.mark.parametrize("kind", WHOLE_BLOCKS)
async def test_a_streamed_server_tool_result_block_is_judged(
    start_proxy: ProxyFactory, scripted: Scripted, kind: str, in_message_start: bool
) -> None:
    """A Messages stream's server tool results arrive whole in their block's start
    and are judged there, as the same block is in a non-streamed answer."""
    scripted.script = whole_block_stream(WHOLE_BLOCKS[kind], in_message_start)
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}/v1/messages", STREAMED_ASK)
    assert b"message_stop" in raw
    assert EMAIL.encode() not in raw
    assert b"[EMAIL]" in raw
    started = [e for e in data_events(raw) if e["type"] in ("content_block_start", "message_start")]
    blocks = [e.get("content_block") or e["message"]["content"][0] for e in started[-1:]]
    assert blocks[0]["type"] == WHOLE_BLOCKS[kind]["type"]  # the block itself, redacted


async def test_a_denylisted_phrase_in_a_streamed_server_tool_result_ends_the_stream(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    block = {"type": "mcp_tool_result", "tool_use_id": "mcptoolu_1",
             "content": [{"type": "text", "text": "say open sesame"}]}  # fmt: skip
    scripted.script = whole_block_stream(block, in_message_start=False)
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}/v1/messages", STREAMED_ASK)
    assert b"open sesame" not in raw
    (delta,) = [e for e in data_events(raw) if e["type"] == "message_delta"]
    assert delta["delta"]["stop_reason"] == "refusal"
    assert data_events(raw)[-1] == {"type": "message_stop"}


# Events of a Messages stream whose strings are judged whole where they come.
WHOLE_EVENTS: dict[str, dict[str, Any]] = {
    "a citation's cited text": {
        "type": "content_block_delta", "index": 0,
        "delta": {"type": "citations_delta", "citation": {
            "type": "web_search_result_location", "url": "https://example.com/staff",
            "title": "Staff", "encrypted_index": "RW5j", "cited_text": f"Jane: {EMAIL}"}}},
    "a delta not heard of": {
        "type": "content_block_delta", "index": 0, "delta": {"type": "x_delta", "note": EMAIL}},
    "an event not heard of": {"type": "x_event", "note": {"text": f"mail {EMAIL}"}},
}  # fmt: skip


@pytest.mark.parametrize("kind", WHOLE_EVENTS)
async def test_a_streamed_event_not_of_the_answers_text_is_judged_whole(
    start_proxy: ProxyFactory, scripted: Scripted, kind: str
) -> None:
    """They were relayed as they came: a web page's text quoted, a later version's event."""
    script = whole_block_stream({"type": "text", "text": ""}, in_message_start=False)
    script.insert(2, sse(WHOLE_EVENTS[kind], WHOLE_EVENTS[kind]["type"]))
    scripted.script = script
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}/v1/messages", STREAMED_ASK)
    assert b"message_stop" in raw
    assert EMAIL.encode() not in raw
    assert b"[EMAIL]" in raw


CITATION = {"type": "url_citation", "url_citation": {
    "title": f"Staff: {EMAIL}", "url": "https://example.com/staff", "start_index": 0,
    "end_index": 4}}  # fmt: skip


async def test_a_cited_pages_title_in_a_chat_answer_is_judged_streamed_or_not(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """OpenAI's search models annotate an answer with the pages they cite."""
    scripted.answer = chat_answer({"role": "assistant", "content": "Done.",
                                   "annotations": [CITATION]})  # fmt: skip
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, answer = await post_json(f"{proxy.url}{CHAT}", PROMPT)
    assert status == 200
    assert EMAIL.encode() not in answer
    assert b"Staff: [EMAIL]" in answer
    scripted.script = [
        delta_chunk({"role": "assistant", "content": "Done."}),
        delta_chunk({"annotations": [CITATION]}),
        delta_chunk({}, "stop"),
        b"data: [DONE]\n\n",
    ]
    raw = await streamed(f"{proxy.url}{CHAT}", {**PROMPT, "stream": True})
    assert EMAIL.encode() not in raw
    assert b"Staff: [EMAIL]" in raw


WEB_CITATION = {"type": "web_search_result_location", "url": "https://example.com/staff",
                "title": "Staff", "encrypted_index": "RW5j",
                "cited_text": f"Jane: {EMAIL}"}  # fmt: skip


async def test_a_web_pages_text_a_messages_answer_cites_is_judged(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    scripted.answer = {**STREAMED_MESSAGE, "content": [
        {"type": "text", "text": "Jane is on staff.", "citations": [WEB_CITATION]}]}  # fmt: skip
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    ask = {**STREAMED_ASK, "stream": False}
    status, _, answer = await post_json(f"{proxy.url}/v1/messages", ask)
    assert status == 200
    assert EMAIL.encode() not in answer
    assert b"Jane: [EMAIL]" in answer


@pytest.mark.parametrize("as_list", [True, False], ids=["a list", "one object"])
@pytest.mark.parametrize("in_message_start", [False, True], ids=["block start", "message start"])
async def test_citations_a_text_block_starts_with_are_judged(
    start_proxy: ProxyFactory, scripted: Scripted, in_message_start: bool, as_list: bool
) -> None:
    block = {"type": "text", "text": "", "citations": [WEB_CITATION] if as_list else WEB_CITATION}
    scripted.script = whole_block_stream(block, in_message_start)
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}/v1/messages", STREAMED_ASK)
    assert b"message_stop" in raw
    assert EMAIL.encode() not in raw
    assert b"Jane: [EMAIL]" in raw


async def test_a_delta_not_heard_of_is_judged_across_its_events(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    script = whole_block_stream({"type": "text", "text": ""}, in_message_start=False)
    pieces = [{"type": "content_block_delta", "index": 0, "delta": {"type": "x_delta", "text": p}}
              for p in ("echo open ", "sesame")]  # fmt: skip
    script[2:2] = [sse(piece, "content_block_delta") for piece in pieces]
    scripted.script = script
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}/v1/messages", STREAMED_ASK)
    assert b"sesame" not in raw
    (delta,) = [e for e in data_events(raw) if e["type"] == "message_delta"]
    assert delta["delta"]["stop_reason"] == "refusal"
