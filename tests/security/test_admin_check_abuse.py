"""Attacks on ``POST /admin/check`` and on what it shares with live traffic, over real sockets.

The check runs the live filters beside the proxy's traffic, behind the admin
token: it must stay closed to the proxy's listener, hold nothing of the live
state longer than a request would, and answer every odd body in JSON.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import orjson
import pytest
import yaml

from tests.control.test_admin_check import AUTH, DENY, PII, PLUGINS, TOKEN, admin_proxy, check
from tests.loopback import ProxyFactory, RunningProxy, post_json
from tests.security.conftest import EMAIL
from tests.surfaces.conftest import Scripted

ASK = {"text": f"mail {EMAIL}", "stage": "input"}


async def stalled_upload(proxy: RunningProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A check whose head and first bytes arrive, and then nothing more."""
    host, port = proxy.admin_url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /admin/check HTTP/1.1\r\nHost: admin\r\n"
        + f"Authorization: Bearer {TOKEN}\r\n".encode()
        + b"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n"
        + b'{"stage": "input", "text": "'
    )
    await writer.drain()
    return reader, writer


async def test_a_stalled_check_upload_is_cut_after_client_body_timeout(
    start_proxy: ProxyFactory,
) -> None:
    # A request's body is cut after client_body_timeout_s of silence; a check's
    # was read for ever, in one of the 4 check slots: 4 stalled uploads (a CI
    # runner that died mid-upload) shut the check API until a restart.
    proxy = await admin_proxy(start_proxy, {"filters": [DENY], "client_body_timeout_s": 0.3})
    stalled = [await stalled_upload(proxy) for _ in range(4)]
    try:
        for reader, _ in stalled:
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408"), head
        status, answer = await check(proxy, ASK)
        assert status == 200, answer
    finally:
        for _, writer in stalled:
            writer.close()


async def test_a_stalled_check_upload_keeps_no_replaced_filters_open(
    start_proxy: ProxyFactory, tmp_path: Path
) -> None:
    # A check took its snapshot before its body arrived: while it waited, a
    # reload's replaced filters (a model's memory, a service's connections)
    # stayed open. A request takes its snapshot once its body is read.
    path = tmp_path / "taxmeter.yaml"
    first = {"filters": [DENY], "admin": {"token_env": "ADMIN_TOKEN"}}
    path.write_text(yaml.safe_dump(first))
    proxy = await start_proxy(first, config_path=str(path), environ={"ADMIN_TOKEN": TOKEN})
    _, writer = await stalled_upload(proxy)
    try:
        await asyncio.sleep(0.2)  # the check is waiting for the rest of its body
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{proxy.admin_url}/admin/reload", headers=AUTH) as r,
        ):
            assert r.status == 200
        assert proxy.apps.runtime.retired_open == 0
    finally:
        writer.close()


async def test_a_filter_that_breaks_the_body_gets_a_json_500(start_proxy: ProxyFactory) -> None:
    # The proxy answers its own failure in the API's shape (500 internal_error);
    # the check answered aiohttp's bare text/plain 500.
    corrupting = {"name": "corrupt", "type": f"{PLUGINS}:BodyCorrupting"}
    proxy = await admin_proxy(start_proxy, {"filters": [corrupting]})
    chat = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    ask = {"request": chat, "route": "chat_completions", "stage": "input"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{proxy.admin_url}/admin/check", json=ask, headers=AUTH) as r,
    ):
        assert r.status == 500
        assert r.content_type == "application/json"
        answer = await r.json()
    assert answer["error"]["code"] == "internal_error"
    assert "Traceback" not in answer["error"]["message"]
    status, _ = await check(proxy, ASK)
    assert status == 200  # its slot and snapshot were given back


NESTED_TYPE = {"type": "custom_block",
               "detail": {"type": ["not", "a", "string"], "note": f"mail {EMAIL}"}}  # fmt: skip
MESSAGES_NESTED_TYPE = {"model": "claude", "max_tokens": 16,
                        "messages": [{"role": "user", "content": [NESTED_TYPE]}]}  # fmt: skip


