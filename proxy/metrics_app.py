"""The metrics listener: /metrics (Prometheus), /healthz (alive) and /readyz (ready)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler


class Readiness:
    """Ready while the proxy can forward: set on start-up, cleared on shutdown."""

    __slots__ = ("ready",)

    def __init__(self) -> None:
        self.ready = False


def build_metrics_app(registry: CollectorRegistry, readiness: Readiness) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        if readiness.ready:
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready"}, status=503)

    app = web.Application()
    app.router.add_get("/metrics", make_aiohttp_handler(registry))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
