"""``taxmeter serve --workers N``: N proxy processes on one port, one set of metrics.

The supervisor (the process the user started) reserves the proxy port with
SO_REUSEPORT, starts N worker processes that each listen on it (the kernel
spreads connections across them), and serves the metrics listener itself.
Workers write their metrics to memory-mapped files in a shared directory
(prometheus-client's multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``); the
supervisor's /metrics adds them up, so counters and histograms count every
worker's requests and the in-flight gauge is their live sum (the info gauges,
their live max: proxy.measure.config_gauges).

Signals: SIGTERM and SIGINT are passed to the workers, which drain and exit;
SIGHUP is passed on, and each worker reloads the config file. A worker that
dies is replaced; a supervisor that dies without a word takes its workers
along (see proxy.server.parent). /stats merges the workers' reservoirs (see
proxy.server.worker_stats). Not available with several workers: the admin API
(each worker would hold its own copy of the live config; reload with SIGHUP).
Client limits (proxy.server.client_limits) hold per worker: each counts and times
its own connections, so ``max_client_connections`` is per worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, multiprocess

from proxy.config.schema import Config, HostPort
from proxy.exchange.route_gate import describe
from proxy.judge.build_notice import Notify
from proxy.measure.config_gauges import WithoutRetired
from proxy.measure.heap import freeze_startup_heap
from proxy.measure.tracing_setup import tracing_from_env
from proxy.server.app import build_apps
from proxy.server.listen_error import ListenError
from proxy.server.metrics_app import Readiness, build_metrics_app
from proxy.server.parent import stop_when_parent_ends
from proxy.server.sites import SHUTDOWN_GRACE_S, bound_url, start_site
from proxy.server.worker_stats import forget_worker, gather_stats, serve_worker_stats
from proxy.upstream.reachability import Reachability

log = logging.getLogger("taxmeter.workers")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_READY = "taxmeter worker ready"


def _reserve_port(where: HostPort) -> socket.socket:
    """Bind (not listen) a SO_REUSEPORT socket: it fixes the port the workers share."""
    family = socket.AF_INET6 if ":" in where.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((where.host, where.port))
    except OSError as exc:
        sock.close()
        raise ListenError(where, exc) from exc
    return sock


class _Workers:
    def __init__(self, argv: list[str], env: dict[str, str], count: int) -> None:
        self._argv = argv
        self._env = env
        self._metrics_dir = env[MULTIPROC_ENV]
        self.count = count
        self.processes: list[asyncio.subprocess.Process] = []
        self.stopping = False

    async def start_one(self) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy", *self._argv, env=self._env,
            stdin=asyncio.subprocess.PIPE,  # the worker stops when we end (proxy.server.parent)
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
        if not line.decode().startswith(_READY):
            raise RuntimeError(f"a worker did not start (exit {await process.wait()})")
        self.processes.append(process)
        asyncio.get_running_loop().create_task(self._watch(process))
        return process

    async def _watch(self, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        if process in self.processes:
            self.processes.remove(process)
        multiprocess.mark_process_dead(process.pid, self._metrics_dir)  # type: ignore[no-untyped-call]
        forget_worker(self._metrics_dir, process.pid)
        if not self.stopping:
            log.error("worker %d exited with %d; starting another", process.pid, code)
            with contextlib.suppress(Exception):
                await self.start_one()

    def signal_all(self, sig: int) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)

    async def stop(self, grace_s: float) -> None:
        self.stopping = True
        self.signal_all(signal.SIGTERM)
        waits = [p.wait() for p in list(self.processes)]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), timeout=grace_s)
        except TimeoutError:
            self.signal_all(signal.SIGKILL)


async def run_supervisor(
    config: Config,
    announce: Callable[[str], None],
    config_path: str | None,
    workers: int,
    log_level: str,
    model_note: str,
) -> None:
    """Serve with ``workers`` processes until SIGINT or SIGTERM (the upstream URL is set)."""
    assert config.upstream.url is not None
    given_dir = os.environ.get(MULTIPROC_ENV)
    metrics_dir = given_dir or tempfile.mkdtemp(prefix="taxmeter-metrics-")
    for stale in os.listdir(metrics_dir):
        if stale.endswith((".db", ".port")):
            os.unlink(os.path.join(metrics_dir, stale))
    reserved = _reserve_port(config.listen)
    host, port = reserved.getsockname()[:2]
    argv = ["serve", "--worker", "--upstream", config.upstream.url,
            "--listen", str(HostPort(host, port)), "--log-level", log_level]  # fmt: skip
    if config_path is not None:
        argv += ["--config", config_path]
    env = {**os.environ, MULTIPROC_ENV: metrics_dir}
    pool = _Workers(argv, env, workers)
    # The workers' connects are out of sight here: the supervisor checks for itself.
    readiness = Readiness(Reachability.for_readiness(config.upstream.url, config.readiness))
    registry = CollectorRegistry()
    workers_files = multiprocess.MultiProcessCollector(None, path=metrics_dir)  # type: ignore[no-untyped-call]
    registry.register(WithoutRetired(workers_files))  # see proxy.measure.config_gauges
    metrics_runner: web.AppRunner | None = None
    try:
        for _ in range(workers):
            await pool.start_one()

        async def stats() -> dict[str, object]:
            return await gather_stats(metrics_dir)

        metrics_runner = await start_site(
            build_metrics_app(registry, readiness, stats), config.metrics_listen
        )
        readiness.ready = True
        filters = ", ".join(f"{f.name} ({f.mode})" for f in config.filters) or "none"
        announce(f"taxmeter: proxy    http://{HostPort(host, port)} ({workers} workers)")
        announce(f"taxmeter: metrics  {bound_url(metrics_runner)}/metrics")
        announce(f"taxmeter: model    {model_note}")
        announce("taxmeter: admin    off (not available with several workers; SIGHUP reloads)")
        for line in describe(config.routes, config.unjudged_routes):
            announce(f"taxmeter: {line}")
        announce(f"taxmeter: filters  {filters}")

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, pool.signal_all, signal.SIGHUP)
        await stop.wait()
        readiness.ready = False
        announce("taxmeter: shutting down (draining in-flight requests)")
    finally:
        await pool.stop(SHUTDOWN_GRACE_S + 5)
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        reserved.close()
        if given_dir is None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


async def run_worker(config: Config, config_path: str | None, notify: Notify | None = None) -> None:
    """One worker: the proxy listener on the shared port, until SIGTERM.

    ``notify`` hears of a filter slow to build (proxy.judge.build_notice).
    """
    tracing = tracing_from_env(os.environ)
    apps = build_apps(
        config, CollectorRegistry(), config_path, environ={}, tracing_setup=tracing, notify=notify
    )
    runner = await start_site(apps.proxy, config.listen, reuse_port=True)
    stats_runner = await serve_worker_stats(apps, os.environ[MULTIPROC_ENV])
    freeze_startup_heap()
    try:
        print(f"{_READY} {os.getpid()}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, lambda: None)  # the supervisor decides
        loop.add_signal_handler(signal.SIGHUP, apps.runtime.reload_or_keep)
        stop_when_parent_ends(stop)  # a supervisor killed outright leaves no worker behind
        await stop.wait()
        apps.readiness.ready = False
    finally:
        await runner.cleanup()
        await stats_runner.cleanup()
        forget_worker(os.environ[MULTIPROC_ENV], os.getpid())
        if tracing is not None:
            tracing.shutdown()  # flushes the spans not yet exported
