"""`serve --workers 2`: two processes on one port, and metrics that count both."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from proxy.measure.config_gauges import build_version
from proxy.sim.model_server import make_mock_app
from tests.loopback import FAST_MODEL, ServerFactory
from tests.server.test_serve_cli import read_announcement, start_serve
from tests.upstream.test_failures import free_port

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (s.labels, float(s.value))
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


def sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


async def test_two_workers_share_the_port_and_the_metrics(
    model: TestServer, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    config = tmp_path / "taxmeter.yaml"
    config.write_text("filters:\n  - {name: pii, type: pii, budget_ms: 10}\n")
    first_sha = hashlib.sha256(config.read_bytes()).hexdigest()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "serve", "--workers", "2", "--config", str(config),
        "--upstream", str(model.make_url("")).rstrip("/"),
        "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
    )  # fmt: skip
    try:
        where = await read_announcement(process)
        proxy = where["proxy"].split()[0]
        assert "(2 workers)" in where["proxy"]
        n = 60
        # A new connection per request, so the kernel spreads them over the workers.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(n):
                async with session.post(f"{proxy}/v1/chat/completions", json=CHAT) as response:
                    assert response.status == 200
            async with session.get(where["metrics"]) as response:
                metrics = await response.text()
            base = where["metrics"].removesuffix("/metrics")
            async with session.get(f"{base}/readyz") as response:
                assert response.status == 200
            async with session.get(f"{base}/stats") as response:
                assert response.status == 200
                stats = await response.json()
        labels = {"route": "chat_completions", "variant": "default"}
        assert sample(metrics, "taxmeter_requests_total", outcome="ok", **labels) == n
        assert sample(metrics, "taxmeter_latency_tax_seconds_count", **labels) == n
        assert sample(metrics, "taxmeter_filter_duration_seconds_count", filter="pii",
                      stage="input", variant="default") == n  # fmt: skip
        assert sample(metrics, "taxmeter_inflight_requests") == 0
        # Info gauges read 1 with two workers (their live max, not their sum).
        assert samples(metrics, "taxmeter_config_info") == [({"config_sha256": first_sha}, 1)]
        assert samples(metrics, "taxmeter_build_info") == [({"version": build_version()}, 1)]
        assert samples(metrics, "taxmeter_filter_budget_seconds") == [({"filter": "pii"}, 0.01)]
        # /stats merges both workers' reservoirs: every request is in it once.
        assert stats["workers"] == 2
        default = stats["variants"]["default"]
        assert default["requests"] == n
        assert len(default["samples"]["request_duration_seconds"]) == n
        assert default["samples"]["outcome"] == ["ok"] * n
        assert stats["filters"]["pii"]["requests"] == n
        # Both workers served: each wrote its own counter file.
        pids = {re.sub(r"\D", "", f.name) for f in metrics_dir.glob("counter_*.db")}
        assert len(pids) == 2

        # SIGHUP reaches every worker: the new config (no filters) applies everywhere.
        config.write_text("filters: []\n")
        process.send_signal(signal.SIGHUP)
        await asyncio.sleep(0.5)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
            for _ in range(20):
                async with s.post(f"{proxy}/v1/chat/completions", json=CHAT) as response:
                    assert response.status == 200
            async with s.get(where["metrics"]) as response:
                metrics = await response.text()
            async with s.get(f"{base}/stats") as response:
                stats = await response.json()
        assert sample(metrics, "taxmeter_requests_total", outcome="ok", **labels) == n + 20
        # Both workers reloaded: the new hash alone, and no budget left (no filters).
        new_sha = hashlib.sha256(config.read_bytes()).hexdigest()
        assert samples(metrics, "taxmeter_config_info") == [({"config_sha256": new_sha}, 1)]
        assert samples(metrics, "taxmeter_filter_budget_seconds") == []
        assert stats["variants"]["default"]["requests"] == n + 20
        assert stats["filters"]["pii"]["requests"] == n
        assert sample(metrics, "taxmeter_filter_duration_seconds_count", filter="pii",
                      stage="input", variant="default") == n  # fmt: skip

        # A worker that dies takes its reservoir along; its replacement starts empty.
        ports = {f.name for f in metrics_dir.glob("stats-*.port")}
        assert len(ports) == 2
        # A worker's own listener answers a path it has not in JSON, as the others do.
        own = (metrics_dir / sorted(ports)[0]).read_text()
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{own}/x") as response:
            assert (response.status, response.content_type) == (404, "application/json")
            assert (await response.json())["error"]["code"] == "not_found"
        os.kill(int(re.sub(r"\D", "", sorted(ports)[0])), signal.SIGKILL)
        for _ in range(100):
            await asyncio.sleep(0.1)
            now = {f.name for f in metrics_dir.glob("stats-*.port")}
            if len(now) == 2 and now != ports:
                break
        async with aiohttp.ClientSession() as s, s.get(f"{base}/stats") as response:
            stats = await response.json()
        assert stats["workers"] == 2
        assert 0 < stats["variants"]["default"]["requests"] < n + 20

        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 40) == 0
        assert list(metrics_dir.glob("stats-*.port")) == []
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.stderr is not None
    errors = (await process.stderr.read()).decode()
    assert "Traceback" not in errors, errors


async def test_workers_do_not_outlive_a_killed_supervisor(
    model: TestServer, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "serve", "--workers", "2",
        "--upstream", str(model.make_url("")).rstrip("/"),
        "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
    )  # fmt: skip
    await read_announcement(process)
    workers = [int(re.sub(r"\D", "", f.name)) for f in metrics_dir.glob("stats-*.port")]
    assert len(workers) == 2
    process.kill()  # no chance to stop its workers itself
    await process.wait()
    for _ in range(100):
        alive = [pid for pid in workers if _alive(pid)]
        if not alive:
            break
        await asyncio.sleep(0.1)
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert alive == []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) is gone too.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


async def test_with_workers_the_supervisor_s_readyz_reflects_the_model_server(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "taxmeter.yaml"
    config.write_text("readiness: {interval_s: 0.2}\n")
    process = await start_serve(
        "--workers", "2", "--config", str(config), "--upstream", f"http://127.0.0.1:{port}"
    )
    try:
        where = await read_announcement(process)
        readyz = where["metrics"].removesuffix("/metrics") + "/readyz"
        async with aiohttp.ClientSession() as session:
            async with session.get(readyz) as response:
                assert response.status == 503
                assert (await response.json())["reason"] == "upstream unreachable"
            await aiohttp_server(make_mock_app(FAST_MODEL), port=port)
            async with asyncio.timeout(10):
                while True:
                    async with session.get(readyz) as response:
                        if response.status == 200:
                            break
                    await asyncio.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), timeout=30)
    assert process.stderr is not None
    errors = (await process.stderr.read()).decode()
    assert f"the model server http://127.0.0.1:{port} is unreachable" in errors, errors
