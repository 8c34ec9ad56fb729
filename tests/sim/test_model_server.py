"""The simulated model server, driven over loopback by the official openai client."""

from __future__ import annotations

import asyncio
import base64
import math
import os
import signal
import struct
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam
from pytest_aiohttp import AiohttpServer

from proxy.sim.model_server import (
    MOCK_STATS,
    MockSettings,
    MockStats,
    make_mock_app,
    serve_mock,
)
from tests.sim.eventually import eventually

FAST = MockSettings(ttft_ms=1, tokens_per_s=5000, max_tokens=12)
REPO_ROOT = Path(__file__).resolve().parents[2]


def _user(text: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": text}]


def _openai(port: int | None) -> AsyncOpenAI:
    assert port is not None
    return AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)


def _norm(vector: list[float]) -> float:
    return math.sqrt(math.fsum(v * v for v in vector))


async def _read_events(response: aiohttp.ClientResponse, count: int) -> list[bytes]:
    events: list[bytes] = []
    while len(events) < count:
        line = await response.content.readline()
        assert line, "stream ended early"
        if line.startswith(b"data: "):
            events.append(line)
    return events


@pytest.fixture
async def server(aiohttp_server: AiohttpServer) -> TestServer:
    return await aiohttp_server(make_mock_app(FAST))


@pytest.fixture
async def client(server: TestServer) -> AsyncIterator[AsyncOpenAI]:
    async with _openai(server.port) as c:
        yield c


def _stats(server: TestServer) -> MockStats:
    return server.app[MOCK_STATS]


async def test_chat_non_streamed_has_openai_shape(client: AsyncOpenAI) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "echo: hello  there"},
    ]
    result = await client.chat.completions.create(model="my-model", messages=messages)
    assert result.id.startswith("chatcmpl-")
    assert result.object == "chat.completion"
    assert result.model == "my-model"
    assert [c.index for c in result.choices] == [0]
    assert result.choices[0].message.role == "assistant"
    assert result.choices[0].message.content == "hello  there"
    assert result.choices[0].finish_reason == "stop"
    assert result.choices[0].logprobs is None
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (5, 2)
    assert result.usage.total_tokens == 7


async def test_pseudo_text_is_seeded_by_the_prompt(client: AsyncOpenAI) -> None:
    async def text(prompt: str) -> str:
        result = await client.chat.completions.create(model="m", messages=_user(prompt))
        assert result.choices[0].finish_reason == "stop"
        assert result.usage is not None
        assert result.usage.completion_tokens == FAST.max_tokens
        content = result.choices[0].message.content
        assert content is not None
        return content

    first = await text("tell me a story")
    assert len(first.split()) == FAST.max_tokens
    assert await text("tell me a story") == first
    assert await text("tell me another story") != first


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
async def test_requested_limit_sets_length(client: AsyncOpenAI, field: str) -> None:
    result = await client.chat.completions.create(
        model="m", messages=_user("hello"), extra_body={field: 5}
    )
    assert result.choices[0].finish_reason == "length"
    assert result.usage is not None
    assert result.usage.completion_tokens == 5
    assert len((result.choices[0].message.content or "").split()) == 5


