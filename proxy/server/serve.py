"""Running taxmeter: the listeners, the embedded model server, signals, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

from prometheus_client import CollectorRegistry

from proxy.config.readiness import ReadinessConfig
from proxy.config.schema import Config, HostPort
from proxy.exchange.route_gate import describe
from proxy.formats.shown_url import shown_url
from proxy.judge.build_notice import Notify
from proxy.measure.heap import freeze_startup_heap
from proxy.measure.tracing_setup import tracing_from_env
from proxy.server.app import build_apps
from proxy.server.sites import bound_url, start_site
from proxy.server.workers import run_supervisor
from proxy.upstream.reachability import Reachability

log = logging.getLogger("taxmeter")


@contextlib.asynccontextmanager
async def embedded_model_server() -> AsyncIterator[str]:
    """The simulated model server, in a child process so it does not share our CPU.

    Its stdin is a pipe from us that we never write to: when we end, however we
    end, it reads the end of the pipe and stops (``--with-parent``).
    """
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "mock-upstream", "--listen", "127.0.0.1:0",
        "--with-parent", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
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


async def warn_if_unreachable(url: str, readiness: ReadinessConfig) -> None:
    """Say so when the model server refuses connections; serving starts anyway
    (a model server often comes up after its sidecar)."""
    check = Reachability(url, readiness.interval_s, readiness.timeout_s)
    reach = await check.check()
    if reach.reachable:
        return
    until = "/readyz answers 503" if readiness.upstream else "requests get 502"
    log.warning(
        "the model server %s is unreachable (%s); starting anyway, %s until it accepts connections",
        check.where,
        reach.error,
        until,
    )


async def run_proxy(
    config: Config,
    announce: Callable[[str], None],
    config_path: str | None = None,
    workers: int = 1,
    log_level: str = "warning",
    notify: Notify | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM; SIGHUP reloads the config file.

    Starts the simulated model server when no upstream is configured.
    ``notify`` hears of a filter slow to build (proxy.judge.build_notice).
    """
    async with contextlib.AsyncExitStack() as stack:
        if config.upstream.url is None:
            url = await stack.enter_async_context(embedded_model_server())
            config = replace(config, upstream=replace(config.upstream, url=url))
            model_note = f"{url} (simulated model server: no upstream.url configured)"
        else:
            url = config.upstream.url
            model_note = shown_url(url)
        if workers > 1:
            await warn_if_unreachable(url, config.readiness)
            await run_supervisor(config, announce, config_path, workers, log_level, model_note)
            return
        tracing = tracing_from_env(os.environ)
        if tracing is not None:
            stack.callback(tracing.shutdown)  # flushes the spans not yet exported
        apps = build_apps(
            config, CollectorRegistry(), config_path, tracing_setup=tracing, notify=notify
        )
        await warn_if_unreachable(url, config.readiness)
        metrics_runner = await start_site(apps.metrics, config.metrics_listen)
        stack.push_async_callback(metrics_runner.cleanup)
        admin_note = "off"
        if apps.admin is not None and config.admin is not None:
            where = HostPort(config.admin.host, config.admin.port)
            admin_runner = await start_site(apps.admin, where)
            stack.push_async_callback(admin_runner.cleanup)
            admin_note = f"{bound_url(admin_runner)}/admin"
        proxy_runner = await start_site(apps.proxy, config.listen)
        stack.push_async_callback(proxy_runner.cleanup)
        freeze_startup_heap()

        # Handlers first: a SIGTERM right after the announcement must drain, not kill.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, apps.runtime.reload_or_keep)
        filters = ", ".join(f"{f.name} ({f.mode})" for f in config.filters) or "none"
        announce(f"taxmeter: proxy    {bound_url(proxy_runner)}")
        announce(f"taxmeter: metrics  {bound_url(metrics_runner)}/metrics")
        announce(f"taxmeter: model    {model_note}")
        announce(f"taxmeter: admin    {admin_note}")
        for line in describe(config.routes, config.unjudged_routes):
            announce(f"taxmeter: {line}")
        announce(f"taxmeter: filters  {filters}")

        await stop.wait()
        apps.readiness.ready = False
        announce("taxmeter: shutting down (draining in-flight requests)")
