"""What the proxy adds, seen from a client, beside what the proxy says it adds.

Starts the simulated model server and a proxy (empty filter chain unless
--config is given) as separate processes, sends the same non-streamed chat
request directly and through the proxy, interleaved, one at a time, and
prints the client-measured added latency (median, p90, p99) beside the
proxy's self-reported tax and overhead (means, from its /metrics).

    python bench/overhead.py [--requests 1000] [--config FILE] [--no-pin]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from harness import mean_between, metric_sums, model_and_proxy, percentile

BODY = {"model": "mock-model", "messages": [{"role": "user", "content": "echo: hello"}]}


async def run(requests: int, config: dict[str, Any], pin_cores: bool) -> None:
    model_args = ["--ttft-ms", "0", "--tokens-per-s", "1e6"]
    async with (
        model_and_proxy(config, model_args, pin_cores) as setup,
        aiohttp.ClientSession() as session,
    ):

        async def timed(base: str) -> float:
            started = time.perf_counter_ns()
            async with session.post(f"{base}/v1/chat/completions", json=BODY) as response:
                await response.read()
                assert response.status == 200, response.status
            return (time.perf_counter_ns() - started) / 1e6

        for _ in range(50):  # warm up connections, caches and code paths
            await timed(setup.model_url)
            await timed(setup.proxy_url)
        async with session.get(setup.metrics_url) as response:
            before = metric_sums(await response.text())
        direct, proxied = [], []
        for _ in range(requests):
            direct.append(await timed(setup.model_url))
            proxied.append(await timed(setup.proxy_url))
        async with session.get(setup.metrics_url) as response:
            after = metric_sums(await response.text())

    added = [p - d for p, d in zip(proxied, direct, strict=True)]
    tax = mean_between(before, after, "taxmeter_latency_tax_seconds") * 1000
    overhead = mean_between(before, after, "taxmeter_proxy_overhead_seconds") * 1000
    print(f"requests: {requests} direct + {requests} proxied, interleaved, one at a time")
    print(f"filters: {setup.filters}")
    print(f"direct      median {statistics.median(direct):7.3f} ms")
    print(f"proxied     median {statistics.median(proxied):7.3f} ms")
    print(
        f"added (client-measured)  median {statistics.median(added):.3f} ms  "
        f"p90 {percentile(added, 0.9):.3f} ms  p99 {percentile(added, 0.99):.3f} ms  "
        f"mean {statistics.fmean(added):.3f} ms"
    )
    print(f"self-reported  tax mean {tax:.3f} ms  overhead mean {overhead:.3f} ms")
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
