"""Wiring: the proxy application, built once from a validated config."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CollectorRegistry

from proxy.chain import build_chains, build_filters
from proxy.config import Config
from proxy.handler import ProxyHandler
from proxy.metrics import Metrics
from proxy.metrics_app import Readiness
from proxy.upstream import new_session
from proxy.variants import VariantPicker


def build_proxy_app(
    config: Config, registry: CollectorRegistry, readiness: Readiness | None = None
) -> web.Application:
    """The proxy app; filters are constructed and the chains frozen here, once.

    Raises ConfigError when a filter cannot be built, before anything listens.
    """
    if config.upstream.url is None:
        raise ValueError("build_proxy_app needs config.upstream.url")
    filters = build_filters(config)
    handler = ProxyHandler(
        config.upstream.url,
        build_chains(config, filters),
        VariantPicker(config.variants),
        Metrics(registry, config),
    )

    async def upstream_session(app: web.Application) -> AsyncIterator[None]:
        handler.session = new_session(config.upstream)
        if readiness is not None:
            readiness.ready = True
        yield
        if readiness is not None:
            readiness.ready = False
        await handler.session.close()
        for instance, _ in filters.values():
            close = getattr(instance, "aclose", None)
            if close is not None:
                await close()

    app = web.Application(client_max_size=config.max_body_bytes, handler_args={})
    app.cleanup_ctx.append(upstream_session)
    app.router.add_route("*", "/{tail:.*}", handler.handle)
    return app
