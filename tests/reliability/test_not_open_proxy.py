"""Not a way in: requests reach only the configured upstream, and no secret is logged."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.config.schema import Config, parse_config
from tests.loopback import ProxyFactory, ServerFactory, echoed_headers, post_json

SECRET_TOKEN = "sk-very-secret-token-1234"
SECRET_PROMPT = "my mother's maiden name is Zanzibar-Quux"


async def counting_server(aiohttp_server: ServerFactory) -> tuple[TestServer, list[str]]:
    """A server that must never be reached: it records every path asked of it."""
    reached: list[str] = []

    async def record(request: web.Request) -> web.Response:
        reached.append(request.path)
        return web.Response(text="elsewhere")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    return await aiohttp_server(app), reached


async def raw_request(url: str, head: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head)
    answer = await reader.read()
    writer.close()
    return answer


@pytest.mark.parametrize("form", ["host header", "absolute URI", "authority in path"])
async def test_requests_reach_only_the_configured_upstream(
    start_proxy: ProxyFactory, echo_server: TestServer, aiohttp_server: ServerFactory, form: str
) -> None:
    elsewhere, reached = await counting_server(aiohttp_server)
    other = f"127.0.0.1:{elsewhere.port}"
    proxy = await start_proxy(upstream=str(echo_server.make_url("")))
    target = {
        "host header": b"/v1/models",
        "absolute URI": f"http://{other}/v1/models".encode(),
        "authority in path": f"//{other}/v1/models".encode(),
    }[form]
    answer = await raw_request(
        proxy.url,
        b"GET " + target + f" HTTP/1.1\r\nHost: {other}\r\nConnection: close\r\n\r\n".encode(),
    )
    assert reached == []
    if form == "authority in path":
        # An empty first segment: not a canonical path, so not forwarded at all.
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
        assert orjson.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "invalid_path"
        return
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    echoed = orjson.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert echoed["path_qs"] == "/v1/models"
    assert echoed_headers(echoed)["host"] == f"127.0.0.1:{echo_server.port}"


async def test_redirects_are_passed_back_never_followed(
    start_proxy: ProxyFactory, aiohttp_server: ServerFactory
) -> None:
    elsewhere, reached = await counting_server(aiohttp_server)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(str(elsewhere.make_url("/stolen")))

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    upstream = await aiohttp_server(app)
    proxy = await start_proxy(
        {"filters": [{"name": "pii", "type": "pii"}]}, upstream=str(upstream.make_url(""))
    )
    for path in ("/v1/models", "/v1/chat/completions"):
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{proxy.url}{path}", json={"messages": []}, allow_redirects=False) as r,
        ):
            assert r.status == 302
    assert reached == []


def test_every_listener_defaults_to_loopback() -> None:
    config = parse_config({"admin": {}})
    assert config.listen.host == Config().listen.host == "127.0.0.1"
    assert config.metrics_listen.host == "127.0.0.1"
    assert config.admin is not None
    assert config.admin.host == "127.0.0.1"


async def test_the_admin_listener_needs_its_token(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy({"admin": {"token_env": "T"}}, environ={"T": SECRET_TOKEN})
    async with aiohttp.ClientSession() as session:
        for auth in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": SECRET_TOKEN}):
            async with session.patch(f"{proxy.admin_url}/admin/filters/pii", json={"mode": "off"},
                                     headers=auth) as response:  # fmt: skip
                assert response.status == 401
        good = {"Authorization": f"Bearer {SECRET_TOKEN}"}
        async with session.get(f"{proxy.admin_url}/admin/filters", headers=good) as response:
            assert response.status == 200


async def test_no_prompt_completion_or_secret_in_logs_by_default(
    start_proxy: ProxyFactory,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    aiohttp_server: ServerFactory,
) -> None:
    caplog.set_level(logging.DEBUG)
    config: dict[str, Any] = {
        "filters": [{"name": "deny", "type": "denylist", "params": {"words": ["zanzibar"]}}],
        "telemetry": {"access_log": "stdout"},
    }
    proxy = await start_proxy(config)
    headers = {"Authorization": f"Bearer {SECRET_TOKEN}", "X-Api-Key": SECRET_TOKEN}
    echo = {"model": "m", "messages": [{"role": "user", "content": f"echo: {SECRET_PROMPT[:12]}"}]}
    blocked = {"model": "m", "messages": [{"role": "user", "content": SECRET_PROMPT}]}
    for body in (echo, blocked):
        await post_json(f"{proxy.url}/v1/chat/completions", body, headers)
    broken = await start_proxy(config, upstream="http://127.0.0.1:9")  # refused: logged
    await post_json(f"{broken.url}/v1/chat/completions", echo, headers)
    logged = caplog.text + capsys.readouterr().out
    assert logged  # the access log and the upstream failure were written
    for secret in (SECRET_TOKEN, SECRET_PROMPT, SECRET_PROMPT[:12], "Zanzibar"):
        assert secret not in logged


@pytest.mark.parametrize(
    "line",
    [f"Authorization: Bearer {SECRET_TOKEN}\x01".encode(),
     f"X-Api-Key: {SECRET_TOKEN}\x00".encode(),
     f"Authorization : Bearer {SECRET_TOKEN}".encode()],
)  # fmt: skip
async def test_a_malformed_secret_header_is_not_logged(
    start_proxy: ProxyFactory, caplog: pytest.LogCaptureFixture, line: bytes
) -> None:
    """aiohttp's parser rejects these before our code runs; its own answer would quote
    the header back, and log it."""
    caplog.set_level(logging.DEBUG)
    proxy = await start_proxy({"filters": []})
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + line + b"\r\n\r\n"
    answer = await raw_request(proxy.url, head)
    head_part, _, body = answer.partition(b"\r\n\r\n")
    assert head_part.split(b"\r\n")[0].split(b" ")[1] == b"400", answer
    assert b"application/json" in head_part
    error = orjson.loads(body)["error"]
    assert error["code"] == "invalid_http_request"
    assert error["type"] == "invalid_request_error"
    assert "header" in error["message"]
    assert "rejected a malformed HTTP request" in caplog.text
    assert SECRET_TOKEN not in caplog.text
    assert SECRET_TOKEN.encode() not in answer
    status, _, _ = await post_json(
        f"{proxy.url}/v1/chat/completions", {"model": "m", "messages": []}
    )
    assert status in (200, 400)  # still serving
