"""Time to first token with and without the proxy, many streams at once.

Starts the simulated model server (150 ms to the first token, 50 tokens/s)
and a proxy (empty filter chain unless --config is given), then runs rounds
of --streams concurrent streamed chat completions of --tokens tokens,
alternating direct and through the proxy, and prints the client-measured
time to the first content (median, p99) of each, their difference, and the
proxy's self-reported TTFT tax.

    python bench/stream_ttft.py [--streams 64] [--tokens 100] [--rounds 5] [--config FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml
from harness import mean_between, metric_sums, model_and_proxy, percentile


async def first_token_ms(session: aiohttp.ClientSession, base: str, tokens: int) -> float:
    body = {
        "model": "mock-model",
        "stream": True,
        "max_tokens": tokens,
        "messages": [{"role": "user", "content": "Tell me a story."}],
    }
    started = time.perf_counter_ns()
    first: float | None = None
    async with session.post(f"{base}/v1/chat/completions", json=body) as response:
        assert response.status == 200, response.status
        async for line in response.content:
            if first is None and line.startswith(b"data: {"):
                choices = orjson.loads(line[6:]).get("choices") or [{}]
                if choices[0].get("delta", {}).get("content"):
                    first = (time.perf_counter_ns() - started) / 1e6
    assert first is not None
    return first


async def run(args: argparse.Namespace, config: dict[str, Any]) -> None:
    connector = aiohttp.TCPConnector(limit=0)
    async with (
        model_and_proxy(config, [], not args.no_pin) as setup,
        aiohttp.ClientSession(connector=connector) as session,
    ):

        async def wave(base: str) -> list[float]:
            waves = [first_token_ms(session, base, args.tokens) for _ in range(args.streams)]
            return list(await asyncio.gather(*waves))

        await wave(setup.model_url)  # warm up
        await wave(setup.proxy_url)
        async with session.get(setup.metrics_url) as response:
            before = metric_sums(await response.text())
        direct: list[float] = []
        proxied: list[float] = []
        for _ in range(args.rounds):
            direct += await wave(setup.model_url)
            proxied += await wave(setup.proxy_url)
        async with session.get(setup.metrics_url) as response:
            after = metric_sums(await response.text())

    ttft_tax = mean_between(before, after, "taxmeter_ttft_tax_seconds") * 1000
    print(f"{args.rounds} rounds of {args.streams} concurrent streams of {args.tokens} tokens, "
          f"direct and proxied alternately; filters: {setup.filters}")  # fmt: skip
    for name, values in (("direct ", direct), ("proxied", proxied)):
        print(f"{name} TTFT  median {statistics.median(values):8.3f} ms  "
              f"p99 {percentile(values, 0.99):8.3f} ms")  # fmt: skip
    print(f"added TTFT (client-measured)  median "
          f"{statistics.median(proxied) - statistics.median(direct):.3f} ms  p99 "
          f"{percentile(proxied, 0.99) - percentile(direct, 0.99):.3f} ms")  # fmt: skip
    print(f"self-reported TTFT tax mean {ttft_tax:.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--config", help="proxy config (default: no filters)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    args = parser.parse_args()
    config = yaml.safe_load(Path(args.config).read_text()) if args.config else None
    asyncio.run(run(args, config or {}))


if __name__ == "__main__":
    main()
