"""What the process holds: memory, file descriptors and asyncio tasks, read at scrape time.

A leak (a connection never closed, a task never awaited) shows as one of
these growing while traffic is flat; the soak (bench/soak.py) watches them.
``process_*`` are prometheus-client's standard process metrics (Linux);
``taxmeter_asyncio_tasks`` counts the tasks alive on the proxy's event loop.
"""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Gauge, ProcessCollector


def register_process_gauges(registry: CollectorRegistry) -> None:
    """Read on the event loop, as the metrics listener's handler runs there."""
    ProcessCollector(registry=registry)
    tasks = Gauge(
        "taxmeter_asyncio_tasks", "Tasks alive on the proxy's event loop.", registry=registry
    )
    tasks.set_function(lambda: len(asyncio.all_tasks()))
