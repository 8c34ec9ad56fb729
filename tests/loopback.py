"""Real servers on loopback: the simulated model server, an echo server, the proxy."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict
from prometheus_client import CollectorRegistry

from proxy.config.schema import HostPort, parse_config
from proxy.measure.tracing_setup import TracingSetup
from proxy.server.app import Apps, build_apps
from proxy.server.metrics_app import Readiness
from proxy.server.sites import bound_url, start_site
from proxy.sim.model_server import MockSettings, make_mock_app

ServerFactory = Callable[..., Awaitable[TestServer]]

# The admin token test proxies read from TAXMETER_ADMIN_TOKEN (when no environ
# is given): a request that carries it may choose its variant, with CHOOSABLE.
ADMIN_TOKEN = "test-admin-token"
CHOOSABLE: dict[str, Any] = {
    "assignment": {"allow_override": True},
    "admin": {"listen": "127.0.0.1:0"},
}


def variant_headers(variant: str) -> dict[str, str]:
    """The headers that choose a variant on a proxy started with CHOOSABLE."""
    return {"X-Taxmeter-Variant": variant, "X-Taxmeter-Admin-Token": ADMIN_TOKEN}


# Fast enough that tests are quick, slow enough to look like a model.
FAST_MODEL = MockSettings(ttft_ms=5.0, tokens_per_s=2000.0, max_tokens=16)


@dataclass
class Listening:
    """Where a proxy started the way `taxmeter serve` starts it listens."""

    runner: web.AppRunner

    @property
    def url(self) -> str:
        return bound_url(self.runner)

    @property
    def host(self) -> str:
        return str(self.runner.addresses[0][0])

    @property
    def port(self) -> int:
        return int(self.runner.addresses[0][1])


@dataclass
class RunningProxy:
    """A proxy listening on loopback, with its own registry."""

    server: Listening
    metrics_server: TestServer
    admin_server: TestServer | None
    registry: CollectorRegistry
    apps: Apps

    @property
    def readiness(self) -> Readiness:
        return self.apps.readiness

    @property
    def admin_url(self) -> str:
        assert self.admin_server is not None, "no admin listener"
        return str(self.admin_server.make_url("")).rstrip("/")

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def metrics_url(self) -> str:
        return str(self.metrics_server.make_url("")).rstrip("/")

    async def settle(self) -> None:
        """Wait for the deferred observations of requests already answered.

        A client may have its whole answer before the handler's ``finally``
        hands the observation over, so the handlers are waited for too (the
        in-flight gauge falls in the same step as the hand-over).
        """
        async with asyncio.timeout(5):
            while (  # noqa: ASYNC110 - a gauge and a set of tasks, no event
                self.value("taxmeter_inflight_requests") or self.apps.observer.pending
            ):
                await asyncio.sleep(0.005)

    def value(self, name: str, **labels: str) -> float:
        """A sample's value in the registry (0 when absent)."""
        return self.registry.get_sample_value(name, labels) or 0.0


ProxyFactory = Callable[..., Awaitable[RunningProxy]]


@pytest.fixture
async def model(aiohttp_server: ServerFactory) -> TestServer:
    """The simulated model server, fast."""
    return await aiohttp_server(make_mock_app(FAST_MODEL))


@pytest.fixture
async def start_proxy(
    aiohttp_server: ServerFactory, model: TestServer
) -> AsyncIterator[ProxyFactory]:
    """Start a proxy from a config mapping (the YAML's shape); upstream defaults to `model`.

    The proxy app listens through the same site helper as `taxmeter serve`
    (behind the wire clock).
    """
    runners: list[web.AppRunner] = []

    async def start(
        config: dict[str, Any] | None = None,
        upstream: str | None = None,
        config_path: str | None = None,
        environ: dict[str, str] | None = None,
        tracing: TracingSetup | None = None,
    ) -> RunningProxy:
        parsed = parse_config(config or {}).with_overrides(
            upstream=upstream or str(model.make_url("")).rstrip("/")
        )
        registry = CollectorRegistry()
        if environ is None:
            environ = {"TAXMETER_ADMIN_TOKEN": ADMIN_TOKEN}
        apps = build_apps(parsed, registry, config_path, environ, tracing)
        runner = await start_site(apps.proxy, HostPort("127.0.0.1", 0))
        runners.append(runner)
        metrics_server = await aiohttp_server(apps.metrics)
        admin_server = await aiohttp_server(apps.admin) if apps.admin is not None else None
        return RunningProxy(Listening(runner), metrics_server, admin_server, registry, apps)

    yield start
    for runner in runners:
        await runner.cleanup()


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "path_qs": request.raw_path,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body_b64": base64.b64encode(body).decode(),
        },
        headers={"X-Echo": "yes", "Connection": "keep-alive, X-Secret-Hop", "X-Secret-Hop": "1"},
    )


@pytest.fixture
async def echo_server(aiohttp_server: ServerFactory) -> TestServer:
    """An upstream that answers with what it received (method, path, headers, body)."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", _echo)
    return await aiohttp_server(app)


def echoed_body(payload: dict[str, Any]) -> bytes:
    return base64.b64decode(payload["body_b64"])


def echoed_headers(payload: dict[str, Any]) -> dict[str, str]:
    return {k.lower(): v for k, v in payload["headers"]}


@dataclass
class RawServer:
    """A TCP server that answers every connection with a scripted behaviour."""

    url: str
    connections: int = 0


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[..., Awaitable[RawServer]]]:
    """Start loopback TCP servers whose handler misbehaves in a chosen way."""
    servers: list[asyncio.Server] = []

    async def start(
        behaviour: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    ) -> RawServer:
        state = RawServer(url="")

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            state.connections += 1
            # A peer that went away, or the test ending, is how these behaviours stop.
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await behaviour(reader, writer)
            writer.close()

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        state.url = f"http://127.0.0.1:{port}"
        return state

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def read_request_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


async def post_json(
    url: str, body: dict[str, Any] | bytes, headers: dict[str, str] | None = None
) -> tuple[int, CIMultiDict[str], bytes]:
    """POST with a fresh client; (status, headers, body)."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=data, headers=all_headers) as response,
    ):
        return response.status, CIMultiDict(response.headers), await response.read()
