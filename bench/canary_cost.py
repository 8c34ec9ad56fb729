"""What the canary itself costs: CPU per check and the share of a core it takes.

    python bench/canary_cost.py [--config FILE] [--rounds 3]

Builds the config's filters and chains as the proxy does (without --config:
the built-in default, denylist and pii), then judges every item of its
canary dataset (without a canary section: the packaged prompt set) through
proxy.control.canary's check, the one the background task runs. Reported per
check (every filter of every variant, at the configured stages, metrics
included): the thread's CPU time and the wall time, and at the config's
``interval_s`` the share of one core the canary uses. One untimed pass
first, so that a filter's first-use work is not counted.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import uvloop
from prometheus_client import CollectorRegistry

from proxy.config.canary import parse_canary
from proxy.config.schema import load_config
from proxy.control.canary import Canary
from proxy.control.runtime import Runtime
from proxy.measure.canary_metrics import CanaryMetrics


async def measure(config_path: str | None, rounds: int) -> list[str]:
    config = load_config(config_path)
    if config.canary is None:
        config = replace(config, canary=parse_canary({}))
    canary = config.canary
    assert canary is not None
    runtime = Runtime(config)
    runner = Canary(runtime, CanaryMetrics(CollectorRegistry()))
    snapshot = runtime.acquire()
    names = ", ".join(spec.name for spec in config.filters)
    lines = []
    try:
        for item in canary.items:
            await runner.check(snapshot, canary, item)
        for _ in range(rounds):
            cpu, wall = time.thread_time(), time.perf_counter()
            for item in canary.items:
                await runner.check(snapshot, canary, item)
            cpu = (time.thread_time() - cpu) / len(canary.items)
            wall = (time.perf_counter() - wall) / len(canary.items)
            share = cpu / canary.interval_s
            lines.append(
                f"{len(snapshot.chains)} variant(s), filters {names}: "
                f"{cpu * 1e6:.0f} µs CPU, {wall * 1e6:.0f} µs wall per check; "
                f"every {canary.interval_s:g} s: {share:.5%} of a core"
            )
    finally:
        runtime.release(snapshot)
        await runtime.aclose()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", metavar="FILE", help="YAML config (default: built-in)")
    parser.add_argument("--rounds", type=int, default=3, help="timed passes over the dataset")
    args = parser.parse_args()
    for line in uvloop.run(measure(args.config, args.rounds)):
        print(line)


if __name__ == "__main__":
    main()
