"""Slow uploads take no concurrency slot, and a silent body is cut off.

Before, a request took its ``max_concurrent_requests`` slot before its body
was read and body reads had no timeout: with a limit of 4, sixteen clients
sending one byte a second held every slot, and everyone else got 429 for as
long as they liked. Now a slot is taken once the body is in hand (judged) or
forwarding begins (passed through), and a body silent for
``client_body_timeout_s`` gets 408 ``client_body_timeout`` and the close.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import time
from pathlib import Path

import orjson
import pytest

from tests.loopback import ProxyFactory, RunningProxy, post_json

CHAT = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hello"}]})
PII = {"filters": [{"name": "pii", "type": "pii", "stages": ["input"]}]}


async def slow_upload(port: int, path: str, stop: asyncio.Event, every_s: float) -> None:
    """Headers, then one byte of the body every ``every_s`` until ``stop``."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST %b HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % (path.encode(), len(CHAT))
    )
    with contextlib.suppress(ConnectionError):
        for byte in CHAT[:-1]:
            writer.write(bytes([byte]))
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
            if stop.is_set():
                break
    writer.close()


async def test_slow_uploads_do_not_lock_other_clients_out(start_proxy: ProxyFactory) -> None:
    """A judged body is read before its slot is taken. (A body passed through is
    forwarded as it arrives, so it holds a slot from its first byte, bounded by
    client_body_timeout_s.)"""
    limit = 4
    path = "/v1/chat/completions"
    proxy = await start_proxy({**PII, "max_concurrent_requests": limit})
    stop = asyncio.Event()
    attackers = [
        asyncio.ensure_future(slow_upload(proxy.server.port, path, stop, 0.2))
        for _ in range(4 * limit)
    ]
    try:
        await asyncio.sleep(0.5)  # every attacker has sent its headers and a few bytes
        started = time.perf_counter()
        status, _, answer = await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
        elapsed = time.perf_counter() - started
        assert status == 200, answer
        assert elapsed < 1.0  # at once, not after an attacker gave up
        assert proxy.value("taxmeter_rejected_requests_total", reason="concurrency") == 0
    finally:
        stop.set()
        await asyncio.gather(*attackers)


async def test_the_slot_limit_still_holds_once_bodies_are_read(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy(
        {"max_concurrent_requests": 2, "filters": [
            {"name": "slow", "type": "synthetic", "stages": ["input"], "params": {"wall_ms": 300}}]}
    )  # fmt: skip
    url = f"{proxy.url}/v1/chat/completions"
    answers = await asyncio.gather(*(post_json(url, CHAT) for _ in range(5)))
    statuses = sorted(status for status, _, _ in answers)
    assert statuses.count(200) == 2
    assert statuses.count(429) == 3
    assert proxy.value("taxmeter_rejected_requests_total", reason="concurrency") == 3


async def read_answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )  # fmt: skip
    return head, await reader.readexactly(length)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/files"], ids=["judged", "passed"])
async def test_a_silent_body_gets_408_and_the_connection_closes(
    start_proxy: ProxyFactory, path: str
) -> None:
    proxy: RunningProxy = await start_proxy({**PII, "client_body_timeout_s": 0.3})
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.server.port)
    # Over the size the proxy reads whole: a passed-through body is streamed.
    writer.write(b"POST %b HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{" % path.encode())
    started = time.perf_counter()
    head, body = await asyncio.wait_for(read_answer(reader), 5)
    elapsed = time.perf_counter() - started
    assert head.startswith(b"HTTP/1.1 408"), head
    error = orjson.loads(body)["error"]
    assert error["code"] == "client_body_timeout"
    assert "client_body_timeout_s" in error["message"]
    assert 0.25 <= elapsed < 2.0
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed
    writer.close()
    assert proxy.value("taxmeter_rejected_requests_total", reason="body_timeout") == 1
    status, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
    assert status == 200


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_a_declared_length_costs_nothing_until_the_bytes_arrive() -> None:
    """A head that declares 32 MiB and sends one byte must not cost 32 MiB: the
    body's buffer grows with what arrives. (Sized up front, four such heads
    took a fresh proxy from 44 to 176 MB.)"""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "serve", "--listen", "127.0.0.1:0",
        "--metrics-listen", "127.0.0.1:0", "--log-level", "critical",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    writers = []
    try:
        port = 0
        async with asyncio.timeout(60):
            while not port:
                line = (await process.stdout.readline()).decode()
                assert line, "serve exited before it was listening"
                if found := re.match(r"taxmeter: proxy\s+http://127\.0\.0\.1:(\d+)", line):
                    port = int(found.group(1))
        before = rss_kib(process.pid)
        for _ in range(4):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                         b"application/json\r\nContent-Length: 33554432\r\n\r\n{")  # fmt: skip
            writers.append(writer)
        await asyncio.sleep(1.0)  # the handlers are reading the bodies
        grown_mib = (rss_kib(process.pid) - before) / 1024
        assert grown_mib < 16, grown_mib  # 4 x 32 MiB if sized from the length
    finally:
        for writer in writers:
            writer.close()
        process.terminate()
        await process.wait()
