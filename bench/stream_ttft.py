"""Time to first token with and without the proxy, many streams at once.

Starts the simulated model server (150 ms to the first token, 50 tokens/s)
and a proxy (empty filter chain unless --config or --holdback is given), then
runs rounds of --streams concurrent streams of --tokens tokens on one API
surface, alternating direct and through the proxy, and prints the
client-measured time to the first text (median, p99) of each, their
difference, and the proxy's self-reported TTFT tax. ``--holdback auto`` (or
a number) judges the stream with pii at that holdback, to compare what the
stream judge adds:

    python bench/stream_ttft.py [--surface chat|completions|responses|messages]
        [--streams 64] [--tokens 100] [--rounds 5] [--config FILE | --holdback auto|N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml
from harness import mean_between, metric_sums, model_and_proxy, percentile

PROMPT = "Tell me a story."


def _chat_text(event: dict[str, Any]) -> bool:
    choices = event.get("choices") or [{}]
    return bool(choices[0].get("delta", {}).get("content"))


def _completions_text(event: dict[str, Any]) -> bool:
    choices = event.get("choices") or [{}]
    return bool(choices[0].get("text"))


def _responses_text(event: dict[str, Any]) -> bool:
    return event.get("type") == "response.output_text.delta" and bool(event.get("delta"))


def _messages_text(event: dict[str, Any]) -> bool:
    delta = event.get("delta") if event.get("type") == "content_block_delta" else None
    return isinstance(delta, dict) and bool(delta.get("text"))


# Per surface: its path, a streamed request of N tokens, whether an event carries text.
Request = Callable[[int], dict[str, Any]]
SURFACES: dict[str, tuple[str, Request, Callable[[dict[str, Any]], bool]]] = {
    "chat": ("/v1/chat/completions", lambda n: {
        "model": "mock-model", "stream": True, "max_tokens": n,
        "messages": [{"role": "user", "content": PROMPT}]}, _chat_text),
    "completions": ("/v1/completions", lambda n: {
        "model": "mock-model", "stream": True, "max_tokens": n, "prompt": PROMPT},
        _completions_text),
    "responses": ("/v1/responses", lambda n: {
        "model": "mock-model", "stream": True, "max_output_tokens": n, "input": PROMPT},
        _responses_text),
    "messages": ("/v1/messages", lambda n: {
        "model": "mock-model", "stream": True, "max_tokens": n,
        "messages": [{"role": "user", "content": PROMPT}]}, _messages_text),
}  # fmt: skip


# Each surface's route label, whose TTFT tax the proxy reports.
ROUTES = {s: "chat_completions" if s == "chat" else s for s in SURFACES}


async def first_token_ms(
    session: aiohttp.ClientSession, base: str, tokens: int, surface: str
) -> float:
    path, request, carries_text = SURFACES[surface]
    started = time.perf_counter_ns()
    first: float | None = None
    async with session.post(f"{base}{path}", json=request(tokens)) as response:
        assert response.status == 200, response.status
        async for line in response.content:
            text = (
                first is None
                and line.startswith(b"data: {")
                and carries_text(orjson.loads(line[6:]))
            )
            if text:
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
            waves = [
                first_token_ms(session, base, args.tokens, args.surface)
                for _ in range(args.streams)
            ]
            return list(await asyncio.gather(*waves))

        await wave(setup.model_url)  # warm up
        await wave(setup.proxy_url)
        async with session.get(setup.metrics_url) as response:
            before = metric_sums(await response.text(), ROUTES[args.surface])
        direct: list[float] = []
        proxied: list[float] = []
        for _ in range(args.rounds):
            direct += await wave(setup.model_url)
            proxied += await wave(setup.proxy_url)
        async with session.get(setup.metrics_url) as response:
            after = metric_sums(await response.text(), ROUTES[args.surface])

    ttft_tax = mean_between(before, after, "taxmeter_ttft_tax_seconds") * 1000
    print(f"{args.surface}: {args.rounds} rounds of {args.streams} concurrent streams of "
          f"{args.tokens} tokens, direct and proxied alternately; filters: {setup.filters}"
          f"{'' if args.holdback is None else f' (holdback_chars: {args.holdback})'}")  # fmt: skip
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
    parser.add_argument("--surface", choices=sorted(SURFACES), default="chat")
    parser.add_argument("--config", help="proxy config (default: no filters)")
    parser.add_argument(
        "--holdback", help="judge the stream with pii at this holdback_chars (auto or a number)"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    args = parser.parse_args()
    config = yaml.safe_load(Path(args.config).read_text()) if args.config else None
    if args.holdback is not None:
        holdback = args.holdback if args.holdback == "auto" else int(args.holdback)
        config = {"filters": [{"name": "pii", "type": "pii", "stages": ["stream"],
                               "stream": {"holdback_chars": holdback}}]}  # fmt: skip
    asyncio.run(run(args, config or {}))


if __name__ == "__main__":
    main()
