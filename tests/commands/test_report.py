"""`taxmeter report` against a real proxy: the A/B comparison of a 20 ms filter.

Half the traffic runs a filter that costs 20 ms, half has it disabled; the
report must find the 20 ms difference at p50 with an interval that excludes
0, from the proxy's /stats and from a real Prometheus scraping it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import sys
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy import cli
from tests.loopback import ProxyFactory, RunningProxy

AB_CONFIG = {
    "filters": [
        # A timeout well past its 20 ms: on a loaded host a call of the default
        # 100 ms timed out (2 of 99 in one full run), an error the report counted.
        {
            "name": "slow",
            "type": "synthetic",
            "stages": ["input"],
            "timeout_ms": 2000,
            "params": {"wall_ms": 20},
        }
    ],
    "variants": {"with_slow": {"weight": 50}, "without": {"weight": 50, "disable": ["slow"]}},
}
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
TAX_P50 = ("with_slow", "latency_tax_seconds", "p50")


async def drive(
    proxy: RunningProxy, requests: int, concurrency: int = 4, stream: bool = False
) -> None:
    """``requests`` chats, ``concurrency`` at a time, every one answered 200."""
    queue = iter(range(requests))
    body = {**CHAT, "stream": stream}

    async def worker(session: aiohttp.ClientSession) -> None:
        for _ in queue:
            async with session.post(f"{proxy.url}/v1/chat/completions", json=body) as response:
                assert response.status == 200, await response.text()
                await response.read()

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    await proxy.settle()


async def report(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``taxmeter report`` in-process (off the loop, which serves the proxy)."""
    capsys.readouterr()
    status = await asyncio.to_thread(cli.main, ["report", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


async def report_process(*argv: str) -> tuple[int, str, str]:
    """Run ``python -m proxy report`` as a user would."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "report", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def comparison(document: dict[str, Any], variant: str, metric: str, stat: str) -> dict[str, Any]:
    comparisons: list[dict[str, Any]] = document["comparisons"]
    [found] = [
        c
        for c in comparisons
        if (c["variant"], c["metric"], c["statistic"]) == (variant, metric, stat)
    ]
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def answered(proxy: RunningProxy, variant: str) -> int:
    labels = {"route": "chat_completions", "variant": variant, "outcome": "ok"}
    return round(proxy.value("taxmeter_requests_total", **labels))


@dataclass
class Prometheus:
    url: str

    async def value(self, expr: str) -> float | None:
        """The single value of an instant query, None while it has no result."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.url}/api/v1/query", params={"query": expr}) as response,
        ):
            result = (await response.json())["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    async def wait_for(self, expr: str, expected: float) -> None:
        async with asyncio.timeout(15):
            while await self.value(expr) != expected:  # noqa: ASYNC110 - another process
                await asyncio.sleep(0.2)


@pytest.fixture
async def start_prometheus(tmp_path: Path) -> AsyncIterator[Callable[[str], Awaitable[Prometheus]]]:
    """Start a real Prometheus (Debian's package) scraping a metrics URL every second."""
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is missing; .ci/run installs Debian's prometheus package")
        pytest.skip("prometheus not installed (Debian package prometheus)")
    processes: list[asyncio.subprocess.Process] = []
    log_path = tmp_path / "prometheus.log"

    async def start(metrics_url: str) -> Prometheus:
        target = urllib.parse.urlsplit(metrics_url).netloc
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "scrape_configs:\n"
            "  - job_name: taxmeter\n"
            "    scrape_interval: 1s\n"
            f"    static_configs: [{{targets: ['{target}']}}]\n"
        )
        port = free_port()
        with log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
                stdout=log, stderr=log,
            )  # fmt: skip
        processes.append(process)
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session, asyncio.timeout(15):
            while True:
                assert process.returncode is None, log_path.read_text()
                try:
                    async with session.get(f"{url}/-/ready") as response:
                        if response.status == 200:
                            return Prometheus(url)
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.1)

    yield start
    for process in processes:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def test_report_from_the_proxy_finds_the_20ms_filter(
    start_proxy: ProxyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    proxy = await start_proxy(AB_CONFIG)
    await drive(proxy, 200)

    argv = ("--proxy", proxy.metrics_url, "--baseline", "without", "--seed", "7")
    status, out, err = await report(capsys, *argv, "--json")
    assert status == 0, err
    document = json.loads(out)
    assert set(document) == {
        "source", "ci_method", "baseline", "variants", "comparisons", "marginal", "capability",
        "filters",
    }  # fmt: skip
    assert document["marginal"] == []  # no ablation variant
    assert (document["source"], document["ci_method"]) == ("proxy", "bootstrap")
    assert document["baseline"] == "without"
    variants = document["variants"]
    assert set(variants) == {"with_slow", "without"}
    assert variants["with_slow"]["requests"] + variants["without"]["requests"] == 200
    for figures in variants.values():
        assert 70 <= figures["requests"] <= 130, variants
        # Nothing was streamed: no time to first token, reported as null.
        assert figures["ttft_seconds"] is None
        assert figures["ttft_tax_seconds"] is None
        assert set(figures["latency_tax_seconds"]) == {"p50", "p95", "p99", "mean"}

    tax_p50 = comparison(document, *TAX_P50)
    lo, hi = tax_p50["ci95"]
    # The filter really costs a little over its nominal 20 ms (the runner's
    # bookkeeping, the timer's last tick), and 100 requests a variant pin the
    # p50 down to well under a millisecond: the interval need not hold 20.000 ms
    # itself, but it must lie around the estimate, from 18 ms (a sleep never
    # ends early) to 28 ms: the sleep shares the test's loop, and on a loaded
    # two-core host (load 5) its wake-ups came late, to 22.7 ms. Counted twice,
    # the filter would read 40 ms.
    assert 0.018 <= lo <= tax_p50["difference"] <= hi <= 0.028, tax_p50
    # Tax and total latency at four statistics; no TTFT to compare.
    assert len(document["comparisons"]) == 8
    assert comparison(document, "with_slow", "request_duration_seconds", "mean")["ci95"][0] > 0

    slow = document["filters"]["slow"]
    assert slow["requests"] == variants["with_slow"]["requests"]
    assert 0.0199 <= slow["mean_cost_seconds"] <= 0.028, slow  # a mean: a busy host adds
    assert (slow["block_rate"], slow["redact_rate"], slow["error_rate"]) == (0.0, 0.0, 0.0)
    assert (slow["observed_block"], slow["observed_redact"]) == (0, 0)
    # One call a request (input only): the calls' percentiles, from /stats' recent calls.
    assert 0.0199 <= slow["latency_per_call"]["p50"] <= 0.028, slow
    assert (slow["canary_checks"], slow["catch_rate"], slow["false_positive_rate"]) == (
        0, None, None
    )  # fmt: skip

    status, table, err = await report(capsys, *argv)
    assert status == 0, err
    print(table)  # the real output docs/report.md quotes; see it with -s
    assert "baseline: without (chosen with --baseline)" in table
    rows = {tuple(line.split()[:3]) for line in table.splitlines()}
    for name in ("with_slow", "without"):
        assert (name, "50", str(variants[name]["requests"])) in rows, table
    [tax_row] = [line for line in table.splitlines() if line.split()[:4] == ["with_slow",
                 "latency", "tax", "p50"]]  # fmt: skip
    assert tax_row.rstrip().endswith("*"), tax_row  # the CI excludes 0
    # The filters table, then the table of its calls and canaries.
    filter_row, calls_row = [line.split() for line in table.splitlines()
                             if line.split()[:1] == ["slow"]]  # fmt: skip
    assert 19.9 <= float(filter_row[2]) <= 28.0, filter_row  # late wake-ups: 22.7 seen
    assert calls_row[1:] == [f"{slow['latency_per_call'][s] * 1e3:.3f}" for s in ("p50", "p99")] \
        + ["0", "-", "-"]  # fmt: skip


async def test_report_from_prometheus_reads_the_histograms(
    start_proxy: ProxyFactory,
    start_prometheus: Callable[[str], Awaitable[Prometheus]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    proxy = await start_proxy(AB_CONFIG)
    # increase() counts from the first scrape that saw a series, and a histogram
    # series is born with its first request: one request per variant comes first.
    while min(answered(proxy, "with_slow"), answered(proxy, "without")) < 1:
        await drive(proxy, 1, concurrency=1)
    prometheus = await start_prometheus(proxy.metrics_url)
    await prometheus.wait_for("count(taxmeter_latency_tax_seconds_count)", 2)
    await drive(proxy, 200)
    counts = {name: answered(proxy, name) for name in ("with_slow", "without")}
    await prometheus.wait_for("sum(taxmeter_requests_total)", sum(counts.values()))

    argv = ("--prometheus", prometheus.url, "--window", "5m", "--seed", "7")
    status, out, err = await report(capsys, *argv, "--json", "--baseline", "without")
    assert status == 0, err
    document = json.loads(out)
    assert (document["source"], document["ci_method"]) == ("prometheus", "histogram-bootstrap")
    variants = document["variants"]
    # Evaluated at the newest scrape, so the counts are exact, not extrapolated.
    assert {name: v["requests"] for name, v in variants.items()} == counts
    assert all(70 <= n <= 131 for n in counts.values()), counts
    tax_p50 = comparison(document, *TAX_P50)
    lo, hi = tax_p50["ci95"]
    # Both p50s are interpolated inside their buckets (10-25 ms and under 1 ms).
    assert 0.005 <= lo <= tax_p50["difference"] <= hi <= 0.030, tax_p50
    slow = document["filters"]["slow"]
    assert slow["requests"] == counts["with_slow"]
    assert 0.0199 <= slow["mean_cost_seconds"] <= 0.028, slow  # a mean: a busy host adds
    # The calls' p50 from taxmeter_filter_duration_seconds: inside the 10-25 ms bucket.
    assert 0.010 <= slow["latency_per_call"]["p50"] <= 0.025, slow

    status, table, err = await report(capsys, *argv)
    assert status == 0, err
    print(table)
    assert "APPROXIMATE: computed from histogram buckets" in table
    expected = max(sorted(counts), key=counts.__getitem__)
    assert f"baseline: {expected} (the most requests; Prometheus does not know the weights)" \
        in table  # fmt: skip


async def test_routes_streams_and_the_default_baseline(
    start_proxy: ProxyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    proxy = await start_proxy(AB_CONFIG)
    await drive(proxy, 20)
    await drive(proxy, 30, stream=True)

    status, _, err = await report(capsys, "--proxy", proxy.metrics_url, "--route", "embeddings")
    assert status == 1
    assert "no variant has requests" in err

    argv = ("--proxy", proxy.metrics_url, "--route", "all", "--json", "--resamples", "200")
    status, out, err = await report(capsys, *argv)
    assert status == 0, err
    document = json.loads(out)
    assert sum(v["requests"] for v in document["variants"].values()) == 50
    # Equal weights: the first variant of the config is the baseline.
    assert document["baseline"] == "with_slow"
    # Only the streamed requests have a time to first token; the input filter delays it.
    ttft_tax = comparison(document, "without", "ttft_tax_seconds", "p50")
    lo, hi = ttft_tax["ci95"]
    # A 20 ms filter; 10 ms of slack for a busy host delaying some wake-ups
    # (seen to 28.2 ms at load 5 on two cores), 3 ms below.
    assert -0.030 <= lo <= ttft_tax["difference"] <= hi <= -0.017, ttft_tax


async def test_errors_exit_1_naming_the_url_or_2_for_an_unknown_baseline(
    start_proxy: ProxyFactory,
) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    status, out, err = await report_process("--proxy", nobody)
    assert (status, out) == (1, "")
    assert f"{nobody}/stats: unreachable" in err

    status, _, err = await report_process("--prometheus", nobody, "--window", "5m")
    assert status == 1
    assert nobody in err

    proxy = await start_proxy(AB_CONFIG)
    # The proxy's own listener is not its metrics listener: /stats goes to the model (404).
    status, _, err = await report_process("--proxy", proxy.url)
    assert status == 1
    assert f"{proxy.url}/stats" in err

    # No traffic yet: the variants are listed but none has data.
    status, _, err = await report_process("--proxy", proxy.metrics_url)
    assert status == 1
    assert "no variant has requests" in err

    await drive(proxy, 10)
    status, out, err = await report_process("--proxy", proxy.metrics_url, "--baseline", "nope")
    assert (status, out) == (2, "")
    assert "unknown baseline 'nope'; the variants are: with_slow, without" in err

    status, _, err = await report_process("--proxy", proxy.metrics_url, "--window", "5m")
    assert status == 2
    assert "--window applies to --prometheus only" in err

    status, _, err = await report_process("--proxy", proxy.metrics_url, "--route", "chat")
    assert status == 2
    assert "expected 'all' or some of" in err
