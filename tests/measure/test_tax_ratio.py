"""The tax ratio covers the requests the model answered; blocked and refused ones are apart."""

from __future__ import annotations

import asyncio

import pytest

from tests.loopback import ProxyFactory, RunningProxy, post_json

ROUTE = {"route": "chat_completions", "variant": "default"}
NOPE = {"filters": [{"name": "f", "type": "denylist", "params": {"words": ["nope"]}}]}
URL = "/v1/chat/completions"


def chat(content: str) -> dict[str, object]:
    return {"model": "m", "messages": [{"role": "user", "content": content}]}


async def recorded(proxy: RunningProxy, requests: int) -> None:
    """Wait until ``requests`` requests are recorded (each after its last byte went out)."""
    for _ in range(100):
        if proxy.value("taxmeter_request_duration_seconds_count", **ROUTE) == requests:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not {requests} requests recorded")


async def test_blocked_and_refused_requests_stay_out_of_the_ratio(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy(NOPE)
    for body, status in ((chat("nope"), 400), (b"{not json", 400), (chat("nope nope"), 400)):
        assert (await post_json(f"{proxy.url}{URL}", body))[0] == status
    await recorded(proxy, 3)
    assert proxy.value("taxmeter_requests_total", **ROUTE, outcome="blocked") == 2
    assert proxy.value("taxmeter_requests_total", **ROUTE, outcome="client_error") == 1
    # All tax, each of them: in the ratio they would read 1.0.
    assert proxy.value("taxmeter_latency_tax_ratio_count", **ROUTE) == 0
    blocked = {**ROUTE, "outcome": "blocked"}
    refused = {**ROUTE, "outcome": "client_error"}
    assert proxy.value("taxmeter_unanswered_duration_seconds_count", **blocked) == 2
    assert proxy.value("taxmeter_unanswered_duration_seconds_count", **refused) == 1
    # Their time is still the tax they cost, and still counted as such.
    assert proxy.value("taxmeter_latency_tax_seconds_count", **ROUTE) == 3
    assert proxy.value("taxmeter_unanswered_duration_seconds_sum", **blocked) + proxy.value(
        "taxmeter_unanswered_duration_seconds_sum", **refused
    ) == pytest.approx(proxy.value("taxmeter_latency_tax_seconds_sum", **ROUTE), abs=1e-9)

    status, _, _ = await post_json(f"{proxy.url}{URL}", chat("echo: hello"))
    assert status == 200
    await recorded(proxy, 4)
    assert proxy.value("taxmeter_latency_tax_ratio_count", **ROUTE) == 1
    ratio = proxy.value("taxmeter_latency_tax_ratio_sum", **ROUTE)
    tax = proxy.value("taxmeter_latency_tax_seconds_sum", **ROUTE)
    total = proxy.value("taxmeter_request_duration_seconds_sum", **ROUTE)
    answered = {**ROUTE, "outcome": "ok"}
    # The answered request's own tax over its own total: the sums less the three above.
    unanswered_s = proxy.value("taxmeter_unanswered_duration_seconds_sum", **blocked)
    unanswered_s += proxy.value("taxmeter_unanswered_duration_seconds_sum", **refused)
    assert ratio == pytest.approx((tax - unanswered_s) / (total - unanswered_s), rel=1e-6)
    assert 0 < ratio < 1
    assert proxy.value("taxmeter_unanswered_duration_seconds_count", **answered) == 0
