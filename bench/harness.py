"""What the benchmark scripts share: the model server and proxy as child processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families


@dataclass
class Setup:
    model_url: str
    proxy_url: str
    metrics_url: str
    filters: str


async def _start(*args: str) -> tuple[asyncio.subprocess.Process, list[str]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", *args, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    lines = [(await asyncio.wait_for(process.stdout.readline(), 30)).decode().strip()]
    if args[0] == "serve":
        while not lines[-1].startswith("taxmeter: filters"):
            lines.append((await asyncio.wait_for(process.stdout.readline(), 30)).decode().strip())
    return process, lines


@contextlib.asynccontextmanager
async def model_and_proxy(
    config: dict[str, Any], model_args: list[str], pin_cores: bool
) -> AsyncIterator[Setup]:
    """The simulated model server and a proxy in front of it, each its own process.

    With two or more cores the proxy gets the last core to itself, and the
    model server and this (client) process the others.
    """
    model, model_lines = await _start("mock-upstream", "--listen", "127.0.0.1:0", *model_args)
    model_url = model_lines[0].rsplit(" ", 1)[-1]
    config = {**config, "upstream": {**config.get("upstream", {}), "url": model_url}}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(config, handle)
    try:
        proxy, lines = await _start(
            "serve", "--config", handle.name, "--listen", "127.0.0.1:0",
            "--metrics-listen", "127.0.0.1:0",
        )  # fmt: skip
    except BaseException:
        model.terminate()
        raise
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if pin_cores and len(cores) >= 2:
        os.sched_setaffinity(proxy.pid, {cores[-1]})
        os.sched_setaffinity(model.pid, set(cores[:-1]))
        os.sched_setaffinity(0, set(cores[:-1]))
    try:
        yield Setup(model_url, lines[0].split()[-1], lines[1].split()[-1],
                    lines[-1].split("filters", 1)[1].strip())  # fmt: skip
    finally:
        for process in (proxy, model):
            process.terminate()
            await process.wait()
        os.unlink(handle.name)


def metric_sums(text: str, route: str = "chat_completions") -> dict[str, float]:
    """Each histogram's _sum and _count for one route, summed over the other labels."""
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("route") == route and sample.name.endswith(("_sum", "_count")):
                sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
    return sums


def mean_between(before: dict[str, float], after: dict[str, float], name: str) -> float:
    """The mean of a histogram over the observations made between two scrapes."""
    count = after.get(f"{name}_count", 0.0) - before.get(f"{name}_count", 0.0)
    total = after.get(f"{name}_sum", 0.0) - before.get(f"{name}_sum", 0.0)
    return total / count if count else float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
