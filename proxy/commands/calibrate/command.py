"""``taxmeter calibrate``: what the proxy says it adds, against what a client measures.

Starts the simulated model server and a proxy with an empty filter chain
(or ``--config``), each in its own process, sends the same request directly
and through the proxy, interleaved, from this process (so the client does
not share the proxy's event loop), and compares the black-box added latency
with the overhead the proxy reported in its metrics over the same requests:
mean with mean, the metrics holding a sum and a count. Each client's first
``WARMUP`` pairs warm connections and caches up and are not counted.
It also measures one round trip through a do-nothing process on loopback:
the cost of an extra hop, which no clock inside the proxy can see.

Exit status: 0; 1 when a child process does not start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import uvloop
import yaml

from proxy.commands.calibrate.text import OVERHEAD, Figures, render, render_json
from proxy.config.schema import load_config
from proxy.measure.timeline import Timeline

BODY = {"model": "mock-model", "messages": [{"role": "user", "content": "echo: hello"}]}
WARMUP = 50
HOP_ROUND_TRIPS = 2000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=int, default=2000, help="proxied requests (2000)")
    parser.add_argument("--concurrency", type=int, default=1, help="clients at once (1)")
    parser.add_argument(
        "--config", metavar="FILE",
        help="proxy config (default: no filters); its upstream is replaced by the simulated one",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="one JSON document")


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.requests < args.concurrency or args.concurrency < 1:
        print("taxmeter calibrate: --requests must be >= --concurrency >= 1", file=err)
        return 2
    config: dict[str, Any] = {"filters": []}
    if args.config:
        load_config(args.config)  # a bad file stops here, naming the key (ConfigError)
        config = yaml.safe_load(Path(args.config).read_text()) or {}
    try:
        figures = uvloop.run(calibrate(config, args.requests, args.concurrency))
    except (RuntimeError, TimeoutError) as exc:
        print(f"taxmeter calibrate: {exc}", file=err)
        return 1
    out.write(render_json(figures) if args.json else render(figures))
    return 0


async def calibrate(config: dict[str, Any], requests: int, concurrency: int) -> Figures:
    async with contextlib.AsyncExitStack() as stack:
        model = await stack.enter_async_context(_child("mock-upstream", "--listen",
                                                       "127.0.0.1:0", "--ttft-ms", "0",
                                                       "--tokens-per-s", "1e6"))  # fmt: skip
        model_url = model[0].rsplit(" ", 1)[-1]
        config = {**config, "upstream": {**config.get("upstream", {}), "url": model_url}}
        path = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "calibrate.yaml"
        path.write_text(yaml.safe_dump(config))
        lines = await stack.enter_async_context(
            _child("serve", "--config", str(path), "--listen", "127.0.0.1:0",
                   "--metrics-listen", "127.0.0.1:0")
        )  # fmt: skip
        proxy_url, metrics_url = lines[0].split()[-1], lines[1].split()[-1]
        hop = await stack.enter_async_context(_child("hop"))
        hop_port = int(hop[0].rsplit(":", 1)[-1])
        session = await stack.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        )
        direct: list[float] = []
        proxied: list[float] = []

        async def client(pairs: int, keep: bool) -> None:
            for _ in range(pairs):
                d = await _timed(session, model_url)
                p = await _timed(session, proxy_url)
                if keep:
                    direct.append(d)
                    proxied.append(p)

        await asyncio.gather(*(client(WARMUP, False) for _ in range(concurrency)))
        before = await _scrape(session, metrics_url)
        await asyncio.gather(*(client(n, True) for n in shares(requests, concurrency)))
        reported = await _reported(session, metrics_url, before, requests)
        hops = await _hop_round_trips(hop_port, HOP_ROUND_TRIPS)
    return Figures.of(concurrency, WARMUP, direct, proxied, reported, hops)


def shares(requests: int, clients: int) -> list[int]:
    """The requests each client sends: all of them, the remainder one each to the first."""
    each, extra = divmod(requests, clients)
    return [each + (i < extra) for i in range(clients)]


async def _reported(
    session: aiohttp.ClientSession, metrics_url: str, before: dict[str, float], requests: int
) -> dict[str, float]:
    """What the metrics gained over the counted requests, once all of them are in.

    A request is recorded as its handler ends, just after the client has its
    last byte, so the last one can miss a scrape made at once: scraped again
    (for up to a second) until the count has them all.
    """
    count = f"{OVERHEAD}_count"
    for _ in range(100):
        after = await _scrape(session, metrics_url)
        reported = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
        if reported.get(count, 0.0) >= requests:
            break
        await asyncio.sleep(0.01)
    return reported


async def _timed(session: aiohttp.ClientSession, base: str) -> float:
    started = Timeline.now()
    async with session.post(f"{base}/v1/chat/completions", json=BODY) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"{base} answered {response.status}")
    return (Timeline.now() - started) / 1e9


async def _scrape(session: aiohttp.ClientSession, metrics_url: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    async with session.get(metrics_url) as response:
        text = await response.text()
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("route") != "chat_completions":
                continue
            if sample.name.endswith(("_sum", "_count")) and "le" not in sample.labels:
                part = sample.labels.get("part")
                key = sample.name if part is None else f"{sample.name}:{part}"
                sums[key] = sums.get(key, 0.0) + sample.value
    return sums


async def _hop_round_trips(port: int, count: int) -> list[float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    message = b"x" * 200
    times = []
    try:
        for _ in range(count):
            started = Timeline.now()
            writer.write(message)
            await reader.readexactly(len(message))
            times.append((Timeline.now() - started) / 1e9)
    finally:
        writer.close()
    return times[count // 10 :]  # the first ones warm up


@contextlib.asynccontextmanager
async def _child(*args: str) -> AsyncIterator[list[str]]:
    """A child process; yields its announcement lines once it listens."""
    argv = ["-m", "proxy.commands.calibrate.hop"] if args == ("hop",) else ["-m", "proxy", *args]
    process = await asyncio.create_subprocess_exec(
        sys.executable, *argv, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        while not lines or (args[0] == "serve" and not lines[-1].startswith("taxmeter: filters")):
            line = await asyncio.wait_for(process.stdout.readline(), 60)
            if not line:
                raise RuntimeError(f"{' '.join(args[:1])} did not start")
            lines.append(line.decode().strip())
        yield lines
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()
