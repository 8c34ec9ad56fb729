"""The metrics listener: /metrics (Prometheus), /stats (recent per-request figures,
see proxy.measure.stats), /healthz (alive) and /readyz (ready); any other path
a JSON 404, another method a JSON 405 (proxy.control.not_found).

/healthz is liveness: it answers 200 while the process serves, whatever the
model server does, so a model that is down never gets the sidecar restarted.
/readyz is readiness: 503, with the reason in its JSON body, while starting,
while draining, and (``readiness.upstream``, the default) while the model
server does not accept connections (see proxy.upstream.reachability).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from proxy.control.not_found import json_not_found
from proxy.upstream.reachability import Reachability


class Readiness:
    """Ready while the proxy can forward: set on start-up, cleared on shutdown,
    and while ``upstream`` (when given) finds the model server reachable."""

    __slots__ = ("ready", "upstream")

    def __init__(self, upstream: Reachability | None = None) -> None:
        self.ready = False
        self.upstream = upstream

    async def answer(self) -> tuple[int, dict[str, str]]:
        """The status and JSON document /readyz answers with."""
        if not self.ready:
            return 503, {"status": "not ready", "reason": "starting or shutting down"}
        if self.upstream is None:
            return 200, {"status": "ready"}
        reach = await self.upstream.check()
        if not reach.reachable:
            return 503, {
                "status": "not ready",
                "reason": "upstream unreachable",
                "upstream": self.upstream.where,
                "error": reach.error,
                "since": reach.since_text,
            }
        return 200, {"status": "ready", "upstream": self.upstream.where}


def build_metrics_app(
    registry: CollectorRegistry,
    readiness: Readiness,
    stats: Callable[[], Awaitable[dict[str, object]]],
) -> web.Application:
    """The metrics app; ``stats`` gives the /stats document."""

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        status, document = await readiness.answer()
        return web.json_response(document, status=status)

    async def stats_handler(request: web.Request) -> web.Response:
        document = await stats()
        return web.Response(body=orjson.dumps(document), content_type="application/json")

    app = web.Application(middlewares=[json_not_found])
    app.router.add_get("/stats", stats_handler)
    app.router.add_get("/metrics", make_aiohttp_handler(registry))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
