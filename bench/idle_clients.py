"""What idle and half-open client connections cost a running proxy, and how long they last.

    python bench/idle_clients.py [--connections 4000] [--half] [--config FILE] [--hold 5]

Starts ``taxmeter serve`` on loopback (the simulated model server behind it),
opens the connections (``--half``: each sends half a request head, as a
slowloris does), and reports the proxy process's RSS before and after, how
many connections it still holds after ``--hold`` seconds, and how long one
normal request then takes. Loopback only; the count is capped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from pathlib import Path

MAX_CONNECTIONS = 16_000  # two descriptors each on one host: keep well under the usual limits
HALF_HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nContent-Type: app"
CHAT = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(CHAT), CHAT)
)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def start_proxy(config: str | None) -> tuple[asyncio.subprocess.Process, str, int]:
    argv = [sys.executable, "-m", "proxy", "serve", "--listen", "127.0.0.1:0",
            "--metrics-listen", "127.0.0.1:0"]  # fmt: skip
    if config is not None:
        argv += ["--config", config]
    process = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    async with asyncio.timeout(60):
        while True:
            line = (await process.stdout.readline()).decode()
            if not line:
                raise RuntimeError("the proxy did not start")
            if line.startswith("taxmeter: proxy"):
                host, port = line.split("http://", 1)[1].split()[0].rsplit(":", 1)
                return process, host, int(port)


async def still_open(reader: asyncio.StreamReader) -> bool:
    """Whether the proxy has not closed (or answered and closed) this connection."""
    try:
        async with asyncio.timeout(0.001):
            await reader.read(1)
    except TimeoutError:
        return True
    except ConnectionError:
        return False
    return False  # an answer or the end: either way the proxy let go


async def one_request(host: str, port: int) -> float:
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(REQUEST)
    status = await reader.readline()
    writer.close()
    if b" 200 " not in status:
        raise RuntimeError(f"a normal request got {status!r}")
    return time.perf_counter() - started


async def main(args: argparse.Namespace) -> None:
    count = min(args.connections, MAX_CONNECTIONS)
    process, host, port = await start_proxy(args.config)
    try:
        alone = await one_request(host, port)
        before = rss_kib(process.pid)
        streams = []
        for _ in range(count):
            reader, writer = await asyncio.open_connection(host, port)
            if args.half:
                writer.write(HALF_HEAD)
            streams.append((reader, writer))
        await asyncio.sleep(1)
        after = rss_kib(process.pid)
        print(f"connections      {count} ({'half-sent heads' if args.half else 'silent'})")
        grew = after - before
        print(f"proxy RSS        {before / 1024:.1f} MiB -> {after / 1024:.1f} MiB "
              f"(+{grew / 1024:.1f} MiB, {grew / count:.2f} KiB each)")  # fmt: skip
        await asyncio.sleep(max(0.0, args.hold - 1))
        held = sum([await still_open(reader) for reader, _ in streams])
        print(f"held after {args.hold:g} s   {held}")
        print(f"a normal request {await one_request(host, port) * 1000:.1f} ms"
              f" (with no other connection: {alone * 1000:.1f} ms)")  # fmt: skip
        for _, writer in streams:
            writer.close()
    finally:
        process.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), timeout=30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=4000)
    parser.add_argument("--half", action="store_true", help="send half a request head on each")
    parser.add_argument("--config", help="the proxy's config file")
    parser.add_argument("--hold", type=float, default=5.0, help="seconds before counting")
    asyncio.run(main(parser.parse_args()))
