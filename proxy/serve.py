"""Running taxmeter: the listeners, the embedded model server, signals, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

from aiohttp import web
from prometheus_client import CollectorRegistry

from proxy.app import build_proxy_app
from proxy.config import Config, HostPort
from proxy.metrics_app import Readiness, build_metrics_app

# In-flight requests (long generations) get this long to finish on SIGTERM;
# Kubernetes' default grace period is 30 s.
SHUTDOWN_GRACE_S = 25.0


async def start_site(app: web.Application, where: HostPort) -> web.AppRunner:
    """Start an app on HOST:PORT; the runner is returned for cleanup."""
    runner = web.AppRunner(
        app, access_log=None, handler_cancellation=True, shutdown_timeout=SHUTDOWN_GRACE_S
    )
    await runner.setup()
    await web.TCPSite(runner, where.host, where.port, reuse_address=True).start()
    return runner


def bound_url(runner: web.AppRunner) -> str:
    """The http:// URL a runner's first site actually listens on (port 0 resolved)."""
    assert runner.addresses, "the runner has no listening socket"
    host, port = runner.addresses[0][:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextlib.asynccontextmanager
async def embedded_model_server() -> AsyncIterator[str]:
    """The simulated model server, in a child process so it does not share our CPU."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "mock-upstream", "--listen", "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        url = line.decode().strip().rsplit(" ", 1)[-1]
        if not url.startswith("http://"):
            raise RuntimeError("the simulated model server did not start")
        yield url
    finally:
        if process.returncode is None:
            process.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), timeout=5)
            if process.returncode is None:
                process.kill()
                await process.wait()


async def run_proxy(config: Config, announce: Callable[[str], None]) -> None:
    """Serve until SIGINT or SIGTERM; starts the simulated model server if no upstream."""
    async with contextlib.AsyncExitStack() as stack:
        if config.upstream.url is None:
            url = await stack.enter_async_context(embedded_model_server())
            config = replace(config, upstream=replace(config.upstream, url=url))
            model_note = f"{url} (simulated model server: no upstream.url configured)"
        else:
            model_note = config.upstream.url
        registry = CollectorRegistry()
        readiness = Readiness()
        proxy_app = build_proxy_app(config, registry, readiness)
        metrics_runner = await start_site(
            build_metrics_app(registry, readiness), config.metrics_listen
        )
        stack.push_async_callback(metrics_runner.cleanup)
        proxy_runner = await start_site(proxy_app, config.listen)
        stack.push_async_callback(proxy_runner.cleanup)

        filters = ", ".join(f"{f.name} ({f.mode})" for f in config.filters) or "none"
        announce(f"taxmeter: proxy    {bound_url(proxy_runner)}")
        announce(f"taxmeter: metrics  {bound_url(metrics_runner)}/metrics")
        announce(f"taxmeter: model    {model_note}")
        announce(f"taxmeter: filters  {filters}")

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        readiness.ready = False
        announce("taxmeter: shutting down (draining in-flight requests)")