async def test_a_nested_block_whose_type_is_no_string_is_judged(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    # A block nested in an unknown Messages block, with a "type" that is a list,
    # raised TypeError in the surface's reader: 500 on the proxy's listener, a
    # bare 500 on the check. It is read like any other nested block.
    proxy = await admin_proxy(start_proxy, {"filters": [PII]}, scripted.url)
    scripted.answer = {"type": "message", "role": "assistant",
                       "content": [{"type": "text", "text": "ok"}]}  # fmt: skip
    status, _, body = await post_json(f"{proxy.url}/v1/messages", MESSAGES_NESTED_TYPE)
    assert status == 200, body
    (sent,) = scripted.json_bodies()
    assert sent["messages"][0]["content"][0]["detail"]["note"] == "mail [EMAIL]"
    ask = {"request": MESSAGES_NESTED_TYPE, "route": "messages", "stage": "input"}
    status, answer = await check(proxy, ask)
    assert status == 200, answer
    assert answer["request"]["messages"][0]["content"][0]["detail"]["note"] == "mail [EMAIL]"


async def test_a_responses_answer_item_whose_type_is_no_string_is_judged(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    # An output item with a list for its "type" raised TypeError while the
    # answer was read (500 internal_error). An item of a type not known is read
    # whole, so its text is judged.
    proxy = await start_proxy({"filters": [PII]}, upstream=scripted.url)
    scripted.answer = {"object": "response", "status": "completed", "output": [
        {"type": ["odd"], "text": f"mail {EMAIL}"}]}  # fmt: skip
    status, _, body = await post_json(f"{proxy.url}/v1/responses", {"model": "m", "input": "hi"})
    assert status == 200, body
    assert EMAIL not in body.decode()


async def test_a_client_cannot_pass_for_a_check(start_proxy: ProxyFactory) -> None:
    # Filters read a check's request id as "admin-check", so that their own
    # logs tell a check from traffic; a client sending it as X-Request-Id
    # made its request read as a check.
    proxy = await admin_proxy(start_proxy, {"filters": [DENY]})
    chat = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    status, headers, _ = await post_json(
        f"{proxy.url}/v1/chat/completions", chat, {"X-Request-Id": "admin-check"}
    )
    assert status == 200
    assert headers["X-Request-Id"] != "admin-check"
    # Any other id of the client's is passed through, as before.
    status, headers, _ = await post_json(
        f"{proxy.url}/v1/chat/completions", chat, {"X-Request-Id": "ci-run-7"}
    )
    assert headers["X-Request-Id"] == "ci-run-7"


PROXY_SPELLINGS = [
    ("POST", "/admin/check"), ("POST", "//admin/check"), ("POST", "/admin/check/"),
    ("POST", "/ADMIN/CHECK"), ("POST", "/admin%2Fcheck"), ("POST", "/v1/../admin/check"),
    ("POST", "/./admin/check"), ("PUT", "/admin/check"), ("GET", "/admin/check?text=forbidden"),
    ("POST", "/admin/filters"), ("GET", "/admin/filters"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "target"), PROXY_SPELLINGS)
async def test_no_spelling_of_the_check_on_the_proxy_listener_judges(
    start_proxy: ProxyFactory, scripted: Scripted, method: str, target: str
) -> None:
    proxy = await admin_proxy(start_proxy, {"filters": [DENY, PII]}, scripted.url)
    scripted.status, scripted.answer = 404, {"upstream": "answered"}
    body = orjson.dumps({"text": "a forbidden word", "stage": "input", "every_filter": True})
    headers = {**AUTH, "X-Taxmeter-Admin-Token": TOKEN, "Host": "127.0.0.1"}
    host, port = proxy.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        head = f"{method} {target} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        async with asyncio.timeout(5):
            answer = await reader.read(65536)
    finally:
        writer.close()
    # Forwarded unjudged (unjudged_routes: pass) or refused; never a verdict.
    assert answer.startswith(b"HTTP/1.1 "), answer
    for word in (b"verdict", b"denylist", b"blocked_by", b"deny", b"pii"):
        assert word not in answer.split(b"\r\n\r\n", 1)[1], answer