async def test_chat_stream_assembles_and_finishes(client: AsyncOpenAI, server: TestServer) -> None:
    stream = await client.chat.completions.create(
        model="m", messages=_user("echo: one two three"), stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    contents = [c.choices[0].delta.content for c in chunks[1:-1]]
    assert contents == ["one", " two", " three"]
    assert chunks[-1].choices[0].delta.content is None
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert [c.choices[0].finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert all(c.usage is None for c in chunks)
    stats = _stats(server)
    assert (stats.streams_started, stats.streams_finished, stats.streams_cancelled) == (1, 1, 0)
    assert stats.active_streams == 0


async def test_completions_both_ways(client: AsyncOpenAI) -> None:
    result = await client.completions.create(model="m", prompt="echo: a b c", max_tokens=1)
    assert result.id.startswith("cmpl-")
    assert result.object == "text_completion"
    # An echo sets its own length, whatever max_tokens says.
    assert (result.choices[0].text, result.choices[0].finish_reason) == ("a b c", "stop")
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (4, 3)

    stream = await client.completions.create(model="m", prompt="echo: a b c", stream=True)
    chunks = [chunk async for chunk in stream]
    assert {c.object for c in chunks} == {"text_completion"}
    assert "".join(c.choices[0].text for c in chunks) == "a b c"
    assert [c.choices[0].finish_reason for c in chunks] == [None, None, None, "stop"]


async def test_completions_batched_prompts_and_n(client: AsyncOpenAI) -> None:
    result = await client.completions.create(model="m", prompt=["echo: x y", "echo: z"], n=2)
    assert [(c.index, c.text) for c in result.choices] == [
        (0, "x y"),
        (1, "x y"),
        (2, "z"),
        (3, "z"),
    ]
    assert result.usage is not None
    assert result.usage.completion_tokens == 6


async def test_n_choices_streamed_and_not(client: AsyncOpenAI) -> None:
    result = await client.chat.completions.create(model="m", messages=_user("hi"), n=2)
    assert [c.index for c in result.choices] == [0, 1]
    assert result.choices[0].message.content != result.choices[1].message.content
    assert result.usage is not None
    assert result.usage.completion_tokens == 2 * FAST.max_tokens

    stream = await client.chat.completions.create(
        model="m", messages=_user("echo: p q r"), n=2, stream=True
    )
    texts = {0: "", 1: ""}
    finishes: dict[int, str | None] = {}
    async for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason is not None:
                finishes[choice.index] = choice.finish_reason
    assert texts == {0: "p q r", 1: "p q r"}
    assert finishes == {0: "stop", 1: "stop"}


async def test_include_usage_sends_a_usage_chunk(client: AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="m",
        messages=_user("echo: a b"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 2
    assert chunks[-1].usage.total_tokens == 5  # "echo: a b" is 3 prompt words
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-2].choices[0].finish_reason == "stop"


@pytest.mark.parametrize(
    ("prompt", "expected", "tokens"),
    [
        ("echo: hello world", "hello world", 2),
        ("echo:no space", "no space", 2),
        ("echo:  two spaces", " two spaces", 2),
        ("echo: tabs\tand\nnewlines  ", "tabs\tand\nnewlines  ", 3),
        ("echo: héllo wörld 🙂 ", "héllo wörld 🙂 ", 3),
        ("echo:    ", "   ", 1),
        ("echo: ", "", 0),
    ],
)
async def test_echo_is_exact(client: AsyncOpenAI, prompt: str, expected: str, tokens: int) -> None:
    result = await client.chat.completions.create(model="m", messages=_user(prompt))
    assert result.choices[0].message.content == expected
    assert result.usage is not None
    assert result.usage.completion_tokens == tokens

    stream = await client.chat.completions.create(model="m", messages=_user(prompt), stream=True)
    deltas = [c.choices[0].delta.content async for c in stream if c.choices[0].delta.content]
    assert "".join(deltas) == expected
    assert len(deltas) == tokens

    completion = await client.completions.create(model="m", prompt=prompt)
    assert completion.choices[0].text == expected


async def test_embeddings_float(client: AsyncOpenAI) -> None:
    result = await client.embeddings.create(
        model="m", input=["alpha", "beta gamma"], encoding_format="float"
    )
    assert result.object == "list"
    assert [d.index for d in result.data] == [0, 1]
    alpha, beta = (d.embedding for d in result.data)
    assert len(alpha) == len(beta) == FAST.embedding_dim
    assert _norm(alpha) == pytest.approx(1.0, abs=1e-9)
    assert _norm(beta) == pytest.approx(1.0, abs=1e-9)
    assert alpha != beta
    again = await client.embeddings.create(model="m", input="alpha", encoding_format="float")
    assert again.data[0].embedding == alpha
    assert (result.usage.prompt_tokens, result.usage.total_tokens) == (3, 3)


async def test_embeddings_base64_is_little_endian_float32(client: AsyncOpenAI) -> None:
    raw = await client.embeddings.create(model="m", input="alpha", encoding_format="base64")
    encoded = raw.data[0].embedding
    assert isinstance(encoded, str)
    packed = base64.b64decode(encoded)
    assert len(packed) == 4 * FAST.embedding_dim
    vector = list(struct.unpack(f"<{FAST.embedding_dim}f", packed))
    assert _norm(vector) == pytest.approx(1.0, abs=1e-5)

    floats = await client.embeddings.create(model="m", input="alpha", encoding_format="float")
    assert vector == pytest.approx(floats.data[0].embedding, abs=1e-6)
    # Without encoding_format the client asks for base64 and decodes it itself.
    decoded = await client.embeddings.create(model="m", input="alpha")
    assert decoded.data[0].embedding == pytest.approx(floats.data[0].embedding, abs=1e-6)


async def test_embeddings_token_ids_and_dimensions(client: AsyncOpenAI) -> None:
    result = await client.embeddings.create(
        model="m", input=[[1, 2, 3], [4, 5]], dimensions=64, encoding_format="float"
    )
    assert [len(d.embedding) for d in result.data] == [64, 64]
    assert _norm(result.data[1].embedding) == pytest.approx(1.0, abs=1e-9)
    assert result.usage.prompt_tokens == 5


async def test_models_and_health(client: AsyncOpenAI, server: TestServer) -> None:
    page = await client.models.list()
    assert [m.id for m in page.data] == [FAST.model]
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.make_url("/health")) as response,
    ):
        assert response.status == 200


@pytest.mark.parametrize(
    ("path", "body", "param", "code"),
    [
        ("/v1/chat/completions", b"{not json", None, "invalid_json"),
        ("/v1/chat/completions", b"", None, "invalid_json"),
        ("/v1/completions", b"[1, 2]", None, "invalid_type"),
        ("/v1/chat/completions", b'{"model": "m"}', "messages", "missing_required_parameter"),
        ("/v1/completions", b'{"model": "m"}', "prompt", "missing_required_parameter"),
        ("/v1/embeddings", b'{"model": "m"}', "input", "missing_required_parameter"),
        ("/v1/chat/completions", b'{"messages": "hi"}', "messages", "invalid_value"),
        ("/v1/completions", b'{"prompt": "x", "n": 9}', "n", "invalid_value"),
        ("/v1/completions", b'{"prompt": "x", "max_tokens": 0}', "max_tokens", "invalid_value"),
        ("/v1/embeddings", b'{"input": "x", "encoding_format": "hex"}', "encoding_format",
         "invalid_value"),
        ("/v1/embeddings", b'{"input": "x", "dimensions": 0}', "dimensions", "invalid_value"),
    ],
)  # fmt: skip
async def test_bad_requests_get_openai_errors(
    server: TestServer, path: str, body: bytes, param: str | None, code: str
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.make_url(path), data=body) as response,
    ):
        assert response.status == 400
        assert response.content_type == "application/json"
        error = (await response.json())["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str)
    assert error["message"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)


async def test_openai_client_sees_bad_request(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="m", messages=[])
    assert caught.value.status_code == 400
    assert (caught.value.param, caught.value.code) == ("messages", "invalid_value")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/nope", 404),
        ("POST", "/v2/chat/completions", 404),
        ("GET", "/v1/embeddings", 405),
    ],
)
async def test_unknown_routes_get_openai_errors(
    server: TestServer, method: str, path: str, status: int
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, server.make_url(path)) as response,
    ):
        assert response.status == status
        error = (await response.json())["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] is None
    if status == 404:
        assert error["code"] == "unknown_url"
        assert path in error["message"]


async def test_stream_follows_the_token_schedule(aiohttp_server: AiohttpServer) -> None:
    settings = MockSettings(ttft_ms=100, tokens_per_s=100)
    server = await aiohttp_server(make_mock_app(settings))
    words = [f"w{k}" for k in range(11)]
    async with _openai(server.port) as client:
        await client.models.list()  # open the connection before timing anything
        start = time.perf_counter()
        stream = await client.chat.completions.create(
            model="m", messages=_user("echo: " + " ".join(words)), stream=True
        )
        arrivals: list[float] = []
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals.append(time.perf_counter() - start)
        end = time.perf_counter() - start

        assert len(arrivals) == 11
        assert arrivals[0] == pytest.approx(0.100, abs=0.040)
        assert end == pytest.approx(0.200, abs=0.040)
        for k, arrived in enumerate(arrivals):
            assert arrived == pytest.approx(0.100 + k / 100, abs=0.040)

        # A non-streamed answer takes as long as the whole stream would.
        start = time.perf_counter()
        await client.chat.completions.create(model="m", messages=_user("echo: " + " ".join(words)))
        assert time.perf_counter() - start == pytest.approx(0.200, abs=0.040)


async def test_headers_override_pacing_per_request(aiohttp_server: AiohttpServer) -> None:
    slow = MockSettings(ttft_ms=3000, tokens_per_s=2, max_tokens=4)
    server = await aiohttp_server(make_mock_app(slow))
    async with _openai(server.port) as client:
        await client.models.list()
        start = time.perf_counter()
        fast = {"x-mock-ttft-ms": "20", "x-mock-tokens-per-s": "1000"}
        await client.chat.completions.create(model="m", messages=_user("hi"), extra_headers=fast)
        assert time.perf_counter() - start < 0.5

        start = time.perf_counter()
        stream = await client.chat.completions.create(
            model="m",
            messages=_user("echo: a b c"),
            stream=True,
            extra_headers={"x-mock-ttft-ms": "250", "x-mock-tokens-per-s": "10000"},
        )
        async for _chunk in stream:
            pass
        assert time.perf_counter() - start == pytest.approx(0.250, abs=0.040)

        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model="m", messages=_user("hi"), extra_headers={"x-mock-tokens-per-s": "0"}
            )
        assert caught.value.code == "invalid_header"


