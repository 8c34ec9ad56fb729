"""Shutdown closes every resource of the proxy app, even when one fails to close."""

from __future__ import annotations

from tests.judge.sample_filters import Closable
from tests.loopback import ProxyFactory, post_json

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
CLOSABLE = {"name": "c", "type": "tests.judge.sample_filters:Closable", "stages": ["input"]}


async def test_an_access_log_that_cannot_be_flushed_leaves_the_filters_closed(
    start_proxy: ProxyFactory,
) -> None:
    # The kernel's full device: opening and buffering succeed, every flush fails.
    proxy = await start_proxy({"filters": [CLOSABLE], "telemetry": {"access_log": "/dev/full"}})
    ((closable, *_),) = proxy.apps.runtime.current.filters.values()
    status, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
    assert status == 200
    await proxy.server.runner.cleanup()  # the log's failure is warned of, not raised
    assert closable in Closable.closed
