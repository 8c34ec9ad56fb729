"""POST /admin/check over real sockets: the live filters on a text or a request, sent nowhere."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.loopback import ProxyFactory, RunningProxy, ServerFactory, post_json

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DENY = {"name": "deny", "type": "denylist", "params": {"words": ["forbidden"]}}
PII = {"name": "pii", "type": "pii"}
EMAIL = "alice@example.com"
PLUGINS = "tests.judge.sample_filters"


def synthetic(name: str, **params: Any) -> dict[str, Any]:
    return {"name": name, "type": "synthetic", "stages": ["input"], "params": params,
            "timeout_ms": 5000}  # fmt: skip


class Counting:
    """An upstream that counts what reaches it."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.server: TestServer | None = None

    async def answer(self, request: web.Request) -> web.Response:
        self.paths.append(request.path)
        await request.read()
        return web.json_response({"upstream": "answered", "path": request.path}, status=404)

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")


@pytest.fixture
async def counting(aiohttp_server: ServerFactory) -> Counting:
    state = Counting()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", state.answer)
    state.server = await aiohttp_server(app)
    return state


async def admin_proxy(
    start_proxy: ProxyFactory, config: dict[str, Any], upstream: str | None = None
) -> RunningProxy:
    return await start_proxy(
        {**config, "admin": {"token_env": "ADMIN_TOKEN"}},
        upstream=upstream,
        environ={"ADMIN_TOKEN": TOKEN},
    )


async def check(proxy: RunningProxy, body: Any, headers: dict[str, str] = AUTH) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{proxy.admin_url}/admin/check", data=data, headers=headers) as r,
    ):
        return r.status, await r.json(content_type=None)


def by_name(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in answer["filters"]}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
     {"Authorization": f"Bearer {TOKEN}x"}],
)  # fmt: skip
async def test_401_without_the_token_and_nothing_revealed(
    start_proxy: ProxyFactory, headers: dict[str, str]
) -> None:
    proxy = await admin_proxy(start_proxy, {"filters": [DENY]})
    status, body = await check(proxy, {"text": "a forbidden word", "stage": "input"}, headers)
    assert status == 401
    assert body["error"]["code"] == "unauthorized"
    assert "deny" not in orjson.dumps(body).decode()


async def test_a_text_blocked_redacted_and_allowed(start_proxy: ProxyFactory) -> None:
    proxy = await admin_proxy(start_proxy, {"filters": [DENY, PII]})

    status, blocked = await check(proxy, {"text": "a forbidden word", "stage": "input"})
    assert status == 200
    assert blocked["variant"] == "default"
    assert blocked["verdict"] == {"action": "block", "blocked_by": "deny",
                                  "reason": 'denylist: matched "forbidden"'}  # fmt: skip
    assert blocked["text"] is None
    deny, pii = blocked["filters"]  # in chain order
    assert (deny["name"], deny["action"], deny["blocks"], deny["mode"]) == (
        "deny", "block", True, "enforce")  # fmt: skip
    assert (pii["name"], pii["action"], pii["latency_s"], pii["cpu_s"]) == (
        "pii", "not_run", None, None)  # fmt: skip

    status, redacted = await check(proxy, {"text": f"mail {EMAIL} now", "stage": "input"})
    assert status == 200
    assert redacted["verdict"] == {"action": "redact", "blocked_by": None, "reason": None}
    assert redacted["text"] == "mail [EMAIL] now"
    assert by_name(redacted)["deny"]["action"] == "allow"
    assert by_name(redacted)["pii"]["action"] == "redact"
    assert by_name(redacted)["pii"]["reason"] == "pii: redacted email"

    status, allowed = await check(proxy, {"text": "hello there", "stage": "output"})
    assert status == 200
    assert allowed["stage"] == "output"
    assert allowed["verdict"]["action"] == "allow"
    assert allowed["text"] == "hello there"
    # deny and pii judge answers too (no stages given: every stage they support)
    assert [f["action"] for f in allowed["filters"]] == ["allow", "allow"]

    # every_filter: pii is called after deny's block, and says it would redact.
    status, every = await check(
        proxy, {"text": f"forbidden {EMAIL}", "stage": "input", "every_filter": True}
    )
    assert status == 200
    assert every["verdict"]["blocked_by"] == "deny"
    assert by_name(every)["pii"]["action"] == "redact"
    assert by_name(every)["pii"]["blocks"] is False


