"""The simulated model server's Messages API, driven over loopback by the official anthropic client.

The SDK builds its objects without validating them, so every shape is also
validated strictly against the SDK's own types.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import pytest
from aiohttp.test_utils import TestServer
from anthropic import AsyncAnthropic
from anthropic.types import Message, MessageParam, RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse
from pydantic import TypeAdapter
from pytest_aiohttp import AiohttpServer

from proxy.sim.model_server import MOCK_STATS, MockSettings, make_mock_app
from tests.loopback import FAST_MODEL
from tests.sim.eventually import eventually
from tests.sim.named_events import post_stream, read_named_events

STREAM_EVENT = TypeAdapter[Any](RawMessageStreamEvent)


def _user(text: str) -> list[MessageParam]:
    return [{"role": "user", "content": text}]


@pytest.fixture
async def client(model: TestServer) -> AsyncIterator[AsyncAnthropic]:
    # The SDK appends /v1/messages to the server's root.
    async with AsyncAnthropic(base_url=str(model.make_url("")), api_key="x", max_retries=0) as c:
        yield c


async def _post(model: TestServer, body: object, path: str = "/v1/messages") -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.post(model.make_url(path), json=body) as response,
    ):
        return response.status, await response.json()


async def test_a_message_has_the_sdk_shape(client: AsyncAnthropic, model: TestServer) -> None:
    body = {
        "model": "claude-test",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "be brief"}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "echo: hi  there"}]}],
    }
    status, raw = await _post(model, body)
    assert status == 200
    strict = Message.model_validate(raw)
    assert strict.id.startswith("msg_")
    assert (strict.type, strict.role, strict.model) == ("message", "assistant", "claude-test")
    assert [(block.type, block.text) for block in strict.content] == [("text", "hi  there")]  # type: ignore[union-attr]
    assert (strict.stop_reason, strict.stop_sequence) == ("end_turn", None)
    # "system: be brief" and "user: echo: hi  there" are 5 words.
    assert (strict.usage.input_tokens, strict.usage.output_tokens) == (5, 2)

    result = await client.messages.create(
        model="claude-test", max_tokens=100, system="be brief", messages=_user("echo: hi  there")
    )
    assert result.model_dump(exclude={"id"}) == strict.model_dump(exclude={"id"})


async def test_the_same_turns_answer_as_chat_does(
    client: AsyncAnthropic, model: TestServer
) -> None:
    message = await client.messages.create(
        model="m", max_tokens=1024, system="be kind", messages=_user("tell me")
    )
    async with aiohttp.ClientSession() as session:
        turns = [{"role": "system", "content": "be kind"}, {"role": "user", "content": "tell me"}]
        async with session.post(
            model.make_url("/v1/chat/completions"), json={"messages": turns}
        ) as response:
            chat = await response.json()
    assert message.content[0].text == chat["choices"][0]["message"]["content"]  # type: ignore[union-attr]
    assert message.usage.output_tokens == FAST_MODEL.max_tokens  # max_tokens is a ceiling


async def test_messages_stream_assembles_the_message(
    client: AsyncAnthropic, model: TestServer
) -> None:
    async with client.messages.stream(
        model="m", max_tokens=256, messages=_user("echo: one two three")
    ) as stream:
        pieces = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert pieces == ["one", " two", " three"]
    assert final.content[0].text == "one two three"  # type: ignore[union-attr]
    assert (final.stop_reason, final.usage.output_tokens) == ("end_turn", 3)
    assert final.usage.input_tokens == 4
    stats = model.app[MOCK_STATS]
    assert (stats.streams_started, stats.streams_finished, stats.active_streams) == (1, 1, 0)

    raw = await client.messages.create(
        model="m", max_tokens=256, messages=_user("echo: one two three"), stream=True
    )
    types = [event.type async for event in raw]  # the SDK drops the ping
    assert types == ["message_start", "content_block_start", *["content_block_delta"] * 3,
                     "content_block_stop", "message_delta", "message_stop"]  # fmt: skip


async def test_every_stream_event_validates(model: TestServer) -> None:
    body = {"model": "m", "max_tokens": 8, "messages": _user("hi")}
    events = await post_stream(model, "/v1/messages", body)
    names = [e.name for e in events]
    assert names == ["message_start", "content_block_start", "ping",
                     *["content_block_delta"] * 8, "content_block_stop", "message_delta",
                     "message_stop"]  # fmt: skip
    for event in events:
        assert event.name == event.data["type"]
        if event.name != "ping":
            STREAM_EVENT.validate_python(event.data)
    start = events[0].data["message"]
    assert (start["content"], start["stop_reason"]) == ([], None)
    assert start["usage"]["output_tokens"] == 1
    delta = events[-2].data
    assert delta["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    assert delta["usage"] == {"output_tokens": 8}


async def test_max_tokens_below_the_default_length_cuts(client: AsyncAnthropic) -> None:
    cut = await client.messages.create(model="m", max_tokens=3, messages=_user("a story"))
    assert (cut.stop_reason, cut.usage.output_tokens) == ("max_tokens", 3)
    assert len(cut.content[0].text.split()) == 3  # type: ignore[union-attr]
    # An echo sets its own length.
    echo = await client.messages.create(model="m", max_tokens=1, messages=_user("echo: a b c"))
    assert (echo.content[0].text, echo.stop_reason) == ("a b c", "end_turn")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        ({"max_tokens": 5, "messages": _user("x")}, 400, "invalid_request_error"),
        ({"model": "m", "messages": _user("x")}, 400, "invalid_request_error"),
        ({"model": "m", "max_tokens": 5}, 400, "invalid_request_error"),
        ({"model": "m", "max_tokens": 5, "messages": []}, 400, "invalid_request_error"),
        ({"model": 7, "max_tokens": 5, "messages": _user("x")}, 400, "invalid_request_error"),
        ({"model": "m", "max_tokens": 0, "messages": _user("x")}, 400, "invalid_request_error"),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
         400, "invalid_request_error"),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": 5}]},
         400, "invalid_request_error"),
        ({"model": "m", "max_tokens": 5, "messages": _user("x"), "system": 5},
         400, "invalid_request_error"),
        ([1, 2], 400, "invalid_request_error"),
    ],
)  # fmt: skip
async def test_bad_requests_get_anthropic_errors(
    model: TestServer, body: object, status: int, kind: str
) -> None:
    got, payload = await _post(model, body)
    assert got == status
    error = ErrorResponse.model_validate(payload)
    assert (error.type, error.error.type) == ("error", kind)
    assert error.error.message
    assert set(payload["error"]) == {"type", "message"}


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "kind"),
    [
        ("POST", "/v1/messages", {}, 400, "invalid_request_error"),  # not JSON
        ("POST", "/v1/messages", {"x-mock-tokens-per-s": "0"}, 400, "invalid_request_error"),
        ("GET", "/v1/messages", {}, 405, "invalid_request_error"),
        ("POST", "/v1/messages/batches", {}, 404, "not_found_error"),
    ],
)
async def test_every_error_on_the_messages_paths_is_anthropic_shaped(
    model: TestServer, method: str, path: str, headers: dict[str, str], status: int, kind: str
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, model.make_url(path), data=b"{no", headers=headers) as response,
    ):
        assert response.status == status
        payload = await response.json()
    assert ErrorResponse.model_validate(payload).error.type == kind


async def test_the_sdk_raises_its_own_errors(client: AsyncAnthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.create(model="m", max_tokens=5, messages=[])
    assert caught.value.status_code == 400
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "invalid_request_error"


async def test_the_path_without_v1_serves_too(model: TestServer) -> None:
    status, payload = await _post(
        model, {"model": "m", "max_tokens": 5, "messages": _user("echo: bare")}, "/messages"
    )
    assert status == 200
    assert Message.model_validate(payload).content[0].text == "bare"  # type: ignore[union-attr]
    status, payload = await _post(model, {"model": "m"}, "/messages")
    assert (status, payload["type"]) == (400, "error")


async def test_a_stream_follows_the_token_schedule(aiohttp_server: AiohttpServer) -> None:
    settings = MockSettings(ttft_ms=100, tokens_per_s=100, max_tokens=11)
    model = await aiohttp_server(make_mock_app(settings))
    body = {"model": "m", "max_tokens": 64, "messages": _user("tell me")}
    async with aiohttp.ClientSession() as session:
        async with session.get(model.make_url("/health")):
            pass  # open the connection before timing anything
        start = time.perf_counter()
        async with session.post(
            model.make_url("/v1/messages"), json={**body, "stream": True}
        ) as response:
            events = await read_named_events(response)
        deltas = [e.at - start for e in events if e.name == "content_block_delta"]
        assert len(deltas) == 11
        assert events[0].at - start == pytest.approx(0.100, abs=0.040)
        for k, arrived in enumerate(deltas):
            assert arrived == pytest.approx(0.100 + k / 100, abs=0.040)
        assert events[-1].at - start == pytest.approx(0.200, abs=0.040)

        start = time.perf_counter()
        async with session.post(model.make_url("/v1/messages"), json=body) as reply:
            assert reply.status == 200
        assert time.perf_counter() - start == pytest.approx(0.200, abs=0.040)


async def test_closing_a_stream_stops_generation(aiohttp_server: AiohttpServer) -> None:
    model = await aiohttp_server(make_mock_app(MockSettings(ttft_ms=5, max_tokens=1000)))
    stats = model.app[MOCK_STATS]
    async with AsyncAnthropic(base_url=str(model.make_url("")), api_key="x") as client:
        async with client.messages.stream(
            model="m", max_tokens=4096, messages=_user("go on")
        ) as stream:
            async for _text in stream.text_stream:
                break
        await eventually(lambda: stats.active_streams == 0)
    assert (stats.active_streams, stats.streams_cancelled, stats.streams_finished) == (0, 1, 0)
