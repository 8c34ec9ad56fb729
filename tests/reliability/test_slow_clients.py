"""Slow and idle clients: a head arrives in time or gets 408, idle ends, the count is capped.

Raw sockets as clients, short timeouts in the config (proxy/server/client_limits.py,
proxy/server/wire.py, docs/reliability.md "Slow and idle clients").
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp.test_utils import TestServer

from proxy.server.wire import WireRunner
from tests.loopback import ProxyFactory, RunningProxy, post_json
from tests.server.test_serve_cli import read_announcement
from tests.server.test_workers import sample

CHAT = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(CHAT), CHAT)
)
HALF_HEAD = REQUEST[:40]  # the request line and part of a header
Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def connect(proxy: RunningProxy) -> Stream:
    return await asyncio.open_connection(proxy.server.host, proxy.server.port)


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP answer with a Content-Length: (status, headers in lower case, body)."""
    async with asyncio.timeout(10):
        head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines if x)}
    async with asyncio.timeout(10):
        body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split()[1]), headers, body


async def until_closed(reader: asyncio.StreamReader, within: float = 5.0) -> bytes:
    """Everything the proxy sends until it closes the connection (a reset ends it too)."""
    data = b""
    async with asyncio.timeout(within):
        with contextlib.suppress(ConnectionResetError):
            while chunk := await reader.read(65536):
                data += chunk
    return data


async def closed_at_once(reader: asyncio.StreamReader) -> bool:
    try:
        return await until_closed(reader, within=0.5) == b""
    except TimeoutError:
        return False


def rejected(proxy: RunningProxy, reason: str) -> float:
    return proxy.value("taxmeter_rejected_requests_total", reason=reason)


def timeouts(header: float, keepalive: float, **more: Any) -> dict[str, Any]:
    return {"client_header_timeout_s": header, "keepalive_timeout_s": keepalive, **more}