async def test_latency_and_cpu_of_each_filter(start_proxy: ProxyFactory) -> None:
    proxy = await admin_proxy(start_proxy, {"filters": [
        synthetic("sleepy", wall_ms=20),
        synthetic("spinny", cpu_ms=5),
        synthetic("offloaded", cpu_ms=5, cpu_bound=True),
    ]})  # fmt: skip
    status, answer = await check(proxy, {"text": "hello", "stage": "input"})
    assert status == 200
    got = by_name(answer)
    assert got["sleepy"]["latency_s"] >= 0.020
    assert got["sleepy"]["cpu_s"] < 0.0015  # it waits, it does not work
    for name in ("spinny", "offloaded"):
        # All of its 5 ms counted; on a loaded machine a little more (the clock
        # also charges the thread's share of preemption), but not sleepy's 20 ms.
        assert 0.0049 <= got[name]["cpu_s"] < 0.0095
        assert got[name]["latency_s"] >= got[name]["cpu_s"] * 0.95


async def test_variants_modes_and_placements(start_proxy: ProxyFactory) -> None:
    proxy = await admin_proxy(start_proxy, {
        "filters": [DENY, {**PII, "stages": ["input"], "parallel": True}],
        "variants": {
            "main": {"weight": 90},
            "no_deny": {"weight": 10, "disable": ["deny"]},
            "trial": {"weight": 0, "modes": {"deny": "observe"}},
        },
    })  # fmt: skip
    text = f"forbidden {EMAIL}"
    status, main = await check(proxy, {"text": text, "stage": "input"})  # the heaviest
    assert status == 200
    assert main["variant"] == "main"
    assert [(f["name"], f["placement"], f["action"]) for f in main["filters"]] == [
        ("deny", "inline", "block"), ("pii", "parallel", "not_run")]  # fmt: skip

    status, no_deny = await check(proxy, {"text": text, "stage": "input", "variant": "no_deny"})
    assert status == 200
    assert [f["name"] for f in no_deny["filters"]] == ["pii"]  # disabled: not in its chain
    # A parallel filter's redaction is never sent (the prompt went upstream already).
    assert no_deny["verdict"]["action"] == "allow"
    assert no_deny["text"] == text
    assert by_name(no_deny)["pii"]["action"] == "redact"

    status, trial = await check(proxy, {"text": text, "stage": "input", "variant": "trial"})
    assert status == 200
    deny = by_name(trial)["deny"]
    # An observer says what it would do, after the response, and changes nothing.
    assert (deny["mode"], deny["placement"], deny["action"], deny["blocks"]) == (
        "observe", "after_response", "block", False)  # fmt: skip
    assert deny["reason"] == 'denylist: matched "forbidden"'
    assert trial["verdict"]["action"] == "allow"


async def test_parallel_filters_and_observers_read_the_prompt_as_forwarded(
    start_proxy: ProxyFactory,
) -> None:
    alice = {"type": "denylist", "stages": ["input"], "params": {"words": ["alice"]}}
    proxy = await admin_proxy(start_proxy, {"filters": [
        {**PII, "stages": ["input"]},
        {**alice, "name": "beside", "parallel": True},
        {**alice, "name": "after", "mode": "observe"},
    ]})  # fmt: skip
    status, answer = await check(proxy, {"text": f"mail {EMAIL}", "stage": "input"})
    assert status == 200
    # pii redacted the address before the prompt went on: neither sees "alice".
    assert [(f["name"], f["action"]) for f in answer["filters"]] == [
        ("pii", "redact"), ("beside", "allow"), ("after", "allow")]  # fmt: skip
    status, answer = await check(proxy, {"text": "alice says hi", "stage": "input"})
    assert [(f["name"], f["action"]) for f in answer["filters"]] == [
        ("pii", "allow"), ("beside", "block"), ("after", "not_run")]  # fmt: skip
    assert answer["verdict"]["blocked_by"] == "beside"


async def test_failing_filters_follow_on_error(start_proxy: ProxyFactory) -> None:
    hanging = {"type": f"{PLUGINS}:Hanging", "timeout_ms": 50}
    proxy = await admin_proxy(start_proxy, {"filters": [
        {**hanging, "name": "open"},
        {"name": "raising", "type": f"{PLUGINS}:Raising", "stages": ["input"]},
        {**hanging, "name": "closed", "on_error": "closed"},
    ]})  # fmt: skip
    status, answer = await check(proxy, {"text": "hello", "stage": "input"})
    assert status == 200
    got = by_name(answer)
    assert (got["open"]["action"], got["open"]["blocks"]) == ("timeout", False)
    assert got["open"]["reason"] == "filter timeout (on_error: open)"
    assert got["open"]["latency_s"] >= 0.045  # uvloop timers may fire a tick early
    assert (got["raising"]["action"], got["raising"]["blocks"]) == ("error", False)
    assert (got["closed"]["action"], got["closed"]["blocks"]) == ("timeout", True)
    assert answer["verdict"] == {"action": "block", "blocked_by": "closed",
                                 "reason": "closed: filter timeout (on_error: closed)"}  # fmt: skip


