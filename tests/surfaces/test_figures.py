"""Every surface's streams are measured alike: TTFT, its tax, the reconciliation, Server-Timing."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from tests.proxy.conftest import ProxyFactory, RunningProxy

PROMPT = "echo: write to jane@example.com about it"
# Per surface: its route label, path and a streamed request for the simulated model.
SURFACES: dict[str, tuple[str, dict[str, Any]]] = {
    "chat_completions": ("/v1/chat/completions", {
        "model": "m", "stream": True, "messages": [{"role": "user", "content": PROMPT}]}),
    "completions": ("/v1/completions", {"model": "m", "stream": True, "prompt": PROMPT}),
    "responses": ("/v1/responses", {"model": "m", "stream": True, "input": PROMPT}),
    "messages": ("/v1/messages", {"model": "m", "stream": True, "max_tokens": 64,
                                  "messages": [{"role": "user", "content": PROMPT}]}),
}  # fmt: skip
PII = {"filters": [{"name": "pii", "type": "pii"}]}  # stages left out: the stream too


async def stream_with_trailers(proxy: RunningProxy, path: str, body: dict[str, Any]) -> bytes:
    """A raw streamed request asking for trailers (Server-Timing at the end)."""
    data = orjson.dumps(body)
    reader, writer = await asyncio.open_connection(proxy.server.host, proxy.server.port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        + data
    )
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return raw


def histogram(proxy: RunningProxy, name: str, route: str) -> tuple[float, float]:
    labels = {"route": route, "variant": "default"}
    return proxy.value(f"{name}_count", **labels), proxy.value(f"{name}_sum", **labels)


@pytest.mark.parametrize("route", SURFACES)
async def test_a_stream_of_every_surface_has_its_ttft_tax_and_timings(
    start_proxy: ProxyFactory, route: str
) -> None:
    path, body = SURFACES[route]
    proxy = await start_proxy(PII)
    raw = await stream_with_trailers(proxy, path, body)
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"jane@example.com" not in rest
    assert b"[EMAIL]" in rest
    trailer = rest[rest.rindex(b"\r\n0\r\n") + 2 :].decode()
    for part in ("filter-pii;desc=stream", "ttft;dur=", "upstream-ttft;dur=", "tax;dur="):
        assert part in trailer, trailer
    for _ in range(50):  # recorded once the response is done
        if histogram(proxy, "taxmeter_request_duration_seconds", route)[0] == 1:
            break
        await asyncio.sleep(0.02)
    assert histogram(proxy, "taxmeter_time_to_first_token_seconds", route)[0] == 1
    assert histogram(proxy, "taxmeter_upstream_time_to_first_token_seconds", route)[0] == 1
    assert histogram(proxy, "taxmeter_ttft_tax_seconds", route)[0] == 1
    _, total = histogram(proxy, "taxmeter_request_duration_seconds", route)
    _, upstream = histogram(proxy, "taxmeter_upstream_duration_seconds", route)
    _, tax = histogram(proxy, "taxmeter_latency_tax_seconds", route)
    assert total == pytest.approx(upstream + tax, abs=1e-6)
    labels = {"route": route, "variant": "default", "outcome": "ok"}
    assert proxy.value("taxmeter_requests_total", **labels) == 1
