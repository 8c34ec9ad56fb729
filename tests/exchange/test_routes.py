"""Routes over real sockets: every alias is judged, every other spelling refused unforwarded.

Request targets are written as raw HTTP/1.1 bytes: aiohttp's and yarl's
clients normalise URLs, so they could not send the tricks. Before the
canonical matcher, every alias and every trick below carried a denylisted
prompt to the model unjudged.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from aiohttp import web

from proxy.surfaces import surface_for
from tests.loopback import ProxyFactory, ServerFactory

BLOCKED = "open sesame"
EMAIL = "jane.doe@example.com"
FILTERS: dict[str, Any] = {
    "filters": [
        {"name": "denylist", "type": "denylist", "params": {"words": [BLOCKED]}},
        {"name": "pii", "type": "pii", "stages": ["input", "output"]},
    ]
}
PROMPTS: dict[str, dict[str, Any]] = {
    "chat_completions": {"model": "m", "messages": [{"role": "user", "content": BLOCKED}]},
    "completions": {"model": "m", "prompt": BLOCKED},
    "embeddings": {"model": "m", "input": BLOCKED},
    "responses": {"model": "m", "input": BLOCKED},
    "messages": {
        "model": "m",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": BLOCKED}],
    },
}
CHAT_ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": f"write to {EMAIL}"},
            "finish_reason": "stop",
        }
    ],
}

STORED_RESPONSE = {
    "id": "resp_1",
    "object": "response",
    "created_at": 1,
    "model": "m",
    "status": "completed",
    "output": [
        {
            "type": "message",
            "id": "msg_1",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": f"write to {EMAIL}", "annotations": []}],
        }
    ],
}


@dataclass
class Recorder:
    """An upstream that answers ``answer`` and records every request it gets."""

    url: str = ""
    answer: Any = field(default_factory=lambda: CHAT_ANSWER)
    seen: list[tuple[str, str, bytes]] = field(default_factory=list)


@pytest.fixture
async def recorder(aiohttp_server: ServerFactory) -> Recorder:
    state = Recorder()

    async def record(request: web.Request) -> web.Response:
        state.seen.append((request.method, request.raw_path, await request.read()))
        return web.json_response(state.answer)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    server = await aiohttp_server(app)
    state.url = str(server.make_url("")).rstrip("/")
    return state


async def raw_request(
    url: str, method: str, target: str, body: Any = None, extra: str = ""
) -> tuple[int, dict[str, str], bytes]:
    """One request with its target exactly as given; (status, headers by lowercase name, body).

    ``extra``: more header lines, each ending in CRLF."""
    host, port = url.removeprefix("http://").split(":")
    data = b"" if body is None else orjson.dumps(body)
    head = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head.encode() + b"\r\n" + data)
    answer = await reader.read()
    writer.close()
    top, _, payload = answer.partition(b"\r\n\r\n")
    status_line, *lines = top.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, payload


async def raw_exchange(
    url: str, method: str, target: str, body: Any = None
) -> tuple[int, dict[str, Any]]:
    """One request with its target exactly as given; (status, JSON answer or {})."""
    status, _, payload = await raw_request(url, method, target, body)
    return status, orjson.loads(payload) if payload else {}


def needs_surface(label: str) -> None:
    if surface_for(label) is None:
        pytest.skip(f"no {label} surface in this build")


ALIASES = [
    ("chat_completions", "/v1/chat/completions"),
    ("chat_completions", "/chat/completions"),
    ("chat_completions", "/v1/chat/completions/"),
    ("chat_completions", "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"),
    ("chat_completions", "/openai/v1/chat/completions"),
    ("chat_completions", "/engines/gpt-4o/chat/completions"),
    ("chat_completions", "/v1/engines/gpt-4o/chat/completions"),
    ("chat_completions", "/openai/deployments/org/model/chat/completions"),
    ("chat_completions", "/some/gateway/v1/chat/completions"),
    ("chat_completions", "http://elsewhere.example/v1/chat/completions"),
    ("completions", "/v1/completions"),
    ("completions", "/completions"),
    ("completions", "/openai/deployments/davinci/completions"),
    ("completions", "/openai/deployments/chat/completions"),  # a deployment named "chat"
    ("completions", "/engines/davinci/completions"),
    ("completions", "/v1/engines/davinci/completions"),
    ("completions", "/v1/fim/completions"),
    ("embeddings", "/v1/embeddings"),
    ("embeddings", "/embeddings"),
    ("embeddings", "/openai/deployments/ada/embeddings"),
    ("embeddings", "/openai/v1/embeddings"),
    ("responses", "/v1/responses"),
    ("responses", "/responses"),
    ("responses", "/openai/v1/responses"),
    ("responses", "/openai/responses?api-version=preview"),
    ("responses", "/v1/responses/input_tokens"),
    ("responses", "/v1/responses/compact"),
    ("messages", "/v1/messages"),
    ("messages", "/anthropic/v1/messages"),
    ("messages", "/v1/messages/count_tokens"),
]


@pytest.mark.parametrize(("label", "target"), ALIASES)
async def test_every_alias_is_judged(
    start_proxy: ProxyFactory, recorder: Recorder, label: str, target: str
) -> None:
    needs_surface(label)
    proxy = await start_proxy(FILTERS, upstream=recorder.url)
    status, _ = await raw_exchange(proxy.url, "POST", target, PROMPTS[label])
    assert status == 400
    assert recorder.seen == []
    assert proxy.value("taxmeter_requests_total", route=label, variant="default", outcome="blocked")


TRICKS = [
    "//v1/chat/completions",
    "/v1//chat/completions",
    "/v1/chat/completions//",
    "/v1/./chat/completions",
    "/v1/../v1/chat/completions",
    "/v1/%2e/chat/completions",
    "/v1/%2E%2E/v1/chat/completions",
    "/V1/chat/completions",
    "/v1/Chat/Completions",
    "/v1/chat/completions;x",
    "/v1;jsessionid=1/chat/completions",
    "/v1/chat/%63ompletions",
    "/v1/chat/compl%65tions",
    "/v1/chat%2Fcompletions",
    "/v1/chat%2fcompletions",
    "/v1%5Cchat%5Ccompletions",
    "/v1\\chat\\completions",
    "/v1/chat/completions#x",
    "http://elsewhere.example//v1/chat/completions",
    "http://elsewhere.example/v1/./chat/completions",
    "/v1/models/../chat/completions",
    "/anything/%7Euser",  # any path, not only a judged one
    "/anything//else",
]


@pytest.mark.parametrize("target", TRICKS)
async def test_every_path_trick_is_refused_and_never_forwarded(
    start_proxy: ProxyFactory, recorder: Recorder, target: str
) -> None:
    proxy = await start_proxy(FILTERS, upstream=recorder.url)
    status, answer = await raw_exchange(proxy.url, "POST", target, PROMPTS["chat_completions"])
    assert status == 400
    assert answer["error"]["code"] == "invalid_path"
    assert answer["error"]["type"] == "invalid_request_error"
    assert recorder.seen == []


async def test_a_refused_path_is_answered_in_the_shape_of_its_api(
    start_proxy: ProxyFactory, recorder: Recorder
) -> None:
    needs_surface("messages")
    proxy = await start_proxy(FILTERS, upstream=recorder.url)
    status, answer = await raw_exchange(proxy.url, "POST", "/v1//messages", PROMPTS["messages"])
    assert status == 400
    assert answer["type"] == "error"  # Anthropic's shape, so its SDK raises its own error
    assert answer["error"]["type"] == "invalid_request_error"
    assert answer["error"]["message"].startswith("invalid_path: ")
    assert recorder.seen == []


async def test_a_refused_path_counts_on_the_route_it_would_have_been(
    start_proxy: ProxyFactory, recorder: Recorder
) -> None:
    proxy = await start_proxy(FILTERS, upstream=recorder.url)
    status, answer = await raw_exchange(
        proxy.url, "POST", "//v1/Chat/completions;x", PROMPTS["chat_completions"]
    )
    assert status == 400
    assert "/v1/chat/completions" in answer["error"]["message"]  # the spelling to use
    counted = {"variant": "default", "outcome": "client_error"}
    assert proxy.value("taxmeter_requests_total", route="chat_completions", **counted) == 1
    await raw_exchange(proxy.url, "GET", "/x//y")
    assert proxy.value("taxmeter_requests_total", route="other", **counted) == 1
    assert recorder.seen == []
    clean = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    status, _ = await raw_exchange(proxy.url, "POST", "/v1/chat/completions", clean)
    assert status == 200  # and the proxy serves on


async def test_the_canonical_target_goes_upstream_as_sent(
    start_proxy: ProxyFactory, recorder: Recorder
) -> None:
    proxy = await start_proxy(FILTERS, upstream=recorder.url)
    clean = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    for target, sent in (
        ("/openai/deployments/d/chat/completions?api-version=1&x=%2F", None),
        ("http://elsewhere.example/v1/chat/completions?a=1", "/v1/chat/completions?a=1"),
        ("/v1/files/a%20b", None),
    ):
        status, _ = await raw_exchange(proxy.url, "POST", target, clean)
        assert status == 200
        assert recorder.seen[-1][1] == (sent or target)


async def test_a_stored_answer_is_judged_as_output(
    start_proxy: ProxyFactory, recorder: Recorder
) -> None:
    proxy = await start_proxy(FILTERS, upstream=recorder.url)
    async with openai.AsyncOpenAI(
        base_url=f"{proxy.url}/v1", api_key="none", max_retries=0
    ) as client:
        stored = await client.chat.completions.retrieve("chatcmpl-1")
    assert stored.choices[0].message.content == "write to [EMAIL]"
    ((method, path, body),) = recorder.seen
    assert (method, path, body) == ("GET", "/v1/chat/completions/chatcmpl-1", b"")
    counted = {"variant": "default", "outcome": "ok"}
    assert proxy.value("taxmeter_requests_total", route="chat_completions", **counted) == 1


async def test_a_stored_answer_is_judged_whatever_call_hands_it_back(
    start_proxy: ProxyFactory, recorder: Recorder
) -> None:
    # OpenAI's update of a stored completion (POST, a metadata body) answers the whole
    # stored completion; a cancelled response answers the response. Both once went unjudged.
    proxy = await start_proxy(FILTERS, upstream=recorder.url)
    expected = [("POST", "/v1/chat/completions/chatcmpl-1")]
    async with openai.AsyncOpenAI(
        base_url=f"{proxy.url}/v1", api_key="none", max_retries=0
    ) as client:
        updated = await client.chat.completions.update("chatcmpl-1", metadata={"k": "v"})
        assert updated.choices[0].message.content == "write to [EMAIL]"
        if surface_for("responses") is not None:
            recorder.answer = STORED_RESPONSE
            cancelled = await client.responses.cancel("resp_1")
            assert EMAIL not in cancelled.model_dump_json()
            expected.append(("POST", "/v1/responses/resp_1/cancel"))
    assert [(m, p) for m, p, _ in recorder.seen] == expected


async def test_a_stored_response_is_judged_as_output(
    start_proxy: ProxyFactory, recorder: Recorder
) -> None:
    needs_surface("responses")
    recorder.answer = STORED_RESPONSE
    proxy = await start_proxy(FILTERS, upstream=recorder.url)
    status, answer = await raw_exchange(proxy.url, "GET", "/v1/responses/resp_1")
    assert status == 200
    assert EMAIL not in orjson.dumps(answer).decode()


async def test_a_token_count_judges_the_prompt_and_passes_the_count(
    start_proxy: ProxyFactory, recorder: Recorder
) -> None:
    needs_surface("messages")
    recorder.answer = {"input_tokens": 12}
    proxy = await start_proxy(FILTERS, upstream=recorder.url)
    clean = {"model": "m", "messages": [{"role": "user", "content": f"mail {EMAIL}"}]}
    status, answer = await raw_exchange(proxy.url, "POST", "/v1/messages/count_tokens", clean)
    assert (status, answer) == (200, {"input_tokens": 12})
    ((_, _, sent),) = recorder.seen
    assert EMAIL.encode() not in sent  # counted as the model would read it: redacted


async def test_unjudged_routes_pass_by_default_counted_as_other(
    start_proxy: ProxyFactory, recorder: Recorder
) -> None:
    proxy = await start_proxy(FILTERS, upstream=recorder.url)
    status, _ = await raw_exchange(proxy.url, "POST", "/v1/vector_stores", {"name": BLOCKED})
    assert status == 200
    status, _ = await raw_exchange(proxy.url, "DELETE", "/v1/chat/completions/c1")
    assert status == 200
    assert len(recorder.seen) == 2
    counted = {"variant": "default", "outcome": "ok"}
    assert proxy.value("taxmeter_requests_total", route="other", **counted) == 2


async def test_unjudged_routes_block_refuses_all_but_text_free_reads(
    start_proxy: ProxyFactory, recorder: Recorder
) -> None:
    proxy = await start_proxy({**FILTERS, "unjudged_routes": "block"}, upstream=recorder.url)
    refused = [
        ("POST", "/v1/threads/t1/messages", {"role": "user", "content": "hi"}),
        ("GET", "/v1/chat/completions/c1/messages", None),
        ("DELETE", "/v1/chat/completions/c1", None),
        ("POST", "/v1/models", {}),
        ("GET", "/v1/models/org/name", None),
        ("POST", "/api/generate", {"prompt": "hi"}),
    ]
    for method, target, body in refused:
        status, answer = await raw_exchange(proxy.url, method, target, body)
        assert status == 403, target
        assert answer["error"]["code"] == "unjudged_route"
    assert recorder.seen == []
    counted = {"variant": "default", "outcome": "blocked"}
    assert proxy.value("taxmeter_requests_total", route="other", **counted) == len(refused)
    reads = ["/v1/models", "/models", "/v1/models/m1", "/v1/models/", "/health", "/healthz",
             "/ready", "/version", "/metrics?name=x"]  # fmt: skip
    for target in reads:
        for method in ("GET", "HEAD"):
            status, _ = await raw_exchange(proxy.url, method, target)
            assert status == 200, (method, target)
    assert len(recorder.seen) == 2 * len(reads)
    # Judged routes are served as ever.
    clean = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    status, _ = await raw_exchange(proxy.url, "POST", "/v1/chat/completions", clean)
    assert status == 200
    status, _ = await raw_exchange(proxy.url, "GET", "/v1/chat/completions/c1")
    assert status == 200


async def test_configured_routes_are_judged(start_proxy: ProxyFactory, recorder: Recorder) -> None:
    routes = {"/api/generate/chat": "chat_completions", "/llm/{model}/complete": "completions"}
    proxy = await start_proxy({**FILTERS, "routes": routes}, upstream=recorder.url)
    status, _ = await raw_exchange(
        proxy.url, "POST", "/api/generate/chat", PROMPTS["chat_completions"]
    )
    assert status == 400
    status, _ = await raw_exchange(proxy.url, "POST", "/llm/m1/complete", PROMPTS["completions"])
    assert status == 400
    status, answer = await raw_exchange(
        proxy.url, "POST", "/api/Generate/chat", PROMPTS["chat_completions"]
    )
    assert (status, answer["error"]["code"]) == (400, "invalid_path")
    assert recorder.seen == []
    blocked = {"variant": "default", "outcome": "blocked"}
    assert proxy.value("taxmeter_requests_total", route="completions", **blocked) == 1


@pytest.fixture
async def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "taxmeter.yaml"
    path.write_text(
        "unjudged_routes: block\n"
        "routes:\n  /api/generate/chat: chat_completions\n"
        "filters:\n  - {name: denylist, type: denylist, params: {words: [x]}}\n"
    )
    return path


async def serve_lines(*args: str) -> AsyncIterator[str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "serve", "--listen", "127.0.0.1:0",
        "--metrics-listen", "127.0.0.1:0", "--upstream", "http://127.0.0.1:9", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert process.stdout is not None
    try:
        while True:
            line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
            assert line, "serve exited before it was listening"
            yield line.rstrip("\n")
            if line.startswith("taxmeter: filters"):
                return
    finally:
        process.kill()
        await process.wait()


async def test_serve_prints_the_judged_routes(config_file: Path) -> None:
    lines = [line async for line in serve_lines("--config", str(config_file))]
    judged = {
        line.split()[2].rstrip(":"): line.partition(": ")[2].partition(": ")[2]
        for line in lines
        if line.startswith("taxmeter: judged")
    }
    assert judged["chat_completions"] == (
        "/api/generate/chat, */chat/completions, GET/POST */chat/completions/{completion_id}"
    )
    assert judged["completions"] == "*/completions"
    assert judged["embeddings"] == "*/embeddings"
    assert set(judged) == {label for label in PROMPTS if surface_for(label) is not None}
    (policy,) = [line for line in lines if line.startswith("taxmeter: unjudged")]
    assert policy.startswith("taxmeter: unjudged block (403 unjudged_route; GET and HEAD pass:")
    assert "/v1/models/{model}" in policy
    default = [line async for line in serve_lines()]
    assert (
        'taxmeter: unjudged pass (forwarded unjudged, counted as route="other"; known model'
        " routes no adapter judges get 403 unjudged_route)"
    ) in default
