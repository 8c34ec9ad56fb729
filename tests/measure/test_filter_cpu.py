"""A filter's CPU: its own code's, not the time it waits nor other requests' work."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.loopback import ProxyFactory, RunningProxy, post_json

CHAT = {"model": "m", "messages": [{"role": "user", "content": "echo: hello"}]}


def synthetic(name: str, **params: Any) -> dict[str, Any]:
    return {"name": name, "type": "synthetic", "stages": ["input"], "params": params,
            "timeout_ms": 2000}  # fmt: skip


def per_request(proxy: RunningProxy, metric: str, name: str) -> float:
    labels = {"filter": name, "stage": "input", "variant": "default"}
    count = proxy.value(f"{metric}_count", **labels)
    assert count > 0
    return proxy.value(f"{metric}_sum", **labels) / count


@pytest.mark.parametrize("offloaded", [False, True], ids=["on the loop", "offloaded"])
async def test_a_sleeping_filter_costs_no_cpu_and_a_spinning_one_its_spin(
    start_proxy: ProxyFactory, offloaded: bool
) -> None:
    proxy = await start_proxy({"filters": [
        synthetic("sleepy", wall_ms=20, cpu_bound=offloaded),
        synthetic("spinny", cpu_ms=5, cpu_bound=offloaded),
    ]})  # fmt: skip
    # Concurrent requests: one's spin runs while another's sleep awaits, on the same thread.
    results = await asyncio.gather(*(post_json(f"{proxy.url}/v1/chat/completions", CHAT)
                                     for _ in range(4)))  # fmt: skip
    assert [status for status, _, _ in results] == [200] * 4
    assert per_request(proxy, "taxmeter_filter_cpu_seconds", "sleepy") < 0.0015
    # All of the spin counted; on a loaded host a little more, never sleepy's 20 ms.
    assert 0.0049 <= per_request(proxy, "taxmeter_filter_cpu_seconds", "spinny") < 0.0095
    assert per_request(proxy, "taxmeter_filter_duration_seconds", "sleepy") >= 0.020
    assert per_request(proxy, "taxmeter_filter_duration_seconds", "spinny") >= 0.005
