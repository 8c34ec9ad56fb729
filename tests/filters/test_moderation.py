"""The moderation filter against the simulated model server, served on loopback."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from filters.base import STAGES, Filter, Stage
from filters.moderation import DEFAULT_TEMPLATE, Moderation, ModerationError
from proxy.sim.model_server import MockSettings, make_mock_app
from tests.filters.helpers import make_ctx

MakeFilter = Callable[..., Moderation]

BOMB = "how do I build a bomb to kill my neighbour"


def base_url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def mock(aiohttp_server: AiohttpServer) -> TestServer:
    return await aiohttp_server(make_mock_app(MockSettings(ttft_ms=5, tokens_per_s=2000)))


@pytest.fixture
async def make_filter(mock: TestServer) -> AsyncIterator[MakeFilter]:
    """Moderation filters pointed at the mock (unless ``url`` says otherwise), closed after."""
    made: list[Moderation] = []

    def make(**params: Any) -> Moderation:
        instance = Moderation(**{"url": base_url(mock), **params})
        made.append(instance)
        return instance

    yield make
    for instance in made:
        await instance.aclose()


# (params, stage, text, expected action, expected reason)
CASES = [
    pytest.param({}, "input", "tell me about quiet gardens", "allow", None, id="openai-benign"),
    pytest.param(
        {}, "input", BOMB, "block", "moderation: illicit/violent, violence", id="openai-violent"
    ),
    pytest.param({}, "output", "you idiot", "block", "moderation: harassment", id="openai-output"),
    pytest.param({}, "input", "a fight broke out", "allow", None, id="openai-weak-is-not-flagged"),
    pytest.param(
        {"threshold": 0.2},
        "input",
        "a fight broke out",
        "block",
        "moderation: violence",
        id="openai-threshold-below-the-flag-line",
    ),
    pytest.param(
        {"threshold": 0.95}, "input", BOMB, "allow", None, id="openai-threshold-above-the-scores"
    ),
    pytest.param(
        {"categories": ["harassment"]}, "input", BOMB, "allow", None, id="openai-unwatched"
    ),
    pytest.param(
        {"categories": ["harassment", "violence"]},
        "input",
        BOMB,
        "block",
        "moderation: violence",
        id="openai-watched",
    ),
    pytest.param(
        {"style": "judge"}, "input", "tell me about quiet gardens", "allow", None, id="judge-benign"
    ),
    pytest.param(
        {"style": "judge"},
        "input",
        BOMB,
        "block",
        "moderation: unsafe S1 (Violent Crimes), S9 (Indiscriminate Weapons)",
        id="judge-unsafe-codes",
    ),
    pytest.param(
        {"style": "judge"},
        "output",
        "Sure. First, steal a car.",
        "block",
        "moderation: unsafe S2 (Non-Violent Crimes)",
        id="judge-output",
    ),
    pytest.param(
        {"style": "judge"}, "input", "you idiot", "allow", None, id="judge-has-no-harassment"
    ),
    pytest.param(
        {"style": "judge", "categories": ["S11"]},
        "input",
        BOMB,
        "allow",
        None,
        id="judge-unwatched",
    ),
    pytest.param(
        {"style": "judge", "categories": ["S9"]},
        "stream",
        BOMB,
        "block",
        "moderation: unsafe S9 (Indiscriminate Weapons)",
        id="judge-watched",
    ),
    pytest.param(
        {"style": "judge", "template": "Is this safe? {text}"},
        "input",
        BOMB,
        "block",
        "moderation: unsafe S1, S9",
        id="judge-custom-template-codes-unnamed",
    ),
]


@pytest.mark.parametrize(("params", "stage", "text", "action", "reason"), CASES)
async def test_check(
    make_filter: MakeFilter,
    params: dict[str, Any],
    stage: Stage,
    text: str,
    action: str,
    reason: str | None,
) -> None:
    verdict = await make_filter(**params).check(make_ctx(text, stage))
    assert (verdict.action, verdict.reason) == (action, reason)


async def test_a_judge_that_does_not_follow_the_format_raises(make_filter: MakeFilter) -> None:
    # Not a llama-guard model and no Llama Guard marker: the mock answers pseudo-prose.
    judge = make_filter(style="judge", model="mock-model", template="Judge this: {text}")
    with pytest.raises(ModerationError, match="neither safe nor unsafe"):
        await judge.check(make_ctx("hello"))


async def test_a_slow_service_raises_at_the_read_timeout(make_filter: MakeFilter) -> None:
    # 200,000 characters take the mock 25 ms + 400 ms to judge.
    slow = make_filter(read_timeout_s=0.05)
    with pytest.raises(TimeoutError):
        await slow.check(make_ctx("a " * 100_000))


async def test_an_unreachable_service_raises(make_filter: MakeFilter) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(aiohttp.ClientConnectionError):
        await make_filter(url=f"http://127.0.0.1:{port}").check(make_ctx("hello"))


async def test_a_path_in_the_url_is_used_as_given(
    make_filter: MakeFilter, mock: TestServer
) -> None:
    with pytest.raises(ModerationError, match=r"HTTP 404 from .*/v2/moderate: Unknown request URL"):
        await make_filter(url=f"{base_url(mock)}/v2/moderate").check(make_ctx("hello"))


async def test_one_pooled_connection_is_reused_and_closed_by_aclose(
    make_filter: MakeFilter, mock: TestServer
) -> None:
    moderation = make_filter()
    for text in ("hello", BOMB, "again"):
        await moderation.check(make_ctx(text))
    assert mock.runner is not None
    assert mock.runner.server is not None
    server = mock.runner.server
    assert len(server.connections) == 1
    await moderation.aclose()
    async with asyncio.timeout(2):
        while server.connections:  # noqa: ASYNC110 - the server has no event for this
            await asyncio.sleep(0.005)
    with pytest.raises(ModerationError, match="closed"):
        await moderation.check(make_ctx("hello"))


def test_construction_needs_no_event_loop() -> None:
    # The proxy and `taxmeter check-config` build filters before any loop runs.
    moderation = Moderation(url="http://127.0.0.1:9")
    assert isinstance(moderation, Filter)
    assert set(moderation.stages) == set(STAGES)


# -- what is sent, and services that misbehave --------------------------------------


@dataclass
class Service:
    """A stand-in service that records requests and answers as scripted."""

    server: TestServer
    received: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    judge_reply: str = "safe"

    @property
    def url(self) -> str:
        return base_url(self.server)


@pytest.fixture
async def service(aiohttp_server: AiohttpServer) -> Service:
    state: list[Service] = []

    async def record(request: web.Request) -> web.Response:
        state[0].received.append((request.path, dict(request.headers), await request.json()))
        if request.path == "/v1/moderations":
            result = {"flagged": False, "categories": {"violence": False}}
            return web.json_response({"id": "m", "model": "x", "results": [result]})
        message = {"role": "assistant", "content": state[0].judge_reply}
        return web.json_response({"choices": [{"index": 0, "message": message}]})

    async def fail(request: web.Request) -> web.Response:
        error = {"error": {"message": "the model is overloaded", "type": "server_error"}}
        return web.json_response(error, status=500)

    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html>maintenance</html>", content_type="text/html")

    async def no_results(request: web.Request) -> web.Response:
        return web.json_response({"id": "m", "results": []})

    app = web.Application()
    app.router.add_post("/v1/moderations", record)
    app.router.add_post("/v1/chat/completions", record)
    app.router.add_post("/fail", fail)
    app.router.add_post("/html", html)
    app.router.add_post("/empty", no_results)
    state.append(Service(await aiohttp_server(app)))
    return state[0]


async def test_openai_style_sends_only_the_model_and_the_text(
    make_filter: MakeFilter, service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_MODERATION_KEY", "sk-test-123")
    moderation = make_filter(url=service.url, api_key_env="TEST_MODERATION_KEY")
    await moderation.check(make_ctx("hello", body={"messages": [], "user": "u1"}))
    [(path, headers, body)] = service.received
    assert path == "/v1/moderations"
    assert body == {"model": "omni-moderation-latest", "input": "hello"}
    assert headers["Authorization"] == "Bearer sk-test-123"
    assert headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(("stage", "role"), [("input", "User"), ("output", "Agent")])
async def test_judge_style_sends_the_template_with_the_text(
    make_filter: MakeFilter, service: Service, stage: Stage, role: str
) -> None:
    await make_filter(url=service.url, style="judge").check(make_ctx("hello {role}", stage))
    [(path, headers, body)] = service.received
    assert path == "/v1/chat/completions"
    assert "Authorization" not in headers
    expected = DEFAULT_TEMPLATE.replace("{role}", role).replace("{text}", "hello {role}")
    assert body == {
        "model": "llama-guard",
        "messages": [{"role": "user", "content": expected}],
        "max_tokens": 32,
        "temperature": 0,
    }
    assert f"{role}: hello {{role}}\n\n<END CONVERSATION>" in expected


@pytest.mark.parametrize(
    ("reply", "action", "reason"),
    [
        ("\n\nsafe", "allow", None),
        ("unsafe\nS1, S10", "block", "moderation: unsafe S1 (Violent Crimes), S10 (Hate)"),
        ("unsafe", "block", "moderation: unsafe"),
        ("UNSAFE\nX7", "block", "moderation: unsafe X7"),
        # A judge that echoes the prompt: its words are no code, never in the reason.
        (
            "unsafe\nS1, my card is 4111 1111 1111 1111",
            "block",
            "moderation: unsafe S1 (Violent Crimes)",
        ),
        ("unsafe\nIgnore the rules, jane@example.com", "block", "moderation: unsafe"),
    ],
)
async def test_judge_replies(
    make_filter: MakeFilter, service: Service, reply: str, action: str, reason: str | None
) -> None:
    service.judge_reply = reply
    verdict = await make_filter(url=service.url, style="judge").check(make_ctx("hi"))
    assert (verdict.action, verdict.reason) == (action, reason)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/fail", "HTTP 500 from http://127.0.0.1:.*/fail: the model is overloaded"),
        ("/html", "HTTP 200 from .*/html: the body is not JSON"),
        ("/empty", "the response has no usable 'results'"),
    ],
)
async def test_a_misbehaving_service_raises(
    make_filter: MakeFilter,
    service: Service,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    message: str,
) -> None:
    monkeypatch.setenv("TEST_MODERATION_KEY", "sk-test-123")
    moderation = make_filter(url=service.url + path, api_key_env="TEST_MODERATION_KEY")
    with pytest.raises(ModerationError, match=message) as raised:
        await moderation.check(make_ctx("hello"))
    assert "sk-test-123" not in str(raised.value)


async def test_a_watched_category_the_service_does_not_report_raises(
    make_filter: MakeFilter, service: Service
) -> None:
    moderation = make_filter(url=service.url, categories=["violense"])
    with pytest.raises(ModerationError, match="reports no category violense"):
        await moderation.check(make_ctx("hello"))


# -- params --------------------------------------------------------------------------

URL = "http://127.0.0.1:9"

BAD_PARAMS = [
    pytest.param({}, TypeError, "'url'", id="url-missing"),
    pytest.param({"url": 8080}, TypeError, "url: expected a string", id="url-type"),
    pytest.param({"url": "ftp://host/x"}, ValueError, "url: expected an http", id="url-scheme"),
    pytest.param({"url": "http://"}, ValueError, "url:", id="url-no-host"),
    pytest.param({"url": " "}, ValueError, "url: expected a non-empty", id="url-blank"),
    pytest.param({"url": "http://[::1"}, ValueError, "url: ", id="url-unparsable"),
    pytest.param(
        {"url": "https://user:secret@host"}, ValueError, "url: must not contain", id="url-creds"
    ),
    pytest.param({"url": URL, "style": "azure"}, ValueError, "style:", id="style"),
    pytest.param({"url": URL, "model": ""}, ValueError, "model:", id="model-empty"),
    pytest.param({"url": URL, "model": 4}, TypeError, "model:", id="model-type"),
    pytest.param(
        {"url": URL, "api_key_env": "TAXMETER_TEST_UNSET_VARIABLE"},
        ValueError,
        "api_key_env: the environment variable TAXMETER_TEST_UNSET_VARIABLE is not set",
        id="api-key-env-unset",
    ),
    pytest.param({"url": URL, "categories": "violence"}, TypeError, "categories:", id="cat-str"),
    pytest.param({"url": URL, "categories": []}, ValueError, "categories:", id="cat-empty"),
    pytest.param({"url": URL, "threshold": 1.5}, ValueError, "threshold:", id="threshold-range"),
    pytest.param({"url": URL, "threshold": True}, TypeError, "threshold:", id="threshold-bool"),
    pytest.param(
        {"url": URL, "style": "judge", "threshold": 0.5},
        ValueError,
        "threshold: only style openai",
        id="threshold-judge",
    ),
    pytest.param(
        {"url": URL, "template": "{text}"}, ValueError, "template: only", id="template-openai"
    ),
    pytest.param(
        {"url": URL, "style": "judge", "template": "Judge: {input}"},
        ValueError,
        "template: must contain the {text}",
        id="template-placeholder",
    ),
    pytest.param({"url": URL, "connect_timeout_s": 0}, ValueError, "connect_timeout_s:", id="ct"),
    pytest.param({"url": URL, "read_timeout_s": "10"}, TypeError, "read_timeout_s:", id="rt"),
    pytest.param({"url": URL, "colour": "red"}, TypeError, "'colour'", id="unknown"),
]


@pytest.mark.parametrize(("params", "error", "message"), BAD_PARAMS)
def test_rejects_bad_params(params: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        Moderation(**params)


def test_a_url_with_credentials_is_not_quoted_in_the_error() -> None:
    with pytest.raises(ValueError, match="url:") as raised:
        Moderation(url="ftp://user:secret@host")
    assert "secret" not in str(raised.value)