async def _start(settings: MockSettings, handler_cancellation: bool) -> web.AppRunner:
    if handler_cancellation:
        return await serve_mock("127.0.0.1", 0, settings)
    runner = web.AppRunner(make_mock_app(settings), handler_cancellation=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


# True is serve_mock itself; False leaves only the failed write to notice the disconnect.
@pytest.mark.parametrize("handler_cancellation", [True, False])
async def test_disconnect_mid_stream_stops_generation(handler_cancellation: bool) -> None:
    long_stream = MockSettings(ttft_ms=5, tokens_per_s=50, max_tokens=1000)
    runner = await _start(long_stream, handler_cancellation)
    try:
        stats = runner.app[MOCK_STATS]
        port = runner.addresses[0][1]
        body = {"messages": [{"role": "user", "content": "go"}], "stream": True}
        async with aiohttp.ClientSession() as session:
            response = await session.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body)
            await _read_events(response, 3)
            assert (stats.active_streams, stats.streams_started) == (1, 1)
            response.close()
        took = await eventually(lambda: stats.active_streams == 0)
        assert took < 0.5
        assert (stats.streams_cancelled, stats.streams_finished) == (1, 0)
    finally:
        await runner.cleanup()


async def test_serve_mock_stops_a_stream_still_waiting_for_its_first_token() -> None:
    runner = await serve_mock("127.0.0.1", 0, MockSettings(ttft_ms=10_000))
    try:
        stats = runner.app[MOCK_STATS]
        port = runner.addresses[0][1]
        body = {"messages": [{"role": "user", "content": "go"}], "stream": True}
        async with aiohttp.ClientSession() as session:
            response = await session.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body)
            assert response.headers["Content-Type"].startswith("text/event-stream")
            assert stats.active_streams == 1
            response.close()
        await eventually(lambda: stats.active_streams == 0)
        assert stats.streams_cancelled == 1
    finally:
        await runner.cleanup()


