"""`taxmeter report`: each filter's CPU and dollars per 1,000 requests (/stats, Prometheus)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.commands.test_report import Prometheus, drive, report
from tests.commands.test_report import start_prometheus as start_prometheus
from tests.loopback import ProxyFactory, RunningProxy

# $36 a core-hour is 1 cent a CPU second.
CONFIG: dict[str, Any] = {
    "cpu_usd_per_core_hour": 36,
    "filters": [
        {"name": "paid", "type": "synthetic", "stages": ["input"], "cost_per_call_usd": 0.0004,
         "timeout_ms": 2000, "params": {"cpu_ms": 2}},
        {"name": "pii", "type": "pii", "stages": ["input", "output"]},
    ],
}  # fmt: skip
CPU_USD_PER_SECOND = 0.01


def expected_per_1000(proxy: RunningProxy, name: str, stages: tuple[str, ...]) -> tuple[float, ...]:
    """(CPU seconds, dollars) per 1,000 requests, from the proxy's own registry."""
    requests = max(
        proxy.value("taxmeter_filter_duration_seconds_count", filter=name, stage=s,
                    variant="default")
        for s in stages
    )  # fmt: skip
    cpu = sum(
        proxy.value("taxmeter_filter_cpu_seconds_sum", filter=name, stage=s, variant="default")
        for s in stages
    )
    usd = proxy.value("taxmeter_filter_cost_usd_total", filter=name, variant="default")
    return cpu / requests * 1000, usd / requests * 1000


def row(table: str, name: str) -> list[str]:
    """The filter's row of the filters table (the first of the tables that name filters)."""
    return next(line.split() for line in table.splitlines() if line.split()[:1] == [name])


async def test_report_shows_cpu_and_dollars_per_1000_requests(
    start_proxy: ProxyFactory,
    start_prometheus: Callable[[str], Awaitable[Prometheus]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    proxy = await start_proxy(CONFIG)
    await drive(proxy, 1, concurrency=1)  # the series exist before the first scrape
    prometheus = await start_prometheus(proxy.metrics_url)
    await prometheus.wait_for("count(taxmeter_filter_cost_usd_total)", 2)
    await drive(proxy, 40)
    total = round(proxy.value("taxmeter_filter_duration_seconds_count", filter="paid",
                              stage="input", variant="default"))  # fmt: skip
    await prometheus.wait_for(
        'sum(taxmeter_filter_duration_seconds_count{filter="paid"})', float(total)
    )

    status, out, err = await report(capsys, "--proxy", proxy.metrics_url, "--json")
    assert status == 0, err
    filters = json.loads(out)["filters"]
    paid = filters["paid"]
    cpu, usd = expected_per_1000(proxy, "paid", ("input",))
    assert paid["requests"] == total == 41
    assert paid["cpu_seconds_per_1000_requests"] == pytest.approx(cpu, rel=1e-6)
    assert paid["cost_usd_per_1000_requests"] == pytest.approx(usd, rel=1e-6)
    # 2 ms of spin a request is about 2 CPU seconds per 1,000; 1,000 calls at $0.0004
    # plus those seconds at 1 cent each.
    assert cpu == pytest.approx(2.0, abs=1.0)
    assert usd == pytest.approx(0.4 + cpu * CPU_USD_PER_SECOND, rel=1e-6)
    pii_cpu, pii_usd = expected_per_1000(proxy, "pii", ("input", "output"))
    assert filters["pii"]["cpu_seconds_per_1000_requests"] == pytest.approx(pii_cpu, rel=1e-6)
    assert filters["pii"]["cost_usd_per_1000_requests"] == pytest.approx(pii_usd, rel=1e-6)
    assert pii_usd == pytest.approx(pii_cpu * CPU_USD_PER_SECOND, rel=1e-6)

    status, table, err = await report(capsys, "--proxy", proxy.metrics_url)
    assert status == 0, err
    print(table)  # the output docs/report.md quotes; see it with -s
    assert "CPU ms /1k req" in table
    assert "USD /1k req" in table
    paid_row = row(table, "paid")
    assert float(paid_row[-2]) == pytest.approx(cpu * 1000, abs=0.001)  # milliseconds
    assert float(paid_row[-1]) == pytest.approx(usd, abs=0.000001)

    # Prometheus: increase() of the CPU histogram's sum and of the dollar counter.
    argv = ("--prometheus", prometheus.url, "--window", "5m", "--json")
    status, out, err = await report(capsys, *argv)
    assert status == 0, err
    paid = json.loads(out)["filters"]["paid"]
    # From the first scrape on (the request before it, extrapolated or not), so per
    # 1,000 requests is a ratio of two increases over the same scrapes.
    assert total - 1 <= paid["requests"] <= total
    assert paid["cost_usd_per_1000_requests"] == pytest.approx(usd, rel=0.05)
    assert paid["cpu_seconds_per_1000_requests"] == pytest.approx(cpu, rel=0.25)
