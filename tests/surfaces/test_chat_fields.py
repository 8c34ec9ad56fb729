"""Every text of a chat request the model reads, and of its answer the client reads, is judged.

Each case puts an e-mail (or a denylisted phrase) in one field; before the
surface adapters, all of these reached the model or the client as sent.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from tests.loopback import ProxyFactory, RawServer, post_json
from tests.surfaces.conftest import Scripted, sse

EMAIL = "jane.doe@example.com"
FILTERS = {
    "filters": [
        {"name": "denylist", "type": "denylist", "params": {"words": ["open sesame"]}},
        {"name": "pii", "type": "pii", "stages": ["input", "output", "stream"]},
    ]
}
CHAT = "/v1/chat/completions"


def chat(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": list(messages), **extra}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


ANSWER = {
    "id": "c1",
    "object": "chat.completion",
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
    ],
}

PROMPT_CASES = {
    "input_text part": chat(user([{"type": "input_text", "text": f"mail {EMAIL}"}])),
    "output_text part": chat(user([{"type": "output_text", "text": f"mail {EMAIL}"}])),
    "refusal part": chat(
        {"role": "assistant", "content": [{"type": "refusal", "refusal": f"no {EMAIL}"}]},
        user("hi"),
    ),
    "untyped part": chat(user([{"text": f"mail {EMAIL}"}])),
    "string part": chat(user([f"mail {EMAIL}"])),
    "content as an object": chat(user({"type": "text", "text": f"mail {EMAIL}"})),
    "tool call arguments": chat(
        user("hi"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "t1",
                    "type": "function",
                    "function": {"name": "send", "arguments": f'{{"to": "{EMAIL}"}}'},
                }
            ],
        },
    ),
    "legacy function_call": chat(
        {
            "role": "assistant",
            "content": None,
            "function_call": {"name": "send", "arguments": f'{{"to": "{EMAIL}"}}'},
        }
    ),
    "tool result parts": chat(
        {"role": "tool", "tool_call_id": "t1", "content": [{"type": "text", "text": EMAIL}]}
    ),
    "assistant refusal": chat({"role": "assistant", "content": None, "refusal": EMAIL}),
    "assistant reasoning": chat({"role": "assistant", "content": "x", "reasoning_content": EMAIL}),
    "developer message": chat({"role": "developer", "content": f"mail {EMAIL}"}),
    "tool description": chat(
        user("hi"),
        tools=[{"type": "function", "function": {"name": "f", "description": f"mail {EMAIL}"}}],
    ),
    "tool parameter description": chat(
        user("hi"),
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "f",
                    "parameters": {
                        "type": "object",
                        "properties": {"to": {"type": "string", "description": EMAIL}},
                    },
                },
            }
        ],
    ),
    "chat_template": chat(user("hi"), chat_template=f"{{{{ messages }}}} {EMAIL}"),
    "documents": chat(user("hi"), documents=[{"title": "t", "text": f"mail {EMAIL}"}]),
}


@pytest.mark.parametrize("case", PROMPT_CASES)
async def test_an_email_anywhere_in_the_prompt_reaches_the_model_redacted(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    scripted.answer = ANSWER
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, answer = await post_json(f"{proxy.url}{CHAT}", PROMPT_CASES[case])
    assert status == 200, answer
    (sent,) = scripted.bodies
    assert EMAIL.encode() not in sent
    assert b"[EMAIL]" in sent


@pytest.mark.parametrize(
    "message",
    [
        {"role": "tool", "tool_call_id": "t1", "content": "open sesame"},
        {"role": "system", "content": [{"type": "input_text", "text": "open sesame"}]},
        {"role": "assistant", "tool_calls": [{"function": {"arguments": "open sesame"}}]},
    ],
    ids=["tool result", "system input_text", "tool call"],
)
async def test_a_denylisted_phrase_in_any_role_is_blocked(
    start_proxy: ProxyFactory, scripted: Scripted, message: dict[str, Any]
) -> None:
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, answer = await post_json(f"{proxy.url}{CHAT}", chat(message))
    assert status == 400
    assert orjson.loads(answer)["error"]["code"] == "content_filter"
    assert scripted.bodies == []


async def test_completions_suffix_and_embeddings_input_are_judged(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    scripted.answer = {"object": "list", "data": [], "choices": [{"index": 0, "text": "x"}]}
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    body: dict[str, object] = {"model": "m", "prompt": "def f():", "suffix": f"# {EMAIL}"}
    status, _, _ = await post_json(f"{proxy.url}/v1/completions", body)
    assert status == 200
    body = {"model": "m", "input": [f"mail {EMAIL}", "plain"]}
    status, _, _ = await post_json(f"{proxy.url}/v1/embeddings", body)
    assert status == 200
    for sent in scripted.bodies:
        assert EMAIL.encode() not in sent
    assert orjson.loads(scripted.bodies[1])["input"] == ["mail [EMAIL]", "plain"]
    status, _, _ = await post_json(f"{proxy.url}/v1/embeddings", {"input": "open sesame"})
    assert status == 400


async def test_parts_no_filter_can_read_are_counted_and_refused_on_request(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    scripted.answer = ANSWER
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    body = chat(user([{"type": "text", "text": "what is this?"}, image]))
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, _ = await post_json(f"{proxy.url}{CHAT}", body)
    assert status == 200
    tokens = {"model": "m", "prompt": [[1, 2, 3]]}
    scripted.answer = {"choices": [{"index": 0, "text": "x"}]}
    status, _, _ = await post_json(f"{proxy.url}/v1/completions", tokens)
    assert status == 200
    vectors = {"model": "m", "prompt_embeds": "AAAA"}
    status, _, _ = await post_json(f"{proxy.url}/v1/completions", vectors)
    assert status == 200
    counted = "taxmeter_uninspected_parts_total"
    assert proxy.value(counted, route="chat_completions", kind="image") == 1
    assert proxy.value(counted, route="completions", kind="tokens") == 1
    assert proxy.value(counted, route="completions", kind="embeddings") == 1
    strict = await start_proxy({**FILTERS, "uninspected": "block"}, upstream=scripted.url)
    for path, refused in ((CHAT, body), ("/v1/completions", tokens), ("/v1/completions", vectors)):
        status, _, answer = await post_json(f"{strict.url}{path}", refused)
        assert status == 400
        assert orjson.loads(answer)["error"]["code"] == "uninspected_content"
    assert len(scripted.bodies) == 3  # the refused ones never reached the model


REDACTED = {"type": "redacted_thinking", "data": "RW5jcnlwdGVk"}
THOUGHT = {"type": "thinking", "thinking": "plain", "signature": "s"}


@pytest.mark.parametrize(
    "turn",
    [{"role": "assistant", "content": "ok", "thinking_blocks": [THOUGHT, REDACTED, REDACTED]},
     {"role": "assistant", "content": "ok",
      "provider_specific_fields": {"thinking_blocks": [THOUGHT, REDACTED, REDACTED]}}],
    ids=["on the message", "in LiteLLM's provider fields"],
)  # fmt: skip
async def test_a_redacted_thinking_block_in_the_prompt_is_counted_as_encrypted(
    start_proxy: ProxyFactory, scripted: Scripted, turn: dict[str, Any]
) -> None:
    """Anthropic's sealed reasoning, handed back through LiteLLM: no filter can read
    it; a thinking block in clear beside it is read, not counted."""
    scripted.answer = ANSWER
    body = chat(user("hi"), turn, user("go on"))
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, _ = await post_json(f"{proxy.url}{CHAT}", body)
    assert status == 200
    counted = "taxmeter_uninspected_parts_total"
    assert proxy.value(counted, route="chat_completions", kind="encrypted") == 2
    strict = await start_proxy({**FILTERS, "uninspected": "block"}, upstream=scripted.url)
    status, _, answer = await post_json(f"{strict.url}{CHAT}", body)
    assert status == 400
    assert orjson.loads(answer)["error"]["code"] == "uninspected_content"


def answer_with(message: dict[str, Any], logprobs: Any = None) -> dict[str, Any]:
    choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": logprobs}
    return {**ANSWER, "choices": [choice]}


TOKENS = {"content": [{"token": t, "logprob": -0.1} for t in ("mail ", "jane", ".doe", "@")]}
ANSWER_CASES = {
    "content with logprobs": answer_with({"role": "assistant", "content": f"mail {EMAIL}"}, TOKENS),
    "refusal": answer_with({"role": "assistant", "content": None, "refusal": f"no {EMAIL}"}),
    "reasoning_content": answer_with(
        {"role": "assistant", "content": "x", "reasoning_content": EMAIL}
    ),
    "reasoning": answer_with({"role": "assistant", "content": "x", "reasoning": EMAIL}),
    "tool call arguments": answer_with(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "t", "type": "function", "function": {"name": "f", "arguments": EMAIL}}
            ],
        }
    ),
    "content parts": answer_with(
        {"role": "assistant", "content": [{"type": "text", "text": EMAIL}]}
    ),
}


@pytest.mark.parametrize("case", ANSWER_CASES)
async def test_an_email_anywhere_in_the_answer_reaches_the_client_redacted(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    scripted.answer = ANSWER_CASES[case]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, answer = await post_json(f"{proxy.url}{CHAT}", chat(user("hi")))
    assert status == 200
    assert EMAIL.encode() not in answer
    assert b"[EMAIL]" in answer
    # Tokens would spell the redacted text out again.
    assert orjson.loads(answer)["choices"][0]["logprobs"] is None


def delta_chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish, **extra}
    return sse({"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [choice]})


async def test_streamed_tool_arguments_reasoning_and_refusal_are_judged(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    call = {"index": 0, "id": "t", "type": "function", "function": {"name": "f", "arguments": ""}}
    scripted.script = [
        delta_chunk({"role": "assistant", "reasoning_content": f"think {EMAIL} "}),
        delta_chunk({"tool_calls": [call]}),
        delta_chunk(
            {"tool_calls": [{"index": 0, "function": {"arguments": f'{{"to": "{EMAIL}"'}}]}
        ),
        delta_chunk({"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]}),
        delta_chunk({"refusal": f"no {EMAIL} "}, logprobs={"content": [{"token": "jane"}]}),
        delta_chunk({}, "tool_calls"),
        b"data: [DONE]\n\n",
    ]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{proxy.url}{CHAT}", json=chat(user("hi"), stream=True)) as response,
    ):
        streamed = await response.read()
    assert EMAIL.encode() not in streamed
    assert b"jane" not in streamed  # the logprobs of changed text are dropped too
    events = [orjson.loads(line[6:]) for line in streamed.split(b"\n\n") if line[6:7] == b"{"]
    arguments = "".join(
        call["function"].get("arguments", "")
        for e in events
        for c in e["choices"]
        for call in c["delta"].get("tool_calls", [])
    )
    assert arguments == '{"to": "[EMAIL]"}'
    assert streamed.endswith(b"data: [DONE]\n\n")


@pytest.mark.parametrize(
    ("status", "kind"), [(200, "text/plain"), (200, "application/octet-stream"), (202, "text/html")]
)
async def test_an_answer_that_cannot_be_judged_is_a_502_not_a_pass(
    start_proxy: ProxyFactory, scripted: Scripted, status: int, kind: str
) -> None:
    scripted.status, scripted.content_type = status, kind
    scripted.answer = f"mail {EMAIL}".encode()
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    answered, _, answer = await post_json(f"{proxy.url}{CHAT}", chat(user("hi")))
    assert answered == 502
    assert orjson.loads(answer)["error"]["code"] == "upstream_malformed"
    assert EMAIL.encode() not in answer


NOT_ANSWERS = {
    "an array": [ANSWER],
    "a string": "ok",
    "choices not a list": {**ANSWER, "choices": {"0": ANSWER["choices"][0]}},
    "a choice not an object": {**ANSWER, "choices": ["ok"]},
    "a choice with no message": {**ANSWER, "choices": [{"index": 0, "text": "ok"}]},
    "a message not an object": {**ANSWER, "choices": [{"index": 0, "message": "ok"}]},
}


@pytest.mark.parametrize("answer", NOT_ANSWERS.values(), ids=NOT_ANSWERS.keys())
async def test_json_not_of_a_chat_completion_s_shape_is_a_502(
    start_proxy: ProxyFactory, scripted: Scripted, answer: Any
) -> None:
    scripted.answer = answer
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, got = await post_json(f"{proxy.url}{CHAT}", chat(user("hi")))
    assert status == 502, got
    assert orjson.loads(got)["error"]["code"] == "upstream_malformed"


async def test_an_answer_with_no_content_type_is_a_502(
    start_proxy: ProxyFactory, raw_server: Any
) -> None:
    async def bare(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        text = f"mail {EMAIL}".encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(text), text))
        await writer.drain()
        await reader.read()

    server: RawServer = await raw_server(bare)
    proxy = await start_proxy(FILTERS, upstream=server.url)
    status, _, answer = await post_json(f"{proxy.url}{CHAT}", chat(user("hi")))
    assert status == 502
    assert EMAIL.encode() not in answer


async def test_a_201_json_answer_is_judged(start_proxy: ProxyFactory, scripted: Scripted) -> None:
    scripted.status = 201
    scripted.answer = answer_with({"role": "assistant", "content": f"mail {EMAIL}"})
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, answer = await post_json(f"{proxy.url}{CHAT}", chat(user("hi")))
    assert status == 201
    assert EMAIL.encode() not in answer


@pytest.mark.parametrize("config", [FILTERS, {}], ids=["judged", "judged by nothing"])
async def test_a_stream_is_over_at_its_terminal_event(
    start_proxy: ProxyFactory, scripted: Scripted, config: dict[str, Any]
) -> None:
    """An SDK closes on [DONE]; an upstream slow to end its stream after it must not make
    a complete answer a client_disconnect, nor keep the client waiting."""
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    scripted.script = [
        delta_chunk({"role": "assistant", "content": "hello"}),
        # LiteLLM sends usage on a chunk that still has choices.
        delta_chunk({}, "stop", usage=None)[:-2].replace(
            b'"choices"', b'"usage":' + orjson.dumps(usage) + b',"choices"'
        )
        + b"\n\n",
        0.02,  # [DONE] in a write of its own
        b"data: [DONE]\n\n",
        3.0,
    ]
    proxy = await start_proxy(config, upstream=scripted.url)
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{proxy.url}{CHAT}", json=chat(user("hi"), stream=True)) as response,
    ):
        streamed = await asyncio.wait_for(response.read(), 2.5)
    assert not scripted.ended.is_set()  # the whole answer came before the upstream's end
    assert streamed.endswith(b"data: [DONE]\n\n")
    labels = {"route": "chat_completions", "variant": "default"}
    for _ in range(50):
        if proxy.value("taxmeter_requests_total", **labels, outcome="ok") == 1:
            break
        await asyncio.sleep(0.02)
    assert proxy.value("taxmeter_requests_total", **labels, outcome="ok") == 1
    assert proxy.value("taxmeter_requests_total", **labels, outcome="client_disconnect") == 0


@pytest.mark.parametrize("config", [FILTERS, {}], ids=["judged", "judged by nothing"])
async def test_nothing_after_the_terminal_event_reaches_the_client(
    start_proxy: ProxyFactory, scripted: Scripted, config: dict[str, Any]
) -> None:
    """Events an upstream sends after its end, in the same write, are not relayed."""
    scripted.script = [
        delta_chunk({"role": "assistant", "content": "hello"})
        + delta_chunk({}, "stop")
        + b"data: [DONE]\n\n"
        + delta_chunk({"content": "after the end"}),
    ]
    proxy = await start_proxy(config, upstream=scripted.url)
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{proxy.url}{CHAT}", json=chat(user("hi"), stream=True)) as response,
    ):
        streamed = await response.read()
    assert streamed.endswith(b"data: [DONE]\n\n")
    assert b"after the end" not in streamed