async def test_openai_client_closing_a_stream_stops_generation(
    aiohttp_server: AiohttpServer,
) -> None:
    server = await aiohttp_server(make_mock_app(MockSettings(ttft_ms=5, max_tokens=1000)))
    stats = _stats(server)
    async with _openai(server.port) as client:
        stream = await client.chat.completions.create(model="m", messages=_user("go"), stream=True)
        received = 0
        async for _chunk in stream:
            received += 1
            if received == 3:
                break
        await stream.close()
        await eventually(lambda: stats.active_streams == 0)
    assert (stats.streams_started, stats.streams_cancelled, stats.streams_finished) == (1, 1, 0)


async def test_main_mock_runs_until_sigterm() -> None:
    code = (
        "from proxy.sim.model_server import MockSettings, main_mock; "
        "main_mock('127.0.0.1', 0, MockSettings(model='sub-model'))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, cwd=REPO_ROOT, env=env, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=20)).decode()
        url = line.split()[-1]
        assert url.startswith("http://127.0.0.1:")
        assert not url.endswith("/v1")
        async with _openai(int(url.rsplit(":", 1)[1])) as client:
            page = await client.models.list()
        assert [m.id for m in page.data] == ["sub-model"]
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="tokens_per_s"):
        MockSettings(tokens_per_s=0)
    with pytest.raises(ValueError, match="ttft_ms"):
        MockSettings(ttft_ms=-1)
    with pytest.raises(ValueError, match="max_tokens"):
        MockSettings(max_tokens=0)
