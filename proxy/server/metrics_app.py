"""The metrics listener: /metrics (Prometheus), /stats (recent per-request figures,
see proxy.measure.stats), /healthz (alive) and /readyz (ready); any other path
a JSON 404, another method a JSON 405 (proxy.control.not_found)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from proxy.control.not_found import json_not_found


class Readiness:
    """Ready while the proxy can forward: set on start-up, cleared on shutdown."""

    __slots__ = ("ready",)

    def __init__(self) -> None:
        self.ready = False


def build_metrics_app(
    registry: CollectorRegistry,
    readiness: Readiness,
    stats: Callable[[], Awaitable[dict[str, object]]],
) -> web.Application:
    """The metrics app; ``stats`` gives the /stats document."""

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        if readiness.ready:
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready"}, status=503)

    async def stats_handler(request: web.Request) -> web.Response:
        document = await stats()
        return web.Response(body=orjson.dumps(document), content_type="application/json")

    app = web.Application(middlewares=[json_not_found])
    app.router.add_get("/stats", stats_handler)
    app.router.add_get("/metrics", make_aiohttp_handler(registry))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