CHAT = {"model": "m", "messages": [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": [{"type": "text", "text": f"write to {EMAIL}"}]},
]}  # fmt: skip
MESSAGES = {"model": "claude", "max_tokens": 16, "system": f"the user is {EMAIL}",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
            }  # fmt: skip
RESPONSES = {"model": "m", "input": [{"role": "user", "content": f"mail {EMAIL}"}]}


@pytest.mark.parametrize(
    ("route", "request_body", "redacted", "forbidden"),
    [
        ("chat_completions", CHAT, {**CHAT, "messages": [
            CHAT["messages"][0],
            {"role": "user", "content": [{"type": "text", "text": "write to [EMAIL]"}]},
        ]}, {**CHAT, "messages": [{"role": "system", "content": "a forbidden word"}]}),
        ("messages", MESSAGES, {**MESSAGES, "system": "the user is [EMAIL]"},
         {**MESSAGES, "system": [{"type": "text", "text": "forbidden"}]}),
        ("responses", RESPONSES, {**RESPONSES, "input": [
            {"role": "user", "content": "mail [EMAIL]"}]},
         {**RESPONSES, "instructions": "forbidden"}),
    ],
)  # fmt: skip
async def test_a_request_is_read_by_its_surface(
    start_proxy: ProxyFactory,
    counting: Counting,
    route: str,
    request_body: dict[str, Any],
    redacted: dict[str, Any],
    forbidden: dict[str, Any],
) -> None:
    proxy = await admin_proxy(start_proxy, {"filters": [DENY, PII]}, counting.url)
    ask = {"request": request_body, "route": route, "stage": "input"}
    status, answer = await check(proxy, ask)
    assert status == 200
    assert answer["route"] == route
    assert answer["verdict"]["action"] == "redact"
    assert answer["request"] == redacted  # written back where each text came from
    assert answer["uninspected"] == []

    status, answer = await check(proxy, {**ask, "request": forbidden})
    assert status == 200
    assert answer["verdict"]["blocked_by"] == "deny"
    assert answer["request"] is None
    assert counting.paths == []  # nothing reached the model


async def test_uninspected_parts_as_the_proxy_treats_them(start_proxy: ProxyFactory) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    body = {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"}, image]}]}  # fmt: skip
    ask = {"request": body, "route": "chat_completions", "stage": "input"}
    proxy = await admin_proxy(start_proxy, {"filters": [DENY]})
    status, answer = await check(proxy, ask)
    assert (status, answer["verdict"]["action"], answer["uninspected"]) == (200, "allow", ["image"])
    proxy = await admin_proxy(start_proxy, {"filters": [DENY], "uninspected": "block"})
    status, answer = await check(proxy, ask)
    assert status == 200
    assert answer["verdict"]["action"] == "block"
    assert answer["verdict"]["blocked_by"] is None
    assert "uninspected: block" in answer["verdict"]["reason"]
    assert by_name(answer)["deny"]["action"] == "not_run"  # refused before any filter


async def test_a_check_is_not_traffic(start_proxy: ProxyFactory, counting: Counting) -> None:
    proxy = await admin_proxy(start_proxy, {"filters": [DENY, PII]}, counting.url)
    for text in ("a forbidden word", f"mail {EMAIL}", "hello"):
        status, _ = await check(proxy, {"text": text, "stage": "input"})
        assert status == 200
    status, _ = await check(proxy, {"request": CHAT, "route": "chat_completions",
                                    "stage": "input"})  # fmt: skip
    assert status == 200

    def counted() -> list[float]:
        return [
            proxy.value("taxmeter_filter_duration_seconds_count", filter="pii", stage="input",
                        variant="default"),
            proxy.value("taxmeter_filter_cpu_seconds_count", filter="pii", stage="input",
                        variant="default"),
            proxy.value("taxmeter_filter_decisions_total", filter="pii", stage="input",
                        mode="enforce", action="redact"),
            proxy.value("taxmeter_requests_total", route="chat_completions", variant="default",
                        outcome="blocked"),
        ]  # fmt: skip

    async def stats() -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{proxy.metrics_url}/stats") as r,
        ):
            document: dict[str, Any] = await r.json()
            return document

    assert counted() == [0, 0, 0, 0]
    assert counting.paths == []
    assert (await stats())["filters"] == {}
    # The same prompt as a request is counted: the figures above could have moved.
    status, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", {**CHAT, "messages": [
        {"role": "user", "content": f"forbidden {EMAIL}"}]})  # fmt: skip
    assert status == 400
    assert counted()[0] == 0  # pii was not called: deny blocked first
    assert counted()[3] == 1
    assert "deny" in (await stats())["filters"]


