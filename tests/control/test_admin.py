"""The admin listener: token, filter modes, weights and reload, over real sockets."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.judge.sample_filters import Closable
from tests.loopback import ProxyFactory, RunningProxy, post_json
from tests.server.test_serve_cli import read_announcement

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello there"}]}
SLOW = {"name": "slow", "type": "synthetic", "stages": ["input"], "params": {"wall_ms": 20}}
DENY = {"name": "deny", "type": "denylist", "stages": ["input"], "params": {"words": ["hello"]}}


async def admin_proxy(start_proxy: ProxyFactory, config: dict[str, Any], **kw: Any) -> RunningProxy:
    return await start_proxy(
        {**config, "admin": {"token_env": "ADMIN_TOKEN"}}, environ={"ADMIN_TOKEN": TOKEN}, **kw
    )


async def call(
    proxy: RunningProxy, method: str, path: str, body: Any = None, headers: dict[str, str] = AUTH
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"{proxy.admin_url}{path}", json=body, headers=headers) as r,
    ):
        return r.status, await r.json(content_type=None)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
     {"Authorization": f"Basic {TOKEN}"}, {"Authorization": f"Bearer {TOKEN}x"}],
)  # fmt: skip
async def test_wrong_or_missing_tokens_get_401(
    start_proxy: ProxyFactory, headers: dict[str, str]
) -> None:
    proxy = await admin_proxy(start_proxy, {"filters": [SLOW]})
    for method, path in (("GET", "/admin/filters"), ("PATCH", "/admin/filters/slow"),
                         ("POST", "/admin/reload")):  # fmt: skip
        status, body = await call(proxy, method, path, {"mode": "off"}, headers)
        assert status == 401
        assert body["error"]["code"] == "unauthorized"
    # Nothing changed.
    assert proxy.apps.runtime.config.filters[0].mode == "enforce"


async def test_no_admin_listener_without_a_token(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy({"admin": {"token_env": "ADMIN_TOKEN"}}, environ={})
    assert proxy.admin_server is None
    proxy = await start_proxy({})
    assert proxy.admin_server is None


async def test_a_filter_switched_off_stops_costing_time_on_the_next_request(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await admin_proxy(start_proxy, {"filters": [SLOW]})
    status, filters = await call(proxy, "GET", "/admin/filters")
    assert status == 200
    assert filters == [{"name": "slow", "type": "synthetic", "stages": ["input"],
                        "mode": "enforce"}]  # fmt: skip

    def slow_calls() -> float:
        return proxy.value("taxmeter_filter_duration_seconds_count", filter="slow", stage="input",
                           variant="default")  # fmt: skip

    await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
    assert slow_calls() == 1
    status, filters = await call(proxy, "PATCH", "/admin/filters/slow", {"mode": "off"})
    assert status == 200
    assert filters[0]["mode"] == "off"
    tax_before = proxy.value("taxmeter_latency_tax_seconds_sum", route="chat_completions",
                             variant="default")  # fmt: skip
    await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
    assert slow_calls() == 1  # not called again
    tax = proxy.value("taxmeter_latency_tax_seconds_sum", route="chat_completions",
                      variant="default") - tax_before  # fmt: skip
    assert tax < 0.005

    status, _ = await call(proxy, "PATCH", "/admin/filters/slow", {"mode": "enforce"})
    assert status == 200
    await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
    assert slow_calls() == 2


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/admin/filters/slow", {"mode": "loud"}, 400, "invalid_mode"),
        ("/admin/filters/slow", {"mode": "off", "x": 1}, 400, "invalid_body"),
        ("/admin/filters/slow", ["off"], 400, "invalid_body"),
        ("/admin/filters/ghost", {"mode": "off"}, 404, "not_found"),
    ],
)
async def test_bad_mode_changes(
    start_proxy: ProxyFactory, path: str, body: Any, status: int, code: str
) -> None:
    proxy = await admin_proxy(start_proxy, {"filters": [SLOW]})
    got, payload = await call(proxy, "PATCH", path, body)
    assert (got, payload["error"]["code"]) == (status, code)


async def test_an_in_flight_request_keeps_the_config_it_started_with(
    start_proxy: ProxyFactory,
) -> None:
    slower = {**SLOW, "params": {"wall_ms": 150}}
    proxy = await admin_proxy(start_proxy, {"filters": [slower, DENY]})
    in_flight = asyncio.ensure_future(post_json(f"{proxy.url}/v1/chat/completions", CHAT))
    await asyncio.sleep(0.05)  # it is inside the slow filter now
    status, _ = await call(proxy, "PATCH", "/admin/filters/deny", {"mode": "off"})
    assert status == 200
    got, _, _ = await in_flight
    assert got == 400  # its chain still had deny enforcing
    got, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
    assert got == 200


async def test_variant_weights(start_proxy: ProxyFactory) -> None:
    proxy = await admin_proxy(
        start_proxy,
        {"filters": [DENY], "variants": {"a": {"weight": 1},
                                         "b": {"weight": 0, "disable": ["deny"]}}},
    )  # fmt: skip
    status, variants = await call(proxy, "GET", "/admin/variants")
    assert status == 200
    assert variants == {"a": {"weight": 1.0, "disable": [], "modes": {}},
                        "b": {"weight": 0.0, "disable": ["deny"], "modes": {}}}  # fmt: skip
    got, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
    assert got == 400  # variant a: deny enforces
    status, variants = await call(proxy, "PUT", "/admin/variants",
                                  {"a": {"weight": 0}, "b": {"weight": 5}})  # fmt: skip
    assert status == 200
    assert variants["b"]["weight"] == 5.0
    got, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
    assert got == 200  # variant b: deny disabled
    for body, code in (({"c": {"weight": 1}}, 404), ({"a": {"weight": -1}}, 400),
                       ({"a": {"weight": 0}, "b": {"weight": 0}}, 400),
                       ({"a": 3}, 400)):  # fmt: skip
        status, _ = await call(proxy, "PUT", "/admin/variants", body)
        assert status == code, body
    _, variants = await call(proxy, "GET", "/admin/variants")
    assert (variants["a"]["weight"], variants["b"]["weight"]) == (0.0, 5.0)


async def test_reload_applies_a_good_file_and_refuses_a_bad_one(
    start_proxy: ProxyFactory, tmp_path: Path
) -> None:
    path = tmp_path / "taxmeter.yaml"
    first = {"filters": [DENY], "admin": {"token_env": "ADMIN_TOKEN"}}
    path.write_text(yaml.safe_dump(first))
    proxy = await start_proxy(first, config_path=str(path), environ={"ADMIN_TOKEN": TOKEN})
    got, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
    assert got == 400

    path.write_text(yaml.safe_dump({**first, "filters": [{**DENY, "params": {"words": ["zz"]}}]}))
    status, body = await call(proxy, "POST", "/admin/reload")
    assert status == 200, body
    got, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
    assert got == 200

    for bad in ("filters: [", "filters:\n  - {name: d, type: denylist, params: {}}\n",
                "filters:\n  - {name: d, type: nosuch}\n"):  # fmt: skip
        path.write_text(bad)
        status, body = await call(proxy, "POST", "/admin/reload")
        assert status == 400
        assert body["error"]["code"] == "invalid_config"
        assert "reload refused" in body["error"]["message"]
        got, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
        assert got == 200  # the running config stays


async def reloadable(
    start_proxy: ProxyFactory, tmp_path: Path
) -> tuple[Path, dict[str, Any], RunningProxy]:
    """A proxy with no filters, its config file, and an admin listener to reload it."""
    path = tmp_path / "taxmeter.yaml"
    first: dict[str, Any] = {"filters": [], "admin": {"token_env": "ADMIN_TOKEN"}}
    path.write_text(yaml.safe_dump(first))
    proxy = await start_proxy(first, config_path=str(path), environ={"ADMIN_TOKEN": TOKEN})
    return path, first, proxy


async def test_reload_builds_filters_off_the_loop_while_requests_are_served(
    start_proxy: ProxyFactory, tmp_path: Path
) -> None:
    path, first, proxy = await reloadable(start_proxy, tmp_path)
    slow = {"name": "slow", "type": "tests.judge.sample_filters:SlowToBuild",
            "params": {"build_s": 1.5}}  # fmt: skip
    path.write_text(yaml.safe_dump({**first, "filters": [slow]}))
    loop = asyncio.get_running_loop()
    reloading = asyncio.ensure_future(call(proxy, "POST", "/admin/reload"))
    await asyncio.sleep(0.2)  # the build is under way
    longest, served = 0.0, 0
    while not reloading.done():
        began = loop.time()
        got, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
        assert got == 200
        longest, served = max(longest, loop.time() - began), served + 1
    status, body = await reloading
    assert status == 200, body
    assert body["filters"] == ["slow"]
    # Built on the loop, the filter would stall the loop (this test's client
    # shares it) for its 1.5 s: nothing would be served meanwhile.
    assert served >= 10
    assert longest < 0.75


async def test_replaced_filters_are_closed_when_their_last_request_ends(
    start_proxy: ProxyFactory, tmp_path: Path
) -> None:
    path = tmp_path / "taxmeter.yaml"
    closable = {"name": "c", "type": "tests.judge.sample_filters:Closable", "stages": ["input"],
                "timeout_ms": 5000}  # fmt: skip
    first = {"filters": [{**closable, "params": {"hold_s": 1.0}}],
             "admin": {"token_env": "ADMIN_TOKEN"}}  # fmt: skip
    path.write_text(yaml.safe_dump(first))
    proxy = await start_proxy(first, config_path=str(path), environ={"ADMIN_TOKEN": TOKEN})
    runtime = proxy.apps.runtime
    ((old, *_),) = runtime.current.filters.values()
    holding = asyncio.ensure_future(post_json(f"{proxy.url}/v1/chat/completions", CHAT))
    await asyncio.sleep(0.3)  # the request is in the filter's check

    path.write_text(yaml.safe_dump({**first, "filters": [closable]}))
    status, _ = await call(proxy, "POST", "/admin/reload")
    assert status == 200
    ((new, *_),) = runtime.current.filters.values()
    assert new is not old
    assert not holding.done()
    assert old not in Closable.closed  # still in use
    assert runtime.retired_open == 1

    assert (await holding)[0] == 200
    await proxy.settle()
    assert old in Closable.closed
    assert new not in Closable.closed
    assert runtime.retired_open == 0
    # A reload while nothing is in flight closes the replaced filters at once.
    status, _ = await call(proxy, "POST", "/admin/reload")
    assert status == 200
    await asyncio.sleep(0.05)
    assert new in Closable.closed


async def test_a_reload_that_fails_closes_the_filters_it_built_before_the_bad_one(
    start_proxy: ProxyFactory, tmp_path: Path
) -> None:
    path, first, proxy = await reloadable(start_proxy, tmp_path)
    closable = {"name": "c", "type": "tests.judge.sample_filters:Closable"}
    broken = {"name": "b", "type": "tests.judge.sample_filters:Closable", "params": {"x": 1}}
    path.write_text(yaml.safe_dump({**first, "filters": [closable, broken]}))
    already = len(Closable.closed)
    status, body = await call(proxy, "POST", "/admin/reload")
    assert status == 400, body
    assert body["error"]["message"].startswith("reload refused: filters[1].params: filter 'b'")
    async with asyncio.timeout(5):  # closed in the background, as replaced filters are
        while len(Closable.closed) == already:  # noqa: ASYNC110 - a filter's own record
            await asyncio.sleep(0.01)
    assert len(Closable.closed) == already + 1  # "c", built for nothing; "b" never was
    assert proxy.apps.runtime.current.filters == {}


async def test_sighup_reloads_a_running_proxy(tmp_path: Path) -> None:
    path = tmp_path / "taxmeter.yaml"
    path.write_text(yaml.safe_dump({"filters": [DENY]}))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "serve", "--config", str(path),
        "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        where = await read_announcement(process)
        url = f"{where['proxy']}/v1/chat/completions"
        assert (await post_json(url, CHAT))[0] == 400
        path.write_text(yaml.safe_dump({"filters": []}))
        process.send_signal(signal.SIGHUP)
        async with asyncio.timeout(5):
            while (await post_json(url, CHAT))[0] != 200:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        path.write_text("filters: [")
        process.send_signal(signal.SIGHUP)
        await asyncio.sleep(0.3)
        assert (await post_json(url, CHAT))[0] == 200  # still serving, old config
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
        assert process.stderr is not None
        log = (await process.stderr.read()).decode()
        assert "reloaded" in log
        assert "reload refused" in log
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_a_token_that_is_not_utf8_is_401_not_a_bare_500(start_proxy: ProxyFactory) -> None:
    proxy = await admin_proxy(start_proxy, {})
    assert proxy.admin_server is not None
    reader, writer = await asyncio.open_connection(proxy.admin_server.host, proxy.admin_server.port)
    writer.write(b"GET /admin/filters HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\r\n\r\n")
    status = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    assert status.startswith(b"HTTP/1.1 401"), status
