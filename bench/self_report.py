"""What taxmeter says about itself during a measured run: its mean overhead, from /metrics."""

from __future__ import annotations

from aiohttp import ClientSession
from prometheus_client.parser import text_string_to_metric_families

_OVERHEAD = "taxmeter_proxy_overhead_seconds"


async def overhead_totals(metrics_url: str) -> tuple[float, float]:
    """(sum in seconds, count) of the proxy overhead over every route and variant."""
    async with ClientSession() as session, session.get(metrics_url) as response:
        text = await response.text()
    total = count = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != _OVERHEAD:
            continue
        for sample in family.samples:
            if sample.name == f"{_OVERHEAD}_sum":
                total += sample.value
            elif sample.name == f"{_OVERHEAD}_count":
                count += sample.value
    return total, count


def mean_ms(before: tuple[float, float], after: tuple[float, float]) -> float | None:
    """The mean overhead of the requests between two readings, in ms."""
    count = after[1] - before[1]
    return (after[0] - before[0]) / count * 1000 if count > 0 else None