@pytest.mark.parametrize("unjudged", ["pass", "block"])
async def test_the_proxy_listener_does_not_serve_the_check(
    start_proxy: ProxyFactory, counting: Counting, unjudged: str
) -> None:
    proxy = await admin_proxy(
        start_proxy, {"filters": [DENY, PII], "unjudged_routes": unjudged}, counting.url
    )
    status, _, body = await post_json(
        f"{proxy.url}/admin/check", {"text": "a forbidden word", "stage": "input"}, AUTH
    )
    # Any unknown route: forwarded to the model server as it is, or refused; never judged.
    if unjudged == "pass":
        assert counting.paths == ["/admin/check"]
        assert (status, orjson.loads(body)["upstream"]) == (404, "answered")
    else:
        assert counting.paths == []
        assert status == 403
    assert b"denylist" not in body
    assert b"verdict" not in body


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (["a list"], 400, "invalid_body"),
        ({"stage": "input"}, 400, "invalid_body"),
        ({"text": "t", "request": {}, "stage": "input"}, 400, "invalid_body"),
        ({"text": "t", "stage": "input", "colour": "red"}, 400, "invalid_body"),
        ({"text": 3, "stage": "input"}, 400, "invalid_body"),
        ({"text": "t", "stage": "input", "every_filter": "yes"}, 400, "invalid_body"),
        ({"text": "t"}, 400, "invalid_stage"),
        ({"text": "t", "stage": "stream"}, 400, "invalid_stage"),
        ({"text": "t", "stage": "INPUT"}, 400, "invalid_stage"),
        ({"text": "t", "stage": "input", "variant": "ghost"}, 400, "unknown_variant"),
        ({"text": "t", "stage": "input", "route": "images"}, 400, "invalid_route"),
        ({"request": CHAT, "stage": "input"}, 400, "invalid_route"),
        ({"request": CHAT, "route": "other", "stage": "input"}, 400, "invalid_route"),
        ({"request": CHAT, "route": "chat_completions", "stage": "output"}, 400, "invalid_stage"),
        ({"request": {"model": "m"}, "route": "chat_completions", "stage": "input"}, 400,
         "invalid_body"),
        ({"request": CHAT, "route": "messages", "stage": "input"}, 200, None),
        ({"request": {"input": 5}, "route": "responses", "stage": "input"}, 400, "invalid_body"),
        ({"text": "x" * 2000, "stage": "input"}, 413, "body_too_large"),
    ],
)  # fmt: skip
async def test_bad_checks_get_clear_errors(
    start_proxy: ProxyFactory, body: Any, status: int, code: str | None
) -> None:
    proxy = await admin_proxy(start_proxy, {"filters": [DENY], "max_body_bytes": 1024})
    got, answer = await check(proxy, body)
    assert got == status, answer
    if code is not None:
        assert answer["error"]["code"] == code
        assert answer["error"]["type"] == "invalid_request_error"
        assert "Traceback" not in answer["error"]["message"]


async def test_an_oversized_body_without_a_length_is_refused(start_proxy: ProxyFactory) -> None:
    proxy = await admin_proxy(start_proxy, {"filters": [DENY], "max_body_bytes": 1024})

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"stage": "input", "text": "'
        for _ in range(20):
            yield b"x" * 100
        yield b'"}'

    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{proxy.admin_url}/admin/check", data=chunks(), headers=AUTH) as r,
    ):
        assert r.status == 413
        assert (await r.json())["error"]["code"] == "body_too_large"


async def test_checks_beyond_a_few_at_once_wait_their_turn_with_429(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await admin_proxy(start_proxy, {"filters": [synthetic("slow", wall_ms=1500)]})
    ask = {"text": "hello", "stage": "input"}
    running = [asyncio.ensure_future(check(proxy, ask)) for _ in range(4)]
    await asyncio.sleep(0.5)  # the four are inside the slow filter now
    status, answer = await check(proxy, ask)
    assert (status, answer["error"]["code"]) == (429, "too_many_checks")
    assert [s for s, _ in await asyncio.gather(*running)] == [200] * 4
    status, _ = await check(proxy, ask)
    assert status == 200
