"""What the proxy adds, seen from a client, beside what the proxy says it adds.

Starts the simulated model server and a proxy (empty filter chain unless
--config is given) as separate processes, sends the same non-streamed chat
request directly and through the proxy, interleaved, one at a time, and
prints the client-measured added latency (median, p90, p99) beside the
proxy's self-reported tax and overhead (means, from its /metrics).

    python bench/overhead.py [--requests 1000] [--config FILE] [--no-pin]

With two or more cores, the proxy is pinned to the last core and the client
and model server to the others, so they do not compete for one core.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

BODY = {"model": "mock-model", "messages": [{"role": "user", "content": "echo: hello"}]}


async def start(*args: str) -> tuple[asyncio.subprocess.Process, list[str]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", *args, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    lines = [(await asyncio.wait_for(process.stdout.readline(), 30)).decode().strip()]
    if args[0] == "serve":
        while not lines[-1].startswith("taxmeter: filters"):
            lines.append((await asyncio.wait_for(process.stdout.readline(), 30)).decode().strip())
    return process, lines


def pin(pid: int, cores: set[int]) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(pid, cores)


def metric_sums(text: str) -> dict[str, float]:
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("route") == "chat_completions" and sample.name.endswith(
                ("_sum", "_count")
            ):
                sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
    return sums


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(requests: int, config: dict[str, Any], pin_cores: bool) -> None:
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    model, model_lines = await start(
        "mock-upstream", "--listen", "127.0.0.1:0", "--ttft-ms", "0", "--tokens-per-s", "1e6"
    )
    model_url = model_lines[0].rsplit(" ", 1)[-1]
    config.setdefault("upstream", {})["url"] = model_url
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(config, handle)
    proxy, proxy_lines = await start(
        "serve", "--config", handle.name, "--listen", "127.0.0.1:0",
        "--metrics-listen", "127.0.0.1:0",
    )  # fmt: skip
    proxy_url = proxy_lines[0].split()[-1]
    metrics_url = proxy_lines[1].split()[-1]
    if pin_cores and len(cores) >= 2:
        pin(proxy.pid, {cores[-1]})
        pin(model.pid, set(cores[:-1]))
        pin(os.getpid(), set(cores[:-1]))
    try:
        async with aiohttp.ClientSession() as session:

            async def timed(base: str) -> float:
                started = time.perf_counter_ns()
                async with session.post(f"{base}/v1/chat/completions", json=BODY) as response:
                    await response.read()
                    assert response.status == 200, response.status
                return (time.perf_counter_ns() - started) / 1e6

            for _ in range(50):  # warm up connections, caches and code paths
                await timed(model_url)
                await timed(proxy_url)
            async with session.get(metrics_url) as response:
                before = metric_sums(await response.text())
            direct, proxied = [], []
            for _ in range(requests):
                direct.append(await timed(model_url))
                proxied.append(await timed(proxy_url))
            async with session.get(metrics_url) as response:
                after = metric_sums(await response.text())
    finally:
        for process in (proxy, model):
            process.terminate()
            await process.wait()
        os.unlink(handle.name)

    def mean_ms(name: str) -> float:
        count = after[f"{name}_count"] - before.get(f"{name}_count", 0.0)
        return (after[f"{name}_sum"] - before.get(f"{name}_sum", 0.0)) / count * 1000

    added = [p - d for p, d in zip(proxied, direct, strict=True)]
    print(f"requests: {requests} direct + {requests} proxied, interleaved, one at a time")
    print(f"filters: {proxy_lines[3].split('filters', 1)[1].strip()}")
    print(f"direct      median {statistics.median(direct):7.3f} ms")
    print(f"proxied     median {statistics.median(proxied):7.3f} ms")
    print(
        f"added (client-measured)  median {statistics.median(added):.3f} ms  "
        f"p90 {percentile(added, 0.9):.3f} ms  p99 {percentile(added, 0.99):.3f} ms  "
        f"mean {statistics.fmean(added):.3f} ms"
    )
    tax = mean_ms("taxmeter_latency_tax_seconds")
    print(f"self-reported  tax mean {tax:.3f} ms  "
          f"overhead mean {mean_ms('taxmeter_proxy_overhead_seconds'):.3f} ms")  # fmt: skip
    print(f"residual (client-measured mean - self-reported tax mean) "
          f"{statistics.fmean(added) - tax:.3f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--config", help="proxy config (default: no filters)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    args = parser.parse_args()
    config = yaml.safe_load(Path(args.config).read_text()) if args.config else None
    asyncio.run(run(args.requests, config or {}, not args.no_pin))


if __name__ == "__main__":
    main()
