"""The OpenAI Responses API is judged both ways, driven with the official openai client.

Each case puts an e-mail (or a denylisted phrase) in one text of a request
or of an answer; before the Responses adapter, the route was forwarded
unjudged and all of these reached the model or the client as sent.
"""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import orjson
import pytest
from opentelemetry.trace import SpanKind

from proxy.measure import genai_attrs as A
from tests.loopback import ProxyFactory, RunningProxy, post_json
from tests.otlp_receiver import Traced
from tests.surfaces.conftest import Script, Scripted, sse
from tests.surfaces.responses_events import (
    EMAIL,
    Events,
    function_call,
    message,
    reasoning,
    response,
)

FILTERS = {
    "filters": [
        {"name": "denylist", "type": "denylist", "stages": ["input", "output", "stream"],
         "params": {"words": ["open sesame"]}},
        {"name": "pii", "type": "pii", "stages": ["input", "output", "stream"],
         "stream": {"holdback_chars": 32}},
    ]
}  # fmt: skip
LABELS = {"route": "responses", "variant": "default"}


def client(proxy: RunningProxy) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{proxy.url}/v1", api_key="sk-test", max_retries=0)


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def prompt_cases(text: str) -> dict[str, dict[str, Any]]:
    """A request per text field the model reads, ``text`` in that field."""
    schema = {"type": "object", "properties": {"to": {"type": "string", "description": text}}}
    return {
        "input string": {"input": f"say {text}"},
        "instructions string": {"input": "hi", "instructions": f"be {text}"},
        "instructions items": {"input": "hi", "instructions": [
            {"type": "message", "role": "developer", "content": text}]},
        "typed message": {"input": [{"type": "message", "role": "user", "content": text}]},
        "system message": {"input": [{"role": "system", "content": text}, user("hi")]},
        "developer message": {"input": [{"role": "developer", "content": text}, user("hi")]},
        "assistant message": {"input": [user("hi"), {
            "type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}]},
        "input_text part": {"input": [user([{"type": "input_text", "text": text}])]},
        "refusal part": {"input": [{"role": "assistant", "content": [
            {"type": "refusal", "refusal": text}]}]},
        "untyped part": {"input": [user([{"text": text}])]},
        "function_call arguments": {"input": [{
            "type": "function_call", "call_id": "c1", "name": "send",
            "arguments": orjson.dumps({"to": text}).decode()}]},
        "function_call_output string": {"input": [
            {"type": "function_call_output", "call_id": "c1", "output": text}]},
        "function_call_output parts": {"input": [{
            "type": "function_call_output", "call_id": "c1",
            "output": [{"type": "input_text", "text": text}]}]},
        "custom_tool_call input": {"input": [{
            "type": "custom_tool_call", "call_id": "c1", "name": "sh", "input": text}]},
        "custom_tool_call_output": {"input": [
            {"type": "custom_tool_call_output", "call_id": "c1", "output": text}]},
        "reasoning summary": {"input": [{
            "type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": text}]},
            user("hi")]},
        "reasoning content": {"input": [{
            "type": "reasoning", "id": "rs_1", "summary": [],
            "content": [{"type": "reasoning_text", "text": text}]}, user("hi")]},
        "item with no type or role": {"input": [{"content": text}]},
        "item of no known shape": {"input": [{"note": text}]},
        "unlisted item type": {"input": [
            {"type": "local_shell_call", "id": "ls_1", "call_id": "c1", "status": "completed",
             "action": {"type": "exec", "command": ["echo", text], "env": {}}}, user("hi")]},
        "tool description": {"input": "hi", "tools": [
            {"type": "function", "name": "send", "description": f"mail {text}",
             "parameters": {"type": "object", "properties": {}}}]},
        "tool parameter description": {"input": "hi", "tools": [
            {"type": "function", "name": "send", "parameters": schema}]},
        "custom tool description": {"input": "hi", "tools": [
            {"type": "custom", "name": "sh", "description": text}]},
        "text format description": {"input": "hi", "text": {"format": {
            "type": "json_schema", "name": "out", "schema": schema}}},
        "prompt variables": {"prompt": {"id": "pmpt_1", "variables": {"who": text}}},
        "prompt variable part": {"prompt": {"id": "pmpt_1", "variables": {
            "who": {"type": "input_text", "text": text}}}},
    }  # fmt: skip


BLOCKED = prompt_cases("open sesame")
REDACTED = prompt_cases(EMAIL)


@pytest.mark.parametrize("case", BLOCKED)
async def test_a_denylisted_phrase_in_any_input_field_is_blocked(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    scripted.answer = response("completed", [message("ok")])
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    async with client(proxy) as c:
        with pytest.raises(openai.BadRequestError) as caught:
            await c.responses.create(model="m", **BLOCKED[case])
    assert caught.value.code == "content_filter"
    assert scripted.bodies == []  # the model never saw it
    assert proxy.value("taxmeter_requests_total", **LABELS, outcome="blocked") == 1


@pytest.mark.parametrize("case", REDACTED)
async def test_an_email_in_any_input_field_reaches_the_model_redacted(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    scripted.answer = response("completed", [message("ok")])
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    async with client(proxy) as c:
        reply = await c.responses.create(model="m", **REDACTED[case])
    assert reply.output_text == "ok"
    (sent,) = scripted.bodies
    assert EMAIL.encode() not in sent
    assert b"[EMAIL]" in sent


async def test_parts_no_filter_can_read_are_counted_and_refused_on_request(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    scripted.answer = response("completed", [message("ok")])
    image = {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "auto"}
    body: dict[str, Any] = {
        "model": "m",
        "input": [user([{"type": "input_text", "text": "what is this?"}, image]),
                  {"type": "item_reference", "id": "msg_0"}],
    }  # fmt: skip
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, _ = await post_json(f"{proxy.url}/v1/responses", body)
    assert status == 200
    counted = "taxmeter_uninspected_parts_total"
    assert proxy.value(counted, route="responses", kind="image") == 1
    assert proxy.value(counted, route="responses", kind="reference") == 1
    strict = await start_proxy({**FILTERS, "uninspected": "block"}, upstream=scripted.url)
    status, _, answer = await post_json(f"{strict.url}/v1/responses", body)
    assert status == 400
    assert orjson.loads(answer)["error"]["code"] == "uninspected_content"
    assert len(scripted.bodies) == 1  # the refused one never reached the model


async def test_a_body_that_is_not_a_responses_request_is_refused(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    for body in ({"model": "m", "input": 42}, {"model": "m", "input": ["open sesame"]}):
        status, _, answer = await post_json(f"{proxy.url}/v1/responses", body)
        assert status == 400
        assert orjson.loads(answer)["error"]["code"] == "invalid_body"
    assert scripted.bodies == []


LOGPROBS: list[dict[str, Any]] = [
    {"token": t, "logprob": -0.1, "top_logprobs": []} for t in ("jane", ".doe", "@")
]


async def test_an_email_anywhere_in_the_answer_reaches_the_client_redacted(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    scripted.answer = response(
        "completed",
        [
            reasoning(summary=f"think {EMAIL}", content=f"mail {EMAIL}"),
            message(f"mail {EMAIL}", logprobs=LOGPROBS),
            message(refusal=f"no {EMAIL}", item_id="msg_2"),
            function_call(orjson.dumps({"to": EMAIL}).decode()),
            {"type": "custom_tool_call", "id": "ctc_1", "call_id": "c2", "name": "sh",
             "input": f"mail {EMAIL}"},
        ],
    )  # fmt: skip
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    async with client(proxy) as c:
        reply = await c.responses.create(model="m", input="hi")
    everything = reply.model_dump_json()
    assert EMAIL not in everything
    assert "jane" not in everything  # tokens would spell the redacted text out again
    assert reply.output_text == "mail [EMAIL]"
    assert everything.count("[EMAIL]") == 6
    assert reply.status == "completed"


async def test_a_blocked_answer_is_an_incomplete_response_the_client_parses(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    scripted.answer = response(
        "completed", [message("fine"), function_call('{"say": "open sesame"}')]
    )
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    async with client(proxy) as c:
        reply = await c.responses.create(model="m", input="hi")
    assert reply.status == "incomplete"
    assert reply.incomplete_details is not None
    assert reply.incomplete_details.reason == "content_filter"
    assert reply.output_text == "fine"  # the other item is the model's as it was
    call = reply.output[1]
    assert call.type == "function_call"
    assert call.arguments == ""
    assert "sesame" not in reply.model_dump_json()
    assert proxy.value("taxmeter_requests_total", **LABELS, outcome="blocked") == 1


async def test_a_stored_response_read_back_is_judged_and_aliases_are_the_same_surface(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    scripted.answer = response("completed", [message(f"mail {EMAIL}")])
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    async with client(proxy) as c:
        stored = await c.responses.retrieve("resp_1")
    assert stored.output_text == "mail [EMAIL]"
    for path in ("/responses", "/openai/v1/responses"):
        status, _, answer = await post_json(f"{proxy.url}{path}", {"model": "m", "input": "hi"})
        assert status == 200
        assert EMAIL.encode() not in answer
    status, _, _ = await post_json(f"{proxy.url}/responses", {"input": "open sesame"})
    assert status == 400
    assert proxy.value("taxmeter_requests_total", **LABELS, outcome="ok") == 3


async def test_a_token_count_judges_the_prompt_and_passes_the_count(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    scripted.answer = {"object": "response.input_tokens", "input_tokens": 5}
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    path = f"{proxy.url}/v1/responses/input_tokens"
    status, _, answer = await post_json(path, {"model": "m", "input": f"mail {EMAIL}"})
    assert (status, orjson.loads(answer)["input_tokens"]) == (200, 5)
    (sent,) = scripted.bodies
    assert EMAIL.encode() not in sent
    status, _, _ = await post_json(path, {"model": "m", "input": "open sesame"})
    assert status == 400
    assert len(scripted.bodies) == 1


async def test_an_answer_that_is_not_a_response_is_a_502(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    scripted.answer = {"choices": [{"message": {"content": f"mail {EMAIL}"}}]}
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, answer = await post_json(f"{proxy.url}/v1/responses", {"model": "m", "input": "x"})
    assert status == 502
    assert orjson.loads(answer)["error"]["code"] == "upstream_malformed"
    assert EMAIL.encode() not in answer


def message_stream(
    pieces: list[str], usage: dict[str, int] | None = None, named: bool = True
) -> Events:
    """A message streamed in ``pieces``, the way OpenAI streams one."""
    events = Events(named)
    events.start()
    text = "".join(pieces)
    events.add("response.output_item.added", output_index=0, item=message("", status="in_progress"))
    events.add(
        "response.content_part.added",
        output_index=0,
        item_id="msg_1",
        content_index=0,
        part={"type": "output_text", "text": "", "annotations": [], "logprobs": []},
    )
    for piece in pieces:
        events.add(
            "response.output_text.delta",
            output_index=0,
            item_id="msg_1",
            content_index=0,
            delta=piece,
            logprobs=[{"token": piece, "logprob": -0.1}],
        )
    events.add(
        "response.output_text.done",
        output_index=0,
        item_id="msg_1",
        content_index=0,
        text=text,
        logprobs=[],
    )
    events.add(
        "response.content_part.done",
        output_index=0,
        item_id="msg_1",
        content_index=0,
        part={"type": "output_text", "text": text, "annotations": [], "logprobs": []},
    )
    events.add("response.output_item.done", output_index=0, item=message(text))
    events.end("response.completed", [message(text)], usage)
    return events


SPLIT = ["Write to jane", ".d", "oe@exa", "mple.c", "om today, ", "or call."]
REDACTED_TEXT = "Write to [EMAIL] today, or call."
USAGE = {"input_tokens": 7, "output_tokens": 9, "total_tokens": 16}


# The packaged default: pii at every stage, holding back only what may grow into a match.
DEFAULT_PII = {"filters": [{"name": "pii", "type": "pii"}]}


@pytest.mark.parametrize(
    ("named", "config"),
    [(True, FILTERS), (False, FILTERS), (True, DEFAULT_PII)],
    ids=["event lines", "data only", "holdback auto"],
)
async def test_a_streamed_email_split_across_deltas_is_redacted_everywhere_it_is_repeated(
    start_proxy: ProxyFactory, scripted: Scripted, named: bool, config: dict[str, Any]
) -> None:
    scripted.script = message_stream(SPLIT, USAGE, named).script()
    proxy = await start_proxy(config, upstream=scripted.url)
    async with client(proxy) as c:
        stream = await c.responses.create(model="m", input="hi", stream=True)
        events: list[Any] = [event async for event in stream]
    everything = "".join(event.model_dump_json() for event in events)
    assert EMAIL not in everything
    assert "jane" not in everything  # nor in the logprobs of the deltas
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == REDACTED_TEXT
    (done,) = [e for e in events if e.type == "response.output_text.done"]
    assert done.text == REDACTED_TEXT
    (part,) = [e for e in events if e.type == "response.content_part.done"]
    assert part.part.type == "output_text"
    assert part.part.text == REDACTED_TEXT
    (item,) = [e for e in events if e.type == "response.output_item.done"]
    assert item.item.type == "message"
    assert item.item.content[0].type == "output_text"
    assert item.item.content[0].text == REDACTED_TEXT
    final = events[-1]
    assert final.type == "response.completed"
    assert final.response.output_text == REDACTED_TEXT
    numbers = [event.sequence_number for event in events]
    assert numbers == sorted(set(numbers))  # strictly increasing
    assert numbers == list(range(len(events)))  # and with no gaps where events were dropped
    for _ in range(50):
        if proxy.value("taxmeter_requests_total", **LABELS, outcome="ok") == 1:
            break
        await asyncio.sleep(0.02)
    assert proxy.value("taxmeter_requests_total", **LABELS, outcome="ok") == 1


async def test_the_stream_helper_of_the_client_reads_a_judged_stream(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    scripted.script = message_stream(SPLIT, USAGE).script()
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    async with (
        client(proxy) as c,
        c.responses.stream(model="m", input="hi") as stream,
    ):
        deltas = [
            event.delta async for event in stream if event.type == "response.output_text.delta"
        ]
        final = await stream.get_final_response()
    assert "".join(deltas) == REDACTED_TEXT
    assert final.output_text == REDACTED_TEXT
    assert final.usage is not None
    assert final.usage.output_tokens == 9


async def test_streamed_reasoning_arguments_and_refusals_are_judged(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    events = Events()
    events.start()
    summary = [f"think {EMAIL[:6]}", f"{EMAIL[6:]} over"]
    events.add("response.output_item.added", output_index=0, item=reasoning(status="in_progress"))
    events.add(
        "response.reasoning_summary_part.added",
        output_index=0,
        item_id="rs_1",
        summary_index=0,
        part={"type": "summary_text", "text": ""},
    )
    for piece in summary:
        events.add(
            "response.reasoning_summary_text.delta",
            output_index=0,
            item_id="rs_1",
            summary_index=0,
            delta=piece,
        )
    events.add(
        "response.reasoning_summary_text.done",
        output_index=0,
        item_id="rs_1",
        summary_index=0,
        text="".join(summary),
    )
    events.add(
        "response.reasoning_summary_part.done",
        output_index=0,
        item_id="rs_1",
        summary_index=0,
        part={"type": "summary_text", "text": "".join(summary)},
    )
    events.add("response.output_item.done", output_index=0, item=reasoning("".join(summary)))
    # An "@" escaped and the escape cut in two: the client's parser reads an address.
    arguments = ['{"to": "jane.', "doe\\u00", "40example", '.com"}']
    events.add(
        "response.output_item.added", output_index=1, item=function_call("", status="in_progress")
    )
    for piece in arguments:
        events.add(
            "response.function_call_arguments.delta", output_index=1, item_id="fc_1", delta=piece
        )
    events.add(
        "response.function_call_arguments.done",
        output_index=1,
        item_id="fc_1",
        arguments="".join(arguments),
    )
    events.add("response.output_item.done", output_index=1, item=function_call("".join(arguments)))
    # A call whose arguments come whole in its output_item.done, never in a delta.
    events.add(
        "response.output_item.added",
        output_index=2,
        item=function_call("", status="in_progress", item_id="fc_2"),
    )
    events.add(
        "response.output_item.done",
        output_index=2,
        item=function_call(f'{{"cc": "{EMAIL}"}}', item_id="fc_2"),
    )
    events.add(
        "response.output_item.added",
        output_index=3,
        item=message("", status="in_progress", item_id="msg_2", refusal=""),
    )
    events.add(
        "response.content_part.added",
        output_index=3,
        item_id="msg_2",
        content_index=0,
        part={"type": "refusal", "refusal": ""},
    )
    events.add(
        "response.refusal.delta",
        output_index=3,
        item_id="msg_2",
        content_index=0,
        delta=f"no {EMAIL}",
    )
    events.add(
        "response.refusal.done",
        output_index=3,
        item_id="msg_2",
        content_index=0,
        refusal=f"no {EMAIL}",
    )
    events.add(
        "response.output_item.done",
        output_index=3,
        item=message(refusal=f"no {EMAIL}", item_id="msg_2"),
    )
    events.end("response.completed", [
        reasoning("".join(summary)), function_call("".join(arguments)),
        function_call(f'{{"cc": "{EMAIL}"}}', item_id="fc_2"),
        message(refusal=f"no {EMAIL}", item_id="msg_2")], USAGE)  # fmt: skip
    scripted.script = events.script()
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    async with client(proxy) as c:
        stream = await c.responses.create(model="m", input="hi", stream=True)
        received: list[Any] = [event async for event in stream]
    everything = "".join(event.model_dump_json() for event in received)
    assert EMAIL not in everything
    summary_deltas = [
        e.delta for e in received if e.type == "response.reasoning_summary_text.delta"
    ]
    assert "".join(summary_deltas) == "think [EMAIL] over"
    argument_deltas = [
        e.delta for e in received if e.type == "response.function_call_arguments.delta"
    ]
    assert "".join(argument_deltas) == '{"to": "[EMAIL]"}'
    final = received[-1]
    assert final.type == "response.completed"
    assert [getattr(item, "arguments", None) for item in final.response.output[1:3]] == [
        '{"to": "[EMAIL]"}', '{"cc": "[EMAIL]"}']  # fmt: skip
    numbers = [event.sequence_number for event in received]
    assert numbers == sorted(set(numbers))


async def test_a_blocked_stream_ends_as_an_incomplete_response(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    scripted.script = message_stream(["All fine. Now: open ", "sesame", " and more"]).script()
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    async with client(proxy) as c:
        stream = await c.responses.create(model="m", input="hi", stream=True)
        received: list[Any] = [event async for event in stream]
        async with c.responses.stream(model="m", input="hi") as helper:
            helped = [event.type async for event in helper]
    everything = "".join(event.model_dump_json() for event in received)
    assert "sesame" not in everything
    final = received[-1]
    assert final.type == "response.incomplete"
    assert final.response.status == "incomplete"
    assert final.response.incomplete_details is not None
    assert final.response.incomplete_details.reason == "content_filter"
    assert final.response.id == received[0].response.id
    numbers = [event.sequence_number for event in received]
    assert numbers == sorted(set(numbers))
    assert helped[-1] == "response.incomplete"
    assert proxy.value("taxmeter_requests_total", **LABELS, outcome="blocked") == 2


def ended_at_once(pieces: list[str], usage: dict[str, int] | None = None) -> Events:
    """A message's deltas, then the terminal event at once, listing no output."""
    events = Events()
    events.start()
    events.add("response.output_item.added", output_index=0, item=message("", status="in_progress"))
    for piece in pieces:
        events.add("response.output_text.delta", output_index=0, item_id="msg_1",
                   content_index=0, delta=piece)  # fmt: skip
    events.end("response.completed", [], usage)
    return events


# How the message's part ends: by its own events, or by the terminal event alone.
STREAM_ENDS = {"its own events": message_stream, "the terminal event alone": ended_at_once}


@pytest.mark.parametrize("ending", STREAM_ENDS)
async def test_an_at_stream_end_block_ends_the_stream_filtered(
    start_proxy: ProxyFactory, scripted: Scripted, ending: str
) -> None:
    """Text already sent cannot be recalled: the end of the stream says it was filtered,
    and is the upstream's end, marked (not the end made up for a block before sending)."""
    deny = {"name": "deny_end", "type": "denylist", "stages": ["output"], "at_stream_end": True}
    config = {"filters": [{**deny, "params": {"words": ["open sesame"]}}]}
    usage = {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}
    scripted.script = STREAM_ENDS[ending](["open ", "sesame"], usage).script()
    proxy = await start_proxy(config, upstream=scripted.url)
    async with client(proxy) as c:
        stream = await c.responses.create(model="m", input="hi", stream=True)
        received: list[Any] = [event async for event in stream]
    final = received[-1]
    assert final.type == "response.incomplete"
    assert final.response.incomplete_details.reason == "content_filter"
    assert final.response.usage is not None
    assert final.response.usage.output_tokens == 2
    said = [e.delta for e in received if e.type == "response.output_text.delta"]
    assert "".join(said) == "open sesame"
    for _ in range(50):
        if proxy.value("taxmeter_requests_total", **LABELS, outcome="blocked") == 1:
            break
        await asyncio.sleep(0.02)
    assert proxy.value("taxmeter_requests_total", **LABELS, outcome="blocked") == 1


# The last delta before the cut: all of it held back (and so not sent), or sent in
# part, an address that could still grow held back.
CUT_AFTER = {
    "a delta held back": (SPLIT, REDACTED_TEXT),
    "a delta sent in part": (["Write to ", "or see jane.doe@example.com"],
                             "Write to or see [EMAIL]"),
}  # fmt: skip


@pytest.mark.parametrize("case", CUT_AFTER)
@pytest.mark.parametrize("end", [b"", b"data: [DONE]\n\n"], ids=["eof", "done line"])
async def test_a_stream_cut_before_its_end_releases_what_was_judged(
    start_proxy: ProxyFactory, scripted: Scripted, end: bytes, case: str
) -> None:
    """What was held back goes out numbered after every event sent."""
    pieces, redacted = CUT_AFTER[case]
    events = message_stream(pieces)
    # The upstream stops after the last delta (with LiteLLM's end of stream, or none).
    scripted.script = [*events.script()[:-4], end]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    async with client(proxy) as c:
        stream = await c.responses.create(model="m", input="hi", stream=True)
        received: list[Any] = [event async for event in stream]
    deltas = [e.delta for e in received if e.type == "response.output_text.delta"]
    assert "".join(deltas) == redacted
    numbers = [event.sequence_number for event in received]
    assert numbers == sorted(set(numbers))


async def test_a_stream_is_over_at_its_terminal_event(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """The client closes on response.completed; an upstream slow to end its stream
    after it must not make a complete answer a client_disconnect."""
    scripted.script = [*message_stream(["hello"], USAGE).script(), 3.0]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    async with client(proxy) as c:
        stream = await c.responses.create(model="m", input="hi", stream=True)
        received = await asyncio.wait_for(_collect(stream), 2.5)
    assert received[-1] == "response.completed"
    assert not scripted.ended.is_set()
    for _ in range(50):
        if proxy.value("taxmeter_requests_total", **LABELS, outcome="ok") == 1:
            break
        await asyncio.sleep(0.02)
    assert proxy.value("taxmeter_requests_total", **LABELS, outcome="ok") == 1
    assert proxy.value("taxmeter_requests_total", **LABELS, outcome="client_disconnect") == 0


async def test_a_done_line_after_the_terminal_event_is_an_end_too(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """LiteLLM ends its Responses streams with data: [DONE], in the same read as the end."""
    events = message_stream(SPLIT, USAGE, named=False).events
    scripted.script = [*events[:-1], events[-1] + b"data: [DONE]\n\n"]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    async with client(proxy) as c:
        stream = await c.responses.create(model="m", input="hi", stream=True)
        received: list[Any] = [event async for event in stream]
    assert received[-1].type == "response.completed"
    assert received[-1].response.output_text == REDACTED_TEXT
    for _ in range(50):
        if proxy.value("taxmeter_requests_total", **LABELS, outcome="ok") == 1:
            break
        await asyncio.sleep(0.02)
    assert proxy.value("taxmeter_requests_total", **LABELS, outcome="ok") == 1


async def _collect(stream: Any) -> list[str]:
    return [event.type async for event in stream]


UNJUDGED_STREAMS = {"filters": [{"name": "pii", "type": "pii", "stages": ["input", "output"]}]}


@pytest.mark.parametrize(
    ("streamed", "config"),
    [(False, FILTERS), (True, FILTERS), (True, UNJUDGED_STREAMS)],
    ids=["answer", "judged stream", "relayed stream"],
)
async def test_usage_finish_reason_and_redacted_prompt_reach_the_span(
    start_proxy: ProxyFactory,
    scripted: Scripted,
    traced: Traced,
    streamed: bool,
    config: dict[str, Any],
) -> None:
    if streamed:
        scripted.script = message_stream(["hello ", "there"], USAGE).script()
    else:
        scripted.answer = response("completed", [message("hello there")], USAGE)
    config = {**config, "telemetry": {"trace_content": True}}
    proxy = await start_proxy(config, upstream=scripted.url, tracing=traced.setup)
    async with client(proxy) as c:
        if streamed:
            stream = await c.responses.create(model="m", input=f"mail {EMAIL}", stream=True)
            await _collect(stream)
        else:
            await c.responses.create(model="m", input=f"mail {EMAIL}")
    (server,) = [s for s in await traced.spans() if s.kind == SpanKind.SERVER]
    attrs = server.attributes
    assert attrs is not None
    assert attrs[A.ROUTE] == "responses"
    assert attrs[A.OUTCOME] == "ok"
    assert attrs[A.USAGE_INPUT_TOKENS] == 7
    assert attrs[A.USAGE_OUTPUT_TOKENS] == 9
    prompt = str(attrs[A.INPUT_MESSAGES])
    assert "[EMAIL]" in prompt
    assert EMAIL not in prompt
    assert attrs[A.RESPONSE_FINISH_REASONS] == ("completed",)  # a relayed stream's end is read
    if streamed:
        assert proxy.value("taxmeter_time_to_first_token_seconds_count", **LABELS) == 1
        assert proxy.value("taxmeter_ttft_tax_seconds_count", **LABELS) == 1
    else:
        assert "hello there" in str(attrs[A.OUTPUT_MESSAGES])


async def test_a_stream_no_stream_filter_judges_is_relayed_as_sent(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    scripted.script = message_stream(SPLIT, USAGE).script()
    proxy = await start_proxy(UNJUDGED_STREAMS, upstream=scripted.url)
    body = {"model": "m", "input": "hi", "stream": True}
    status, _, streamed = await post_json(f"{proxy.url}/v1/responses", body)
    assert status == 200
    assert streamed == b"".join(part for part in scripted.script if isinstance(part, bytes))


def relayed_stream(end: str) -> Script:
    """A message stream whose deltas say event names and carry an event that is not
    JSON, then ``end`` (a terminal event, or only ``data: [DONE]``), then a slow close."""
    events = message_stream(["The last event is ", "response.completed", ", not this one."], USAGE)
    body = events.events[:-1]  # all but response.completed
    body.insert(-1, b"data: keep-alive\n\n")  # unread when nothing judges the stream
    if end == "completed":
        body.append(events.events[-1])
    elif end == "incomplete":
        text = "The last event is response.completed, not this one."
        ended = response("incomplete", [message(text, status="incomplete")], USAGE)
        ended["incomplete_details"] = {"reason": "max_output_tokens"}
        body.append(sse({"type": "response.incomplete", "sequence_number": 99,
                         "response": ended}, "response.incomplete"))  # fmt: skip
    else:
        body.append(b"data: [DONE]\n\n")
    return [*body, 3.0]


@pytest.mark.parametrize(
    ("end", "reasons", "usage"),
    [("completed", ("completed",), USAGE), ("incomplete", ("max_output_tokens",), USAGE),
     ("done line", None, None)],
)  # fmt: skip
async def test_a_relayed_stream_is_read_only_for_its_end_usage_and_finish_reason(
    start_proxy: ProxyFactory,
    scripted: Scripted,
    traced: Traced,
    end: str,
    reasons: tuple[str, ...] | None,
    usage: dict[str, int] | None,
) -> None:
    """Nothing judges it: every event goes out as it came (one that is not JSON, a
    delta that names a terminal event), and it is over at its real end, though the
    upstream is slow to close, with the end's usage and reason on the span."""
    scripted.script = relayed_stream(end)
    proxy = await start_proxy(UNJUDGED_STREAMS, upstream=scripted.url, tracing=traced.setup)
    body = {"model": "m", "input": "hi", "stream": True}
    status, _, streamed = await asyncio.wait_for(post_json(f"{proxy.url}/v1/responses", body), 2.5)
    assert status == 200
    assert streamed == b"".join(part for part in scripted.script if isinstance(part, bytes))
    assert not scripted.ended.is_set()
    (server,) = [s for s in await traced.spans() if s.kind == SpanKind.SERVER]
    attrs = server.attributes
    assert attrs is not None
    assert attrs[A.OUTCOME] == "ok"
    assert attrs.get(A.RESPONSE_FINISH_REASONS) == reasons
    if usage is None:
        assert A.USAGE_INPUT_TOKENS not in attrs
    else:
        assert attrs[A.USAGE_INPUT_TOKENS] == usage["input_tokens"]
        assert attrs[A.USAGE_OUTPUT_TOKENS] == usage["output_tokens"]


def event_names(raw: bytes) -> list[tuple[str | None, str]]:
    """Each event's ``event:`` line (None when it has none) and its data's type."""
    named: list[tuple[str | None, str]] = []
    for block in raw.split(b"\n\n"):
        lines = block.split(b"\n")
        data = [line[6:] for line in lines if line.startswith(b"data: {")]
        if data:
            name = [line[7:].decode() for line in lines if line.startswith(b"event: ")]
            named.append((name[0] if name else None, orjson.loads(data[0])["type"]))
    return named


@pytest.mark.parametrize("named", [True, False], ids=["event lines", "data only"])
@pytest.mark.parametrize(
    "pieces", [SPLIT, ["All fine. Now: open ", "sesame"]], ids=["ok", "blocked"]
)
async def test_a_judged_stream_names_its_events_as_the_upstream_did(
    start_proxy: ProxyFactory, scripted: Scripted, named: bool, pieces: list[str]
) -> None:
    """Events the proxy writes (the released rest of a text, a blocked stream's end)
    included: SDKs that dispatch on the ``event:`` line must find it, and one that
    was never sent one must not be given it."""
    scripted.script = message_stream(pieces, USAGE, named).script()
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    body = {"model": "m", "input": "hi", "stream": True}
    status, _, streamed = await post_json(f"{proxy.url}/v1/responses", body)
    assert status == 200
    names = event_names(streamed)
    assert names[-1][1] == ("response.completed" if pieces is SPLIT else "response.incomplete")
    assert names == [(kind if named else None, kind) for _, kind in names]


async def blocked_end(start_proxy: ProxyFactory, scripted: Scripted, events: Events) -> Any:
    """The Response that ends ``events`` streamed through the denylist, which blocks."""
    scripted.script = events.script()
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    body = {"model": "m", "input": "hi", "stream": True}
    status, _, streamed = await post_json(f"{proxy.url}/v1/responses", body)
    assert status == 200
    assert "sesame" not in streamed.decode()
    final = orjson.loads(streamed.split(b"data: ")[-1])
    assert final["type"] == "response.incomplete"
    return final["response"]


async def test_a_blocked_stream_s_end_keeps_the_items_done_and_empties_the_blocked_one(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """The end lists every item announced: one finished as it was finished, the blocked
    one as it was announced, incomplete (also when it was announced with no status),
    its strings emptied; the Response as announced, but for what was not heard of, and
    with no error (it ended by a filter, as OpenAI's own end says: ``"error": null``)."""
    events = Events()
    # Announced with usage, and strings no judge has seen (vLLM's input_messages).
    announced = {**response("in_progress", usage=USAGE), "vendor_extra": 7,
                 "input_messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
    events.add("response.created", response=announced)
    events.add("response.output_item.added", output_index=0,
               item=message("", status="in_progress"))  # fmt: skip
    events.add("response.output_item.done", output_index=0, item=message("fine"))
    call = {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "send",
            "arguments": "", "note": "as announced"}  # fmt: skip
    events.add("response.output_item.added", output_index=1, item=call)
    for piece in ['{"say": "open ', 'sesame"}']:
        events.add("response.function_call_arguments.delta", output_index=1, item_id="fc_1",
                   delta=piece)  # fmt: skip
    events.end("response.completed", [message("fine"), call])
    ended = await blocked_end(start_proxy, scripted, events)
    assert set(ended) == set(response("in_progress"))  # vendor_extra, input_messages gone
    assert ended["error"] is None
    assert {k: ended[k] for k in ("id", "object", "created_at", "model", "tools")} == {
        k: announced[k] for k in ("id", "object", "created_at", "model", "tools")}  # fmt: skip
    assert ended["status"] == "incomplete"
    assert ended["incomplete_details"] == {"reason": "content_filter"}
    assert ended["usage"] is None
    emptied = {**call, "name": "", "arguments": "", "note": "", "status": "incomplete"}
    assert ended["output"] == [message("fine"), emptied]


# A blocked item that was finished before, or never announced: the end lists it
# emptied and incomplete all the same.
BLOCKED_UNANNOUNCED: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "its text first given by the terminal event": [
        ("response.output_item.added", {"output_index": 0,
                                        "item": message(status="in_progress")}),
        ("response.output_item.done", {"output_index": 0, "item": message()}),
        ("response.completed", {"response": response("completed", [message("open sesame")])}),
    ],
    "finished with no output_item.added": [
        ("response.output_item.done", {"output_index": 0, "item": message("open sesame")}),
        ("response.completed", {"response": response("completed", [message("open sesame")])}),
    ],
}  # fmt: skip


@pytest.mark.parametrize("case", BLOCKED_UNANNOUNCED)
async def test_a_blocked_item_finished_or_never_announced_ends_emptied(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    events = Events()
    for kind, fields in BLOCKED_UNANNOUNCED[case]:
        events.add(kind, **fields)
    ended = await blocked_end(start_proxy, scripted, events)
    assert ended["output"] == [message(status="incomplete")]


# A text of no output item that blocks the stream, as each place gives one.
NO_ITEM_S_TEXT: dict[str, tuple[str, dict[str, Any]]] = {
    "an event not heard of": ("response.vendor.note", {"note": "open sesame"}),
    "a Response announced again": (
        "response.in_progress",
        {"response": {**response("in_progress"), "vendor_note": "open sesame"}},
    ),
}


@pytest.mark.parametrize("case", NO_ITEM_S_TEXT)
async def test_a_block_on_a_text_of_no_item_keeps_every_item_finished(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    """A text given whole outside any output item names no item: the end keeps the
    items finished before it as they were finished (the second one too), and empties
    only the one under way. No ``response.created`` came first: the end has no
    Response as announced to start from."""
    kind, fields = NO_ITEM_S_TEXT[case]
    events = Events()
    finished = [message("first", item_id="msg_0"), message("second", item_id="msg_1")]
    for position, item in enumerate(finished):
        events.add("response.output_item.added", output_index=position,
                   item={**item, "content": [], "status": "in_progress"})  # fmt: skip
        events.add("response.output_item.done", output_index=position, item=item)
    under_way = message(status="in_progress", item_id="msg_2")
    events.add("response.output_item.added", output_index=2, item=under_way)
    events.add(kind, **fields)
    events.end("response.completed", [*finished, message("third", item_id="msg_2")])
    ended = await blocked_end(start_proxy, scripted, events)
    assert ended["incomplete_details"] == {"reason": "content_filter"}
    assert ended["output"] == [*finished, {**under_way, "status": "incomplete"}]


async def test_a_redacted_stream_s_repetitions_keep_no_tokens_of_what_was_changed(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """Logprobs and vLLM's ``output_messages`` spell the text out as the model wrote it:
    where a redacted text is repeated they are emptied (still lists, as the SDK types
    them) and dropped."""
    said = f"mail {EMAIL} now"
    tokens = [{"token": "jane", "logprob": -0.1, "bytes": [106], "top_logprobs": []}]
    events = Events()
    events.start()
    events.add("response.output_item.added", output_index=0,
               item=message("", status="in_progress"))  # fmt: skip
    at = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    events.add("response.output_text.delta", **at, delta=said, logprobs=tokens)
    events.add("response.output_text.done", **at, text=said, logprobs=tokens)
    done = message(said, logprobs=tokens)
    events.add("response.output_item.done", output_index=0, item=done)
    end = response("completed", [done])
    end["output_messages"] = [{"role": "assistant", "tokens": [106, 97]}]
    events.add("response.completed", response=end)
    scripted.script = events.script()
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    body = {"model": "m", "input": "hi", "stream": True}
    status, _, streamed = await post_json(f"{proxy.url}/v1/responses", body)
    assert status == 200
    received = [orjson.loads(line[6:]) for line in streamed.split(b"\n")
                if line.startswith(b"data: {")]  # fmt: skip
    assert EMAIL not in streamed.decode()
    (text_done,) = [e for e in received if e["type"] == "response.output_text.done"]
    assert text_done["text"] == "mail [EMAIL] now"
    assert text_done["logprobs"] == []
    final = received[-1]["response"]
    assert final["output"][0]["content"][0]["logprobs"] == []
    assert final["output_messages"] is None
