"""Wiring: the proxy, metrics and admin applications, built once from a validated config."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry

from proxy.config.schema import Config, ConfigError
from proxy.control.admin import build_admin_app
from proxy.control.canary import Canary
from proxy.control.runtime import Runtime
from proxy.exchange.handler import ProxyHandler
from proxy.exchange.limits import REJECTIONS, Admission, Rejections
from proxy.judge.build_notice import Notify
from proxy.judge.observe import Observer
from proxy.measure.access_log import AccessLog
from proxy.measure.canary_metrics import CanaryMetrics
from proxy.measure.cost import Prices
from proxy.measure.heap import GcPauses
from proxy.measure.loop_watch import LoopWatch
from proxy.measure.metrics import Metrics
from proxy.measure.process_gauges import register_process_gauges
from proxy.measure.stats import Stats
from proxy.measure.tracing import Tracing
from proxy.measure.tracing_metrics import register_trace_counts
from proxy.measure.tracing_setup import TracingSetup
from proxy.server.client_limits import CLIENT_LIMITS, ClientLimits
from proxy.server.metrics_app import Readiness, build_metrics_app
from proxy.server.wire import LOOP_WATCH
from proxy.upstream.call import UpstreamPool
from proxy.upstream.reachability import Reachability

log = logging.getLogger("taxmeter")

# Deferred observations still running at shutdown get this long to finish.
OBSERVE_GRACE_S = 5.0


def variant_weights(config: Config) -> dict[str, float]:
    return {v.name: v.weight for v in config.variants}


def ablated_filters(config: Config) -> dict[str, str]:
    """Each ablation variant's disabled filter, for /stats (the report's marginal table)."""
    return {v.name: v.ablates for v in config.variants if v.ablates is not None}


@dataclass
class Apps:
    proxy: web.Application
    metrics: web.Application
    admin: web.Application | None  # None: not configured, or no token in its variable
    runtime: Runtime
    readiness: Readiness
    stats: Stats
    observer: Observer


def build_apps(
    config: Config,
    registry: CollectorRegistry,
    config_path: str | None = None,
    environ: Mapping[str, str] = os.environ,
    tracing_setup: TracingSetup | None = None,
    notify: Notify | None = None,
) -> Apps:
    """Build every app; filters are constructed and the chains frozen here, once.

    ``tracing_setup``: the sampler and where each request's spans go; None,
    tracing off. The caller owns it (flushes and shuts it down). ``notify``
    hears of a filter slow to build (proxy.judge.build_notice).

    Raises ConfigError when a filter cannot be built, before anything listens.
    """
    if config.upstream.url is None:
        raise ValueError("build_apps needs config.upstream.url")
    runtime = Runtime(config, config_path, environ, notify)
    prices = Prices(config)
    metrics = Metrics(registry, config, prices)
    stats = Stats(config.stats_reservoir_size, prices)
    runtime.on_change(metrics.config_changed)  # prices, budgets, the config's hash
    observer = Observer()
    reachability = Reachability.for_readiness(config.upstream.url, config.readiness)
    readiness = Readiness(reachability)
    tracing = None
    if tracing_setup is not None:
        tracing = Tracing(tracing_setup, config.upstream.url, config.telemetry.trace_content)
        register_trace_counts(registry, tracing_setup.export)
    telemetry = config.telemetry
    access_log = None
    if telemetry.access_log != "off":
        try:
            access_log = AccessLog(
                telemetry.access_log, telemetry.access_log_sample, telemetry.access_log_content
            )
        except OSError as exc:
            raise ConfigError(
                "telemetry.access_log", f"cannot open {telemetry.access_log}: {exc.strerror}"
            ) from exc
    upstream_url = config.upstream.url
    rejections = Rejections(registry)
    admission = Admission(config.max_concurrent_requests, rejections)
    loop_watch = LoopWatch()
    handler = ProxyHandler(
        runtime, metrics, stats, observer, admission, tracing, access_log, loop_watch
    )

    gc_pauses = GcPauses(registry)
    canary = Canary(runtime, CanaryMetrics(registry))

    # One cleanup context per resource: aiohttp closes them in reverse order
    # and goes on past one that raises, so each is closed whatever the others
    # do. Closed in this order: readiness first (the load balancer stops
    # sending), the canary before the filters it uses, the filters last.
    async def runtime_filters(app: web.Application) -> AsyncIterator[None]:
        yield
        await runtime.aclose()  # the filters, and their worker threads (the offload pool)

    async def access_log_file(app: web.Application) -> AsyncIterator[None]:
        yield
        if access_log is not None:
            access_log.close()  # after the deferred observations that write to it

    async def deferred_observations(app: web.Application) -> AsyncIterator[None]:
        yield
        await observer.drain(OBSERVE_GRACE_S)

    async def upstream_pool(app: web.Application) -> AsyncIterator[None]:
        pool = UpstreamPool(upstream_url, config.upstream, reachability=reachability)
        handler.upstream = pool
        yield
        await pool.close()

    async def gc_watch(app: web.Application) -> AsyncIterator[None]:
        gc_pauses.start()
        yield
        gc_pauses.stop()

    async def loop_watching(app: web.Application) -> AsyncIterator[None]:
        observe_lag = metrics.loop_lag.observe
        loop_watch.start(observe_lag)
        yield
        loop_watch.stop(observe_lag)

    async def canary_runs(app: web.Application) -> AsyncIterator[None]:
        canary.start()
        yield
        await canary.stop()

    async def ready(app: web.Application) -> AsyncIterator[None]:
        readiness.ready = True
        yield
        readiness.ready = False

    proxy_app = web.Application(client_max_size=config.max_body_bytes)
    proxy_app.cleanup_ctx.extend(
        (
            runtime_filters,
            access_log_file,
            deferred_observations,
            upstream_pool,
            gc_watch,
            loop_watching,
            canary_runs,
            ready,
        )
    )
    proxy_app[REJECTIONS] = rejections
    proxy_app[CLIENT_LIMITS] = ClientLimits.from_config(config)  # read by proxy.server.wire
    proxy_app[LOOP_WATCH] = loop_watch  # and this
    proxy_app.router.add_route("*", "/{tail:.*}", handler.handle)
    register_process_gauges(registry)

    async def stats_snapshot() -> dict[str, object]:
        return stats.snapshot(variant_weights(runtime.config), ablated_filters(runtime.config))

    metrics_app = build_metrics_app(registry, readiness, stats_snapshot)

    admin_app = None
    if config.admin is not None:
        token = environ.get(config.admin.token_env, "")
        if token:
            admin_app = build_admin_app(
                runtime, token, lambda: metrics.add_variants(runtime.config)
            )
        else:
            log.warning("admin listener off: %s holds no token", config.admin.token_env)
    return Apps(proxy_app, metrics_app, admin_app, runtime, readiness, stats, observer)
