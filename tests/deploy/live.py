"""Real processes on loopback for the live deploy test: the simulated model
server, `taxmeter serve`, Prometheus, and the compose stack's load script."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.deploy.manifests import COMPOSE
from tests.server.test_serve_cli import read_announcement

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    """A loopback port free now (Prometheus cannot be told to pick one itself)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _drain(stream: asyncio.StreamReader | None) -> None:
    """Keep reading a child's pipe, so that a chatty child never blocks on it."""
    while stream is not None and await stream.readline():
        pass


@contextlib.asynccontextmanager
async def process(*argv: str, env: dict[str, str] | None = None) -> AsyncIterator[Any]:
    child = await asyncio.create_subprocess_exec(
        *argv, env=env or ENV, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    drains: list[asyncio.Task[None]] = []
    try:
        yield child, drains
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()
        for task in drains:
            task.cancel()


@contextlib.asynccontextmanager
async def mock_upstream() -> AsyncIterator[str]:
    argv = ["-m", "proxy", "mock-upstream", "--listen", "127.0.0.1:0"]
    async with process(sys.executable, *argv, "--ttft-ms", "20", "--tokens-per-s", "800") as (
        child,
        drains,
    ):
        line = (await asyncio.wait_for(child.stdout.readline(), timeout=30)).decode()
        drains += [
            asyncio.create_task(_drain(child.stdout)),
            asyncio.create_task(_drain(child.stderr)),
        ]
        yield line.split()[-1]


@contextlib.asynccontextmanager
async def taxmeter(config: dict[str, Any], tmp: Path) -> AsyncIterator[dict[str, str]]:
    """`taxmeter serve` on ephemeral ports, tracing every request (for exemplars)."""
    path = tmp / "taxmeter.yaml"
    path.write_text(yaml.safe_dump(config))
    argv = ["-m", "proxy", "serve", "--config", str(path)]
    argv += ["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"]
    env = {**ENV, "OTEL_TRACES_EXPORTER": "console"}
    async with process(sys.executable, *argv, env=env) as (child, drains):
        where = await read_announcement(child)
        drains += [
            asyncio.create_task(_drain(child.stdout)),
            asyncio.create_task(_drain(child.stderr)),
        ]
        yield where


@contextlib.asynccontextmanager
async def prometheus(
    binary: str, target: str, rule_files: list[Path], tmp: Path
) -> AsyncIterator[str]:
    """A real Prometheus scraping ``target`` every second, evaluating the rules every second."""
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [{"job_name": "taxmeter", "static_configs": [{"targets": [target]}]}],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    argv = [
        binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--enable-feature=exemplar-storage",
    ]  # fmt: skip
    async with process(*argv) as (child, drains):
        drains += [
            asyncio.create_task(_drain(child.stdout)),
            asyncio.create_task(_drain(child.stderr)),
        ]
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session, asyncio.timeout(30):
            while True:
                assert child.returncode is None, "prometheus exited"
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{url}/-/ready") as ready:
                        if ready.status == 200:
                            break
                await asyncio.sleep(0.2)
        yield url


@contextlib.asynccontextmanager
async def load(proxy_url: str, seconds: float) -> AsyncIterator[Any]:
    """The compose stack's load script, driving mixed traffic at the proxy."""
    argv = [sys.executable, str(COMPOSE / "load.py"), "--url", proxy_url]
    argv += ["--duration", str(seconds), "--concurrency", "6", "--think-ms", "10"]
    async with process(*argv) as (child, _):
        yield child


class PromQL:
    """Prometheus's HTTP API: instant queries and label values."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    async def get(self, path: str, **params: str) -> Any:
        async with self.session.get(f"{self.url}{path}", params=params) as response:
            document = await response.json()
        assert document["status"] == "success", (path, params, document)
        return document["data"]

    async def finite_samples(self, expr: str) -> int:
        """How many samples ``expr`` returns with a finite value; an error fails."""
        data = await self.get("/api/v1/query", query=expr)
        values = [float(s["value"][1]) for s in data["result"]]
        return sum(math.isfinite(v) for v in values)


# Grafana's variables: every value (the variables' allValue) and windows that
# suit a 1 s scrape interval.
SUBSTITUTIONS = {
    "$__rate_interval": "15s",
    "$__interval": "2s",
    "$variant": ".*",
    "$route": ".*",
    "$filter": ".*",
}


def grafana_to_promql(expr: str) -> str:
    for name, value in SUBSTITUTIONS.items():
        expr = expr.replace("${" + name[1:] + "}", value).replace(name, value)
    assert "$" not in expr, f"unknown variable in {expr}"
    return expr


def alert_as_bool(expr: str) -> str:
    """An alert's condition with `bool`: 0 or 1 for every series instead of only the firing ones."""
    # Label matchers (`{a!="b"}`) are not comparisons: blank them, keeping positions.
    masked = re.sub(r"\{[^}]*\}", lambda m: "_" * len(m.group()), expr)
    comparisons = list(COMPARISON.finditer(masked))
    assert len(comparisons) == 1, f"expected one comparison in {expr}"
    end = comparisons[0].end()
    return f"{expr[:end]} bool{expr[end:]}"


COMPARISON = re.compile(r"(?<![=!<>])(>=|<=|==|!=|>|<)(?![~=])")
