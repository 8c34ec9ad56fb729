"""/readyz reflects the model server, /healthz never does: a real proxy, real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from typing import Any

import aiohttp
import uvloop
from aiohttp.test_utils import TestServer

from proxy.sim.model_server import make_mock_app
from proxy.upstream.reachability import Reachability
from tests.loopback import FAST_MODEL, ProxyFactory, RawServer, ServerFactory, post_json
from tests.upstream.test_failures import free_port

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@contextlib.contextmanager
def black_hole() -> Iterator[int]:
    """A port whose connects hang: its accept queue is full and it never accepts."""
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port: int = listener.getsockname()[1]
        filler.connect(("127.0.0.1", port))  # the one place in the queue
        yield port


async def get(url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()


async def test_readyz_says_why_while_the_model_server_is_down_and_recovers(
    start_proxy: ProxyFactory, aiohttp_server: ServerFactory
) -> None:
    port = free_port()
    proxy = await start_proxy({"readiness": {"interval_s": 0.2}}, f"http://127.0.0.1:{port}")
    status, body = await get(f"{proxy.metrics_url}/readyz")
    assert status == 503
    assert body["status"] == "not ready"
    assert body["reason"] == "upstream unreachable"
    assert body["upstream"] == f"http://127.0.0.1:{port}"
    assert body["error"] == f"cannot connect to 127.0.0.1:{port}: Connection refused"
    assert datetime.fromisoformat(body["since"]).tzinfo is not None
    # Liveness is the process alone: a model server that is down restarts nothing.
    assert await get(f"{proxy.metrics_url}/healthz") == (200, {"status": "ok"})
    # Still down: the outage is dated from its start, not from the latest check.
    await asyncio.sleep(0.3)
    again = await get(f"{proxy.metrics_url}/readyz")
    assert (again[0], again[1]["since"]) == (503, body["since"])

    await aiohttp_server(make_mock_app(FAST_MODEL), port=port)
    async with asyncio.timeout(10):
        while (ready := await get(f"{proxy.metrics_url}/readyz"))[0] != 200:  # noqa: ASYNC110 - polls a server
            await asyncio.sleep(0.05)
    assert ready[1] == {"status": "ready", "upstream": f"http://127.0.0.1:{port}"}


async def test_with_readiness_upstream_off_the_sidecar_is_ready_regardless(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy({"readiness": {"upstream": False}}, f"http://127.0.0.1:{free_port()}")
    assert await get(f"{proxy.metrics_url}/readyz") == (200, {"status": "ready"})


async def test_readyz_is_503_while_starting_or_draining_whatever_the_upstream(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy()
    assert (await get(f"{proxy.metrics_url}/readyz"))[0] == 200
    proxy.readiness.ready = False  # as on shutdown
    status, body = await get(f"{proxy.metrics_url}/readyz")
    assert (status, body["reason"]) == (503, "starting or shutting down")


async def test_probes_cost_the_model_server_one_connect_per_interval(
    start_proxy: ProxyFactory, raw_server: Callable[..., Awaitable[RawServer]]
) -> None:
    async def until_closed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    upstream = await raw_server(until_closed)
    proxy = await start_proxy({"readiness": {"interval_s": 60}}, upstream.url)
    answers = await asyncio.gather(*(get(f"{proxy.metrics_url}/readyz") for _ in range(20)))
    assert {status for status, _ in answers} == {200}
    async with asyncio.timeout(5):
        while upstream.connections == 0:  # noqa: ASYNC110 - a count on a test server
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # room for any further connect to arrive
    assert upstream.connections == 1


async def test_a_refused_request_makes_the_proxy_unready_at_once(
    start_proxy: ProxyFactory, model: TestServer
) -> None:
    # A long interval: only the request's own failed connect can change the answer.
    proxy = await start_proxy({"readiness": {"interval_s": 3600}})
    assert (await get(f"{proxy.metrics_url}/readyz"))[0] == 200
    await model.close()
    status, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
    assert status == 502
    status, body = await get(f"{proxy.metrics_url}/readyz")
    assert (status, body["reason"]) == (503, "upstream unreachable")
    assert "Connection refused" in body["error"]


async def test_readyz_answers_within_its_timeout_when_connects_hang(
    start_proxy: ProxyFactory,
) -> None:
    with black_hole() as port:
        proxy = await start_proxy({"readiness": {"timeout_s": 0.2}}, f"http://127.0.0.1:{port}")
        async with asyncio.timeout(10):  # a hang fails here, however slow the host
            status, body = await get(f"{proxy.metrics_url}/readyz")
    assert (status, body["error"]) == (503, f"cannot connect to 127.0.0.1:{port}: timed out")


@contextlib.contextmanager
def listening(host: str = "127.0.0.1") -> Iterator[int]:
    """A port that accepts connects (the kernel completes them; nobody need accept)."""
    with socket.socket() as listener:
        listener.bind((host, 0))
        listener.listen(8)
        port: int = listener.getsockname()[1]
        yield port


async def test_what_the_pool_heard_is_the_answer_until_the_interval_ends() -> None:
    with listening() as port:
        reachability = Reachability(f"http://127.0.0.1:{port}", interval_s=3600, timeout_s=1)
        reachability.refused("cannot connect to 127.0.0.1: Connection refused")
        # The port accepts: a probe would find it up. The pool's word stands instead.
        first = await reachability.check()
        assert (first.reachable, first.error) == (
            False,
            "cannot connect to 127.0.0.1: Connection refused",
        )
        assert abs(first.since - time.time()) < 60
        reachability.refused("cannot connect to 127.0.0.1: No route to host")
        again = await reachability.check()
        # The latest failure says why; the outage is dated from its first.
        assert (again.error, again.since) == (
            "cannot connect to 127.0.0.1: No route to host",
            first.since,
        )
    # The port refuses now, and a probe would say so; the pool's connect stands.
    reachability.connected()
    assert (await reachability.check()).reachable


async def test_the_probe_connects_to_the_model_server_s_own_host() -> None:
    # 127.0.0.2 is loopback too, but nothing listens on 127.0.0.1 at this port.
    with listening("127.0.0.2") as port:
        reachability = Reachability(f"http://127.0.0.2:{port}", interval_s=3600, timeout_s=1)
        assert (await reachability.check()).reachable


def test_a_probe_still_in_flight_when_the_loop_ends_goes_quietly() -> None:
    # A proxy stopped while /readyz waits on a hanging connect: the loop's end
    # cancels the probe, and what hears of its end must not fail on that.
    errors: list[dict[str, Any]] = []

    async def ask_and_give_up(port: int) -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(context))
        reachability = Reachability(f"http://127.0.0.1:{port}", interval_s=3600, timeout_s=30)
        with contextlib.suppress(TimeoutError):  # the caller gives up; the probe goes on
            await asyncio.wait_for(reachability.check(), 0.1)

    with black_hole() as port, asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(ask_and_give_up(port))
    assert errors == []
