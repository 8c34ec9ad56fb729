"""The soak: minutes of mixed traffic with faults against a real `taxmeter serve`.

    python bench/soak.py --minutes 10 [--concurrency 8] [--seed 1] [--json]

A fault-injecting model server (tests/reliability/fault_upstream.py) runs in
this process; the proxy runs as a child process in front of it, with the
default filters and a concurrency limit. Clients send a fixed mix of normal
requests and streams, upstream faults (resets, 5xx, malformed answers,
silence, hangs), bad requests, blocked prompts and clients that leave
mid-stream. The proxy's RSS and open descriptors (from /proc) and its asyncio
task count (``taxmeter_asyncio_tasks`` on /metrics) are read after a warm-up
and again after the traffic stops. Exit 1 when they did not come back flat.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.reliability.fault_upstream import fault_upstream  # noqa: E402

CONFIG = """\
max_concurrent_requests: 256
upstream: {read_timeout_s: 0.5, total_timeout_s: 10}
filters:
  - {name: denylist, type: denylist, stages: [input, stream], params: {words: [forbidden]}}
  - {name: pii, type: pii, stages: [input, output], params: {action: redact}}
"""

# (kind, weight): what one client request does.
MIX = [
    ("normal_json", 30), ("normal_stream", 15), ("long_stream", 10), ("blocked_prompt", 5),
    ("invalid_json", 4), ("client_leaves_mid_stream", 4), ("reset_before_headers", 4),
    ("reset_mid_body", 4), ("reset_mid_stream", 4), ("server_error", 4), ("malformed_json", 4),
    ("malformed_sse", 4), ("silent_stream", 2), ("hang", 2), ("slow_trickle", 4),
]  # fmt: skip
FLAT_TASKS = 2  # the end may differ from the start by a timer or two
FLAT_FDS = 4
FLAT_RSS = 1.25


@dataclass
class Snapshot:
    rss_kib: int
    fds: int
    tasks: int


@dataclass
class Report:
    seconds: float
    requests: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    by_answer: dict[str, int] = field(default_factory=dict)  # what the clients saw
    outcomes: dict[str, float] = field(default_factory=dict)  # what the proxy counted
    start: Snapshot | None = None
    end: Snapshot | None = None
    flat: bool = False


def snapshot(pid: int, metrics: str) -> Snapshot:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    tasks = re.search(r"^taxmeter_asyncio_tasks (\S+)$", metrics, re.M)
    return Snapshot(rss, fds, int(float(tasks.group(1))) if tasks else -1)


def outcomes(metrics: str) -> dict[str, float]:
    totals: dict[str, float] = {}
    for m in re.finditer(r'^taxmeter_requests_total\{.*outcome="(\w+)".*\} (\S+)$', metrics, re.M):
        totals[m.group(1)] = totals.get(m.group(1), 0.0) + float(m.group(2))
    return totals


async def one(session: aiohttp.ClientSession, url: str, kind: str) -> str:
    stream = "stream" in kind or kind in ("malformed_sse", "silent_stream")
    content = "say something forbidden" if kind == "blocked_prompt" else "mail me at a@b.example"
    body = {"model": "m", "stream": stream, "messages": [{"role": "user", "content": content}]}
    fault = kind if kind not in ("normal_json", "normal_stream", "blocked_prompt") else "normal"
    fault = "long_stream" if kind == "client_leaves_mid_stream" else fault
    headers = {"x-fault": fault}
    data = b"{not json" if kind == "invalid_json" else json.dumps(body).encode()
    headers["Content-Type"] = "application/json"
    async with session.post(f"{url}/v1/chat/completions", data=data, headers=headers) as response:
        if kind == "client_leaves_mid_stream":
            await response.content.readline()
            response.close()
            return "left"
        raw = await response.read()
    if response.status != 200:
        return str(response.status)
    if b'"error"' in raw:
        return "200+error_event"
    return "200"


async def client(url: str, until: float, rng: random.Random, report: Report) -> None:
    kinds, weights = zip(*MIX, strict=True)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        while time.monotonic() < until:
            kind = rng.choices(kinds, weights)[0]
            try:
                answer = await one(session, url, kind)
            except (aiohttp.ClientError, TimeoutError) as exc:
                answer = type(exc).__name__
            report.requests += 1
            report.by_kind[kind] = report.by_kind.get(kind, 0) + 1
            report.by_answer[answer] = report.by_answer.get(answer, 0) + 1


async def start_proxy(upstream: str, config: Path) -> tuple[asyncio.subprocess.Process, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "serve", "--config", str(config), "--upstream", upstream,
        "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--log-level", "error",
        stdout=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    assert process.stdout is not None
    urls: dict[str, str] = {}
    async with asyncio.timeout(60):
        while len(urls) < 2:
            line = (await process.stdout.readline()).decode()
            if not line:
                raise RuntimeError("the proxy did not start")
            name, _, rest = line.removeprefix("taxmeter: ").partition(" ")
            if name in ("proxy", "metrics"):
                urls[name] = rest.strip().removesuffix("/metrics")
    return process, urls["proxy"], urls["metrics"]


async def soak(seconds: float, concurrency: int, seed: int, config: Path) -> Report:
    report = Report(seconds)
    warmup = min(30.0, seconds / 6)
    async with fault_upstream() as upstream, aiohttp.ClientSession() as scraper:
        process, url, metrics_url = await start_proxy(upstream, config)

        async def scrape() -> str:
            async with scraper.get(f"{metrics_url}/metrics") as response:
                return await response.text()

        try:
            until = time.monotonic() + seconds
            rng = random.Random(seed)
            clients = [
                asyncio.ensure_future(client(url, until, random.Random(rng.random()), report))
                for _ in range(concurrency)
            ]
            await asyncio.sleep(warmup)
            report.start = snapshot(process.pid, await scrape())
            await asyncio.gather(*clients)
            await asyncio.sleep(2)  # in-flight requests and closed connections settle
            text = await scrape()
            report.end = snapshot(process.pid, text)
            report.outcomes = outcomes(text)
        finally:
            process.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 30)
    s, e = report.start, report.end
    assert s is not None
    assert e is not None
    report.flat = (
        e.tasks <= s.tasks + FLAT_TASKS
        and e.fds <= s.fds + FLAT_FDS
        and e.rss_kib <= s.rss_kib * FLAT_RSS
    )
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp, "soak.yaml")
        config.write_text(CONFIG)
        report = asyncio.run(soak(args.minutes * 60, args.concurrency, args.seed, config))
    if args.json:
        print(json.dumps(asdict(report), indent=2))
    else:
        print(f"{report.requests} requests in {report.seconds:.0f} s")
        print("by kind:", dict(sorted(report.by_kind.items())))
        print("clients saw:", dict(sorted(report.by_answer.items())))
        print("proxy counted:", report.outcomes)
        print(f"start: {report.start}\nend:   {report.end}\nflat: {report.flat}")
    return 0 if report.flat else 1


if __name__ == "__main__":
    sys.exit(main())
