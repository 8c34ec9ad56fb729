"""A load generator in its own process, so that its clock does not stall with the proxy's loop.

    python -m tests.server.load_client URL VARIANT CLIENTS SECONDS

Prints ``ready`` once connected, waits for a line on stdin, then keeps
CLIENTS requests in flight for SECONDS and prints one JSON line:
``{"count": N, "mean_s": ...}``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

import aiohttp
import orjson
import uvloop

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}


async def main(url: str, variant: str, clients: int, seconds: float) -> None:
    # The token of the test proxies (tests.loopback.ADMIN_TOKEN).
    headers = {"X-Taxmeter-Variant": variant, "X-Taxmeter-Admin-Token": "test-admin-token"}
    latencies: list[float] = []
    async with aiohttp.ClientSession() as session:

        async def one() -> float:
            started = time.perf_counter()
            async with session.post(f"{url}/v1/chat/completions", json=CHAT, headers=headers) as r:
                await r.read()
                assert r.status == 200, r.status
            return time.perf_counter() - started

        await asyncio.gather(*(one() for _ in range(clients)))  # connections open
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        end = time.perf_counter() + seconds

        async def client() -> None:
            while time.perf_counter() < end:
                latencies.append(await one())

        await asyncio.gather(*(client() for _ in range(clients)))
    print(orjson.dumps({"count": len(latencies), "mean_s": statistics.fmean(latencies)}).decode())


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
