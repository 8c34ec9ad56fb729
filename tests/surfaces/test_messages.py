"""Anthropic's Messages API through the proxy, driven by the official ``anthropic`` client.

Every text of a request the model reads is judged (a denylisted phrase in any
field is refused the way Anthropic refuses a request, an e-mail is redacted
before the model sees it), every text of the answer is judged, and every
error the proxy itself answers is in Anthropic's error shape. Before the
Messages adapter the route was forwarded unjudged: all of these reached the
model, or the client, as sent.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import anthropic
import orjson
import pytest
from opentelemetry.trace import SpanKind

from proxy.measure import genai_attrs as A
from tests.loopback import ProxyFactory, post_json
from tests.otlp_receiver import Traced
from tests.surfaces.conftest import Scripted
from tests.surfaces.messages_shapes import (
    EMAIL,
    FILTERS,
    PHRASE,
    ROUTE,
    client,
    message,
    text,
    text_stream,
)

MESSAGES = "/v1/messages"
Case = Callable[[str], dict[str, Any]]


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def ask(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"messages": list(messages), **extra}


def tool_use(value: str) -> dict[str, Any]:
    call = {"type": "tool_use", "id": "toolu_1", "name": "send",
            "input": {"to": {"list": ["x", value]}, "n": 1}}  # fmt: skip
    return {"role": "assistant", "content": [call]}


def tool_result(content: Any) -> dict[str, Any]:
    return user([{"type": "tool_result", "tool_use_id": "toolu_1", "content": content}])


def document(source: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return user([{"type": "document", "source": source, **fields}, text("summarise")])


def plain(value: str) -> dict[str, Any]:
    return {"type": "text", "media_type": "text/plain", "data": value}


def tool(**fields: Any) -> dict[str, Any]:
    return {"name": "send", "input_schema": {"type": "object"}, **fields}


def deep(value: str, levels: int = 40) -> dict[str, Any]:
    nested: dict[str, Any] = {"type": "text", "text": value}
    for _ in range(levels):
        nested = {"type": "wrapper", "content": [nested]}
    return nested


# Every field of a request the model reads, with the text under test put in it.
CASES: dict[str, Case] = {
    "system string": lambda t: ask(user("hi"), system=f"be kind {t}"),
    "system blocks": lambda t: ask(user("hi"), system=[text("be kind"), text(t)]),
    "system role message": lambda t: ask({"role": "system", "content": t}, user("hi")),
    "user string": lambda t: ask(user(f"mail {t}")),
    "user text block": lambda t: ask(user([text("hi"), text(f"mail {t}")])),
    "assistant text": lambda t: ask(user("hi"), {"role": "assistant", "content": [text(t)]}),
    "thinking": lambda t: ask(
        user("hi"),
        {
            "role": "assistant",
            "content": [{"type": "thinking", "thinking": t, "signature": "sig"}, text("ok")],
        },
    ),
    "tool_use input": lambda t: ask(user("hi"), tool_use(t)),
    "tool_result string": lambda t: ask(user("hi"), tool_use("x"), tool_result(t)),
    "tool_result blocks": lambda t: ask(user("hi"), tool_use("x"), tool_result([text(t)])),
    "tool_result document": lambda t: ask(
        user("hi"),
        tool_use("x"),
        tool_result([{"type": "document", "source": plain(t)}]),
    ),
    "document text source": lambda t: ask(document(plain(f"the file: {t}"))),
    "document content string": lambda t: ask(document({"type": "content", "content": t})),
    "document content blocks": lambda t: ask(
        document({"type": "content", "content": [text("a"), text(t)]})
    ),
    "document title": lambda t: ask(document(plain("x"), title=t)),
    "document context": lambda t: ask(document(plain("x"), context=t)),
    "search_result title": lambda t: ask(
        user([{"type": "search_result", "source": "s", "title": t, "content": [text("x")]}])
    ),
    "search_result content": lambda t: ask(
        user([{"type": "search_result", "source": "s", "title": "x", "content": [text(t)]}])
    ),
    "a block type of a later version": lambda t: ask(
        user([{"type": "future_block", "id": "b1", "body": {"note": [t]}}])
    ),
    "nested past any real request": lambda t: ask(user([{"type": "future_block", **deep(t)}])),
    "tool description": lambda t: ask(user("hi"), tools=[tool(description=t)]),
    "input_schema description": lambda t: ask(
        user("hi"),
        tools=[
            tool(
                input_schema={
                    "type": "object",
                    "properties": {"to": {"type": "string", "description": t}},
                }
            )
        ],
    ),
}


async def create(proxy_client: anthropic.AsyncAnthropic, **request: Any) -> anthropic.types.Message:
    reply: anthropic.types.Message = await proxy_client.messages.create(
        model="m", max_tokens=16, **request
    )
    return reply


@pytest.mark.parametrize("case", CASES)
async def test_a_denylisted_phrase_in_any_field_is_refused_as_anthropic_refuses(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    scripted.answer = message(text("ok"))
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    async with client(proxy) as c:
        with pytest.raises(anthropic.BadRequestError) as caught:
            await create(c, **CASES[case](PHRASE))
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith("content_filter: ")
    assert scripted.bodies == []  # the model never saw it
    assert proxy.value("taxmeter_requests_total", **ROUTE, outcome="blocked") == 1


@pytest.mark.parametrize("case", CASES)
async def test_an_email_in_any_field_reaches_the_model_redacted(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    scripted.answer = message(text("ok"))
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    async with client(proxy) as c:
        reply = await create(c, **CASES[case](EMAIL))
    assert reply.content[0].type == "text"
    (sent,) = scripted.bodies
    assert EMAIL.encode() not in sent
    assert b"[EMAIL]" in sent


async def test_tool_use_input_keeps_its_shape_when_redacted(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    scripted.answer = message(text("ok"))
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    async with client(proxy) as c:
        await create(c, **CASES["tool_use input"](EMAIL))
    (sent,) = scripted.json_bodies()
    assert sent["messages"][1]["content"][0]["input"] == {"to": {"list": ["x", "[EMAIL]"]}, "n": 1}


async def test_parts_no_filter_can_read_are_counted_and_refused_on_request(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    scripted.answer = message(text("ok"))
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": "iVBORw0KGgo="}}  # fmt: skip
    pdf = {"type": "document",
           "source": {"type": "url", "url": "https://example.com/a.pdf"}}  # fmt: skip
    hidden = {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"}
    request = ask(
        user([image, pdf, text("what are these?")]),
        {"role": "assistant", "content": [hidden, text("two things")]},
        user("and?"),
    )
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    async with client(proxy) as c:
        await create(c, **request)
    counted = "taxmeter_uninspected_parts_total"
    for kind in ("image", "file", "encrypted"):
        assert proxy.value(counted, route="messages", kind=kind) == 1, kind
    strict = await start_proxy({**FILTERS, "uninspected": "block"}, upstream=scripted.url)
    async with client(strict) as c:
        with pytest.raises(anthropic.BadRequestError) as caught:
            await create(c, **request)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["message"].startswith("uninspected_content: ")
    assert len(scripted.bodies) == 1  # the refused one never reached the model


ANSWERS = {
    "text": message(text(f"write to {EMAIL}")),
    "second text block": message(text("write to"), text(EMAIL)),
    "thinking": message(
        {"type": "thinking", "thinking": f"the address is {EMAIL}", "signature": "s"},
        text("done"),
    ),
    "tool_use input": message(
        {"type": "tool_use", "id": "toolu_1", "name": "send", "input": {"to": [EMAIL]}},
        stop_reason="tool_use",
    ),
    "a server tool's result": message(
        {
            "type": "web_fetch_tool_result",
            "tool_use_id": "srvtoolu_1",
            "content": {
                "type": "web_fetch_result",
                "url": "https://example.com/",
                "content": {"type": "document", "source": plain(f"mail {EMAIL}")},
            },
        },
        text("fetched"),
    ),
}


@pytest.mark.parametrize("case", ANSWERS)
async def test_an_email_anywhere_in_the_answer_reaches_the_client_redacted(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    scripted.answer = ANSWERS[case]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    async with client(proxy) as c:
        reply = await create(c, **ask(user("hi")))
    shown = reply.model_dump_json()
    assert EMAIL not in shown
    assert "[EMAIL]" in shown
    assert reply.stop_reason == ANSWERS[case]["stop_reason"]
    assert len(reply.content) == len(ANSWERS[case]["content"])


async def test_a_blocked_answer_is_a_refusal_with_its_content_withheld(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    scripted.answer = message(text("fine"), text(f"the password is {PHRASE}"))
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    async with client(proxy) as c:
        reply = await create(c, **ask(user("hi")))
    assert reply.stop_reason == "refusal"
    assert reply.content == []
    assert reply.usage.output_tokens == 7
    assert proxy.value("taxmeter_requests_total", **ROUTE, outcome="blocked") == 1


async def test_usage_and_finish_reason_reach_the_span(
    start_proxy: ProxyFactory, scripted: Scripted, traced: Traced
) -> None:
    scripted.answer = message(text("ok"))
    proxy = await start_proxy(FILTERS, upstream=scripted.url, tracing=traced.setup)
    async with client(proxy) as c:
        await create(c, **ask(user("hi")))
    (server,) = [s for s in await traced.spans() if s.kind == SpanKind.SERVER]
    attrs = server.attributes
    assert attrs is not None
    assert attrs[A.ROUTE] == "messages"
    assert attrs[A.OPERATION_NAME] == "chat"
    assert attrs[A.USAGE_INPUT_TOKENS] == 5
    assert attrs[A.USAGE_OUTPUT_TOKENS] == 7
    assert attrs[A.RESPONSE_FINISH_REASONS] == ("end_turn",)
    assert attrs[A.RESPONSE_MODEL] == "m"
    assert proxy.value("taxmeter_requests_total", **ROUTE, outcome="ok") == 1


def anthropic_error(body: bytes) -> dict[str, Any]:
    document = orjson.loads(body)
    assert document["type"] == "error"
    assert set(document["error"]) == {"type", "message"}
    error: dict[str, Any] = document["error"]
    return error


async def test_a_body_that_is_not_json_or_not_a_request_is_an_anthropic_400(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, body = await post_json(f"{proxy.url}{MESSAGES}", b"{not json")
    assert status == 400
    error = anthropic_error(body)
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("invalid_json: ")
    status, _, body = await post_json(f"{proxy.url}{MESSAGES}", {"model": "m", "prompt": "hi"})
    assert status == 400
    assert anthropic_error(body)["message"].startswith("invalid_body: ")
    assert scripted.bodies == []


async def test_a_body_too_large_is_an_anthropic_413(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    proxy = await start_proxy({**FILTERS, "max_body_bytes": 1024}, upstream=scripted.url)
    async with client(proxy) as c:
        with pytest.raises(anthropic.APIStatusError) as caught:
            await create(c, **ask(user("x" * 4096)))
    assert caught.value.status_code == 413
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "request_too_large"
    assert caught.value.body["error"]["message"].startswith("body_too_large: ")


async def test_a_busy_proxy_is_an_anthropic_429(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    scripted.script = text_stream("slow")
    scripted.script.insert(1, 1.0)  # the first request holds the only slot a second
    proxy = await start_proxy({**FILTERS, "max_concurrent_requests": 1}, upstream=scripted.url)
    async with client(proxy) as c:
        holding = await c.messages.create(model="m", max_tokens=16, stream=True, **ask(user("hi")))
        with pytest.raises(anthropic.RateLimitError) as caught:
            await create(c, **ask(user("hi")))
        await holding.close()
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "rate_limit_error"
    assert caught.value.body["error"]["message"].startswith("concurrency_limit: ")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_a_model_server_that_is_down_is_an_anthropic_api_error(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy(FILTERS, upstream=f"http://127.0.0.1:{free_port()}")
    async with client(proxy) as c:
        with pytest.raises(anthropic.InternalServerError) as caught:
            await create(c, **ask(user("hi")))
    assert caught.value.status_code == 502
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "api_error"
    assert caught.value.body["error"]["message"].startswith("upstream_unreachable: ")
    assert proxy.value("taxmeter_requests_total", **ROUTE, outcome="upstream_error") == 1


async def test_an_answer_that_is_not_a_message_is_a_502(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    scripted.content_type = "text/plain"
    scripted.answer = f"mail {EMAIL}".encode()
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, body = await post_json(f"{proxy.url}{MESSAGES}", ask(user("hi"), model="m"))
    assert status == 502
    assert anthropic_error(body)["message"].startswith("upstream_malformed: ")
    assert EMAIL.encode() not in body
