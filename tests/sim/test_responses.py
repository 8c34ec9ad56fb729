"""The simulated model server's Responses API, driven over loopback by the official openai client.

The SDK builds its objects without validating them, so every shape is also
validated strictly against the SDK's own types.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI
from openai.types.responses import Response, ResponseInputParam, ResponseStreamEvent
from pydantic import TypeAdapter
from pytest_aiohttp import AiohttpServer

from proxy.sim.model_server import MOCK_STATS, MockSettings, make_mock_app
from proxy.sim.responses import ResponseStore
from tests.loopback import FAST_MODEL
from tests.sim.eventually import eventually
from tests.sim.named_events import post_stream, read_named_events

STREAM_EVENT = TypeAdapter[Any](ResponseStreamEvent)
OPENING = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
]
CLOSING = [
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
]


@pytest.fixture
async def client(model: TestServer) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(
        base_url=str(model.make_url("/v1")), api_key="x", max_retries=0
    ) as client:
        yield client


async def test_a_response_has_the_sdk_shape(client: AsyncOpenAI) -> None:
    raw = await client.responses.with_raw_response.create(
        model="my-model", input="echo: hello  there", instructions="be brief"
    )
    strict = Response.model_validate(raw.http_response.json())
    result = raw.parse()
    assert result == strict
    assert result.id.startswith("resp_")
    assert (result.object, result.status, result.model) == ("response", "completed", "my-model")
    assert result.instructions == "be brief"
    assert result.output_text == "hello  there"
    (item,) = result.output
    assert item.type == "message"
    assert (item.role, item.status) == ("assistant", "completed")
    assert item.id.startswith("msg_")
    assert [(part.type, getattr(part, "text", None)) for part in item.content] == [
        ("output_text", "hello  there")
    ]
    assert result.usage is not None
    # "system: be brief" and "user: echo: hello  there" are 5 words.
    assert (result.usage.input_tokens, result.usage.output_tokens) == (5, 2)
    assert result.usage.total_tokens == 7
    assert result.completed_at is not None
    assert result.created_at <= result.completed_at <= time.time()


async def test_input_items_read_as_a_conversation(client: AsyncOpenAI) -> None:
    turns: ResponseInputParam = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "an answer"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "echo: x"}]},
    ]
    echoed = await client.responses.create(model="m", input=turns)
    assert echoed.output_text == "x"

    # The same turns make the same pseudo-text as on chat completions.
    response = await client.responses.create(model="m", input="tell me", instructions="be kind")
    chat = await client.chat.completions.create(
        model="m",
        messages=[{"role": "system", "content": "be kind"}, {"role": "user", "content": "tell me"}],
    )
    assert response.output_text == chat.choices[0].message.content
    assert response.usage is not None
    assert response.usage.output_tokens == FAST_MODEL.max_tokens


async def test_a_stream_sends_every_event_in_order(client: AsyncOpenAI, model: TestServer) -> None:
    events = [e async for e in await client.responses.create(model="m", input="hi", stream=True)]
    types = [e.type for e in events]
    deltas = FAST_MODEL.max_tokens
    assert types == [*OPENING, *["response.output_text.delta"] * deltas, *CLOSING,
                     "response.completed"]  # fmt: skip
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert events[0].type == "response.created"
    assert events[0].response.status == "in_progress"
    assert events[0].response.output == []
    done = events[-1]
    assert done.type == "response.completed"
    assert done.response.output_text == text
    assert done.response.id == events[0].response.id
    assert done.response.usage is not None
    assert done.response.usage.output_tokens == deltas
    stats = model.app[MOCK_STATS]
    assert (stats.streams_started, stats.streams_finished, stats.active_streams) == (1, 1, 0)


async def test_every_stream_event_validates(model: TestServer) -> None:
    events = await post_stream(model, "/v1/responses", {"input": "echo: a b c"})
    for event in events:
        assert event.name == event.data["type"]  # the SSE event is named by its type
        STREAM_EVENT.validate_python(event.data)
    item_ids = {e.data["item_id"] for e in events if "item_id" in e.data}
    assert len(item_ids) == 1
    assert [e.data["delta"] for e in events if "delta" in e.data] == ["a", " b", " c"]
    final = Response.model_validate(events[-1].data["response"])
    assert final.output_text == "a b c"
    assert final.output[0].id in item_ids


async def test_stored_responses_are_retrieved(client: AsyncOpenAI) -> None:
    created = await client.responses.create(model="m", input="echo: keep me")
    assert await client.responses.retrieve(created.id) == created

    stream = await client.responses.create(model="m", input="echo: me too", stream=True)
    events = [e async for e in stream]
    assert events[-1].type == "response.completed"
    retrieved = await client.responses.retrieve(events[-1].response.id)
    assert retrieved == events[-1].response
    assert retrieved.output_text == "me too"

    unstored = await client.responses.create(model="m", input="echo: forget me", store=False)
    assert unstored.store is False  # type: ignore[attr-defined]  # an extra field of the SDK's
    for missing in (unstored.id, "resp_nope"):
        with pytest.raises(openai.NotFoundError) as caught:
            await client.responses.retrieve(missing)
        error = caught.value.body
        assert isinstance(error, dict)
        assert error["type"] == "invalid_request_error"
        assert missing in error["message"]


def test_the_store_keeps_the_most_recent() -> None:
    store = ResponseStore(capacity=2)
    for name in ("a", "b", "c"):
        store.put({"id": name})
    assert [store.get(name) for name in ("a", "b", "c")] == [None, {"id": "b"}, {"id": "c"}]


async def test_max_output_tokens_cuts_the_answer(client: AsyncOpenAI, model: TestServer) -> None:
    cut = await client.responses.create(model="m", input="a story", max_output_tokens=3)
    assert cut.status == "incomplete"
    assert cut.incomplete_details is not None
    assert cut.incomplete_details.reason == "max_output_tokens"
    assert cut.output[0].status == "incomplete"  # type: ignore[union-attr]
    assert len(cut.output_text.split()) == 3
    assert cut.max_output_tokens == 3

    roomy = await client.responses.create(model="m", input="a story", max_output_tokens=4096)
    assert roomy.status == "completed"
    assert roomy.usage is not None
    assert roomy.usage.output_tokens == FAST_MODEL.max_tokens  # a ceiling, not a length

    events = await post_stream(model, "/v1/responses", {"input": "a story", "max_output_tokens": 3})
    assert events[-1].name == "response.incomplete"
    STREAM_EVENT.validate_python(events[-1].data)
    assert events[-1].data["response"]["output"][0]["content"][0]["text"] == cut.output_text


async def test_request_settings_are_repeated(client: AsyncOpenAI) -> None:
    result = await client.responses.create(
        model="m",
        input="hi",
        metadata={"team": "safety"},
        temperature=0.2,
        top_p=0.5,
        parallel_tool_calls=False,
    )
    assert result.metadata == {"team": "safety"}
    assert (result.temperature, result.top_p, result.parallel_tool_calls) == (0.2, 0.5, False)
    assert (result.tool_choice, result.tools) == ("auto", [])


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        (b"{not json", None, "invalid_json"),
        (b"[]", None, "invalid_type"),
        (b'{"model": "m"}', "input", "missing_required_parameter"),
        (b'{"input": []}', "input", "invalid_value"),
        (b'{"input": 7}', "input", "invalid_value"),
        (b'{"input": [{"role": "user", "content": 7}]}', "input", "invalid_value"),
        (b'{"input": "x", "max_output_tokens": 0}', "max_output_tokens", "invalid_value"),
        (b'{"input": "x", "max_output_tokens": true}', "max_output_tokens", "invalid_type"),
        (b'{"input": "x", "metadata": "team"}', "metadata", "invalid_type"),
        (b'{"input": "x", "temperature": "hot"}', "temperature", "invalid_type"),
        (b'{"input": "x", "store": 1}', "store", "invalid_type"),
    ],
)
async def test_bad_requests_get_openai_errors(
    model: TestServer, body: bytes, param: str | None, code: str
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(model.make_url("/v1/responses"), data=body) as response,
    ):
        assert response.status == 400
        error = (await response.json())["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)


async def test_the_path_without_v1_serves_too(model: TestServer) -> None:
    async with AsyncOpenAI(base_url=str(model.make_url("")), api_key="x") as bare:
        created = await bare.responses.create(model="m", input="echo: bare")
        assert (await bare.responses.retrieve(created.id)).output_text == "bare"


async def test_a_stream_follows_the_token_schedule(aiohttp_server: AiohttpServer) -> None:
    settings = MockSettings(ttft_ms=100, tokens_per_s=100, max_tokens=11)
    model = await aiohttp_server(make_mock_app(settings))
    words = " ".join(f"w{k}" for k in range(11))
    async with aiohttp.ClientSession() as session:
        async with session.get(model.make_url("/health")):
            pass  # open the connection before timing anything
        start = time.perf_counter()
        body = {"input": "echo: " + words, "stream": True}
        async with session.post(model.make_url("/v1/responses"), json=body) as response:
            events = await read_named_events(response)
        # Announced at once, as OpenAI does, before the first token.
        assert events[0].at - start < 0.040
        deltas = [e.at - start for e in events if e.name == "response.output_text.delta"]
        assert len(deltas) == 11
        for k, arrived in enumerate(deltas):
            assert arrived == pytest.approx(0.100 + k / 100, abs=0.040)
        assert events[-1].at - start == pytest.approx(0.200, abs=0.040)

        # Not streamed, it takes as long as the whole stream would.
        start = time.perf_counter()
        async with session.post(model.make_url("/v1/responses"), json={"input": words}) as reply:
            assert reply.status == 200
        assert time.perf_counter() - start == pytest.approx(0.200, abs=0.040)

        fast = {"x-mock-ttft-ms": "0", "x-mock-tokens-per-s": "100000"}
        start = time.perf_counter()
        body = {"input": words}
        async with session.post(model.make_url("/v1/responses"), json=body, headers=fast) as reply:
            assert reply.status == 200
        assert time.perf_counter() - start < 0.040


async def test_closing_a_stream_stops_generation(aiohttp_server: AiohttpServer) -> None:
    model = await aiohttp_server(make_mock_app(MockSettings(ttft_ms=5, max_tokens=1000)))
    stats = model.app[MOCK_STATS]
    async with AsyncOpenAI(base_url=str(model.make_url("/v1")), api_key="x") as client:
        stream = await client.responses.create(model="m", input="go on", stream=True)
        async for event in stream:
            if event.type == "response.output_text.delta":
                break
        await stream.close()
        await eventually(lambda: stats.active_streams == 0)
    assert (stats.active_streams, stats.streams_cancelled, stats.streams_finished) == (0, 1, 0)