async def test_a_request_head_cut_short_gets_a_408_and_the_connection_closes(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy(timeouts(0.5, 30))
    reader, writer = await connect(proxy)
    writer.write(HALF_HEAD)
    sent = time.monotonic()
    status, headers, body = await read_answer(reader)
    waited = time.monotonic() - sent
    assert status == 408
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    error = orjson.loads(body)["error"]
    assert error["code"] == "client_header_timeout"
    assert error["type"] == "invalid_request_error"
    assert 0.4 <= waited < 3
    assert await until_closed(reader) == b""
    assert rejected(proxy, "header_timeout") == 1
    writer.close()


async def test_on_a_kept_alive_connection_the_head_has_its_time_from_its_first_byte(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy(timeouts(0.6, 30))
    reader, writer = await connect(proxy)
    writer.write(REQUEST)
    assert (await read_answer(reader))[0] == 200
    await asyncio.sleep(0.4)  # the connection is 0.4 s older than the next head
    writer.write(HALF_HEAD)
    sent = time.monotonic()
    status, _, body = await read_answer(reader)
    assert status == 408
    assert orjson.loads(body)["error"]["code"] == "client_header_timeout"
    assert time.monotonic() - sent >= 0.5
    writer.close()


async def test_a_head_that_arrives_slowly_but_in_time_is_served(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy(timeouts(1.5, 0.3))
    reader, writer = await connect(proxy)
    for start in range(0, len(REQUEST), 40):  # a byte now and then: never idle, whole in time
        writer.write(REQUEST[start : start + 40])
        await asyncio.sleep(0.1)
    assert (await read_answer(reader))[0] == 200
    assert rejected(proxy, "header_timeout") == 0
    writer.close()


async def test_a_connection_that_sends_nothing_is_closed_without_an_answer(
    start_proxy: ProxyFactory,
) -> None:
    # Silent from the start: the shorter of the two timeouts, whichever it is.
    for config in (timeouts(0.3, 30), timeouts(30, 0.3)):
        proxy = await start_proxy(config)
        reader, writer = await connect(proxy)
        opened = time.monotonic()
        assert await until_closed(reader) == b""
        assert 0.25 <= time.monotonic() - opened < 3
        assert rejected(proxy, "header_timeout") == 0  # idle, not a rejected request
        writer.close()


async def test_an_idle_kept_alive_connection_is_closed_after_keepalive_timeout(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy(timeouts(30, 0.5))
    reader, writer = await connect(proxy)
    writer.write(REQUEST)
    assert (await read_answer(reader))[0] == 200
    await asyncio.sleep(0.3)
    writer.write(REQUEST)  # still open: the idle time starts again after this answer
    assert (await read_answer(reader))[0] == 200
    answered = time.monotonic()
    assert await until_closed(reader) == b""
    assert 0.4 <= time.monotonic() - answered < 3
    writer.close()


async def test_after_a_429_the_connection_idles_out_without_a_408(
    start_proxy: ProxyFactory,
) -> None:
    # The 429 is answered before any handler runs; the connection is idle after it all the same.
    proxy = await start_proxy(timeouts(0.3, 0.8, max_concurrent_requests=1))
    url = f"{proxy.url}/v1/chat/completions"
    slow = asyncio.ensure_future(post_json(url, CHAT, {"x-mock-ttft-ms": "3000"}))
    async with asyncio.timeout(5):
        while proxy.value("taxmeter_inflight_requests") < 1:  # noqa: ASYNC110 - another server
            await asyncio.sleep(0.01)
    reader, writer = await connect(proxy)
    writer.write(REQUEST)
    status, headers, _ = await read_answer(reader)
    assert status == 429
    assert headers.get("connection") != "close"
    answered = time.monotonic()
    assert await until_closed(reader) == b""  # no 408: nothing was under way
    assert time.monotonic() - answered >= 0.7
    assert rejected(proxy, "header_timeout") == 0
    writer.close()
    assert (await slow)[0] == 200


async def test_an_answer_slower_than_every_client_timeout_is_not_cut(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy(timeouts(0.3, 0.3))
    reader, writer = await connect(proxy)
    slow = REQUEST.replace(b"Host: proxy\r\n", b"Host: proxy\r\nX-Mock-Ttft-Ms: 1000\r\n")
    writer.write(slow)
    assert (await read_answer(reader))[0] == 200
    writer.close()
    status, _, _ = await post_json(
        f"{proxy.url}/v1/chat/completions",
        {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        {"x-mock-ttft-ms": "1000"},
    )
    assert status == 200


async def test_beyond_max_client_connections_a_new_connection_is_closed_at_once(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy(timeouts(30, 30, max_client_connections=3))
    held = [await connect(proxy) for _ in range(3)]
    extra_reader, extra_writer = await connect(proxy)
    assert await closed_at_once(extra_reader)
    extra_writer.close()
    assert rejected(proxy, "client_connections") == 1
    runner = proxy.server.runner
    assert isinstance(runner, WireRunner)
    assert runner.server is not None
    assert len(runner.server.connections) == 3  # nothing was built for the one turned away
    for reader, writer in held:  # the first three still work
        writer.write(REQUEST)
        assert (await read_answer(reader))[0] == 200

    held.pop()[1].close()  # one leaves: its place is free again
    async with asyncio.timeout(5):
        while runner.open_connections > 2:  # noqa: ASYNC110 - the proxy's own count, no event to wait on
            await asyncio.sleep(0.01)
    reader, writer = await connect(proxy)
    writer.write(REQUEST)
    assert (await read_answer(reader))[0] == 200
    assert rejected(proxy, "client_connections") == 1
    for _, w in [*held, (reader, writer)]:
        w.close()


async def test_a_slowloris_delays_no_one_and_every_half_open_connection_gets_a_408(
    start_proxy: ProxyFactory,
) -> None:
    count = 200
    proxy = await start_proxy(timeouts(2.0, 30))
    loris = [await connect(proxy) for _ in range(count)]
    for _, writer in loris:
        writer.write(HALF_HEAD)
    await asyncio.sleep(0.2)
    started = time.monotonic()
    status, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
    assert status == 200
    assert time.monotonic() - started < 1.0  # the fast model answers in about 15 ms
    answers = await asyncio.gather(*(until_closed(reader, within=8) for reader, _ in loris))
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers)
    assert rejected(proxy, "header_timeout") == count
    runner = proxy.server.runner
    assert isinstance(runner, WireRunner)
    assert runner.open_connections == 0
    for _, writer in loris:
        writer.close()


async def test_with_workers_each_worker_applies_the_limits(
    model: TestServer, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    config = tmp_path / "taxmeter.yaml"
    config.write_text("max_client_connections: 1\nclient_header_timeout_s: 1\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "serve", "--workers", "2", "--config", str(config),
        "--upstream", str(model.make_url("")).rstrip("/"),
        "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
    )  # fmt: skip
    try:
        where = await read_announcement(process)
        host, port = where["proxy"].split()[0].removeprefix("http://").rsplit(":", 1)
        # Three connections, two workers of one each: at least one is turned away.
        streams = [await asyncio.open_connection(host, int(port)) for _ in range(3)]
        for _, writer in streams:
            writer.write(HALF_HEAD)
        answers = await asyncio.gather(*(until_closed(reader) for reader, _ in streams))
        refused = answers.count(b"")
        assert 1 <= refused <= 2
        assert all(a == b"" or a.startswith(b"HTTP/1.1 408 ") for a in answers)
        reader, writer = await asyncio.open_connection(*where["metrics"].split("/")[2].split(":"))
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
        metrics = (await until_closed(reader)).decode().split("\r\n\r\n", 1)[1]
        name = "taxmeter_rejected_requests_total"
        assert sample(metrics, name, reason="client_connections") == refused
        assert sample(metrics, name, reason="header_timeout") == 3 - refused
        for _, w in [*streams, (reader, writer)]:
            w.close()
    finally:
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            await process.wait()
