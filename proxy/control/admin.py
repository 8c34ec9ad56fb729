"""The admin listener: inspect and change filters and variants, reload the config.

Off unless ``admin`` is configured and its ``token_env`` variable holds a
token; every request needs ``Authorization: Bearer <token>`` (compared in
constant time), else 401. Errors have the OpenAI error shape, an unknown
path's (404) and a wrong method's (405, with ``Allow``) too.

    GET   /admin/filters            [{"name", "type", "stages", "mode"}, ...]
    PATCH /admin/filters/{name}     {"mode": "enforce" | "observe" | "off"}
    GET   /admin/variants           {NAME: {"weight": w, "disable": [...], "modes": {...}}}
    PUT   /admin/variants           {NAME: {"weight": w}, ...} (weights of configured variants)
    POST  /admin/reload             re-read the config file; a bad file changes nothing
    POST  /admin/check              a text or request through the live filters (proxy.control.check)
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from proxy.config.schema import ConfigError
from proxy.control.check import check_handler
from proxy.control.not_found import Handler, json_not_found
from proxy.control.runtime import Runtime
from proxy.formats.errors import error_body

log = logging.getLogger("taxmeter.admin")


def _error(status: int, code: str, message: str) -> web.Response:
    return web.Response(
        status=status,
        body=error_body(message, code, "invalid_request_error"),
        content_type="application/json",
    )


def _json(payload: Any) -> web.Response:
    return web.Response(body=orjson.dumps(payload), content_type="application/json")


def build_admin_app(
    runtime: Runtime, token: str, on_change: Callable[[], None] = lambda: None
) -> web.Application:
    """The admin app; ``on_change`` runs after every successful change."""
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def authorize(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, expected):
            return _error(401, "unauthorized", "a valid admin bearer token is required")
        return await handler(request)

    async def read_json(request: web.Request) -> Any:
        try:
            return orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise web.HTTPBadRequest(
                body=error_body("the body is not valid JSON", "invalid_json"),
                content_type="application/json",
            ) from None

    async def list_filters(request: web.Request) -> web.Response:
        chain_stages = {n: built.stages for n, built in runtime.current.filters.items()}
        return _json(
            [
                {
                    "name": f.name,
                    "type": f.type,
                    "stages": list(chain_stages[f.name]),
                    "mode": f.mode,
                }
                for f in runtime.config.filters
            ]
        )

    async def patch_filter(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await read_json(request)
        if not isinstance(body, dict) or set(body) != {"mode"}:
            return _error(400, "invalid_body", 'expected {"mode": "enforce" | "observe" | "off"}')
        try:
            runtime.set_mode(name, body["mode"])
        except KeyError:
            return _error(404, "not_found", f"no filter named {name!r}")
        except ValueError as exc:
            return _error(400, "invalid_mode", str(exc))
        on_change()
        return await list_filters(request)

    async def get_variants(request: web.Request) -> web.Response:
        return _json(
            {
                v.name: {"weight": v.weight, "disable": sorted(v.disable), "modes": dict(v.modes)}
                for v in runtime.config.variants
            }
        )

    async def put_variants(request: web.Request) -> web.Response:
        body = await read_json(request)
        if not isinstance(body, dict) or not all(
            isinstance(v, dict) and set(v) == {"weight"} for v in body.values()
        ):
            return _error(400, "invalid_body", 'expected {"NAME": {"weight": W}, ...}')
        try:
            runtime.set_weights({name: v["weight"] for name, v in body.items()})
        except KeyError as exc:
            return _error(404, "not_found", f"no variant named {exc.args[0]!r}")
        except ValueError as exc:
            return _error(400, "invalid_weight", str(exc))
        on_change()
        return await get_variants(request)

    async def reload(request: web.Request) -> web.Response:
        try:
            config = await runtime.reload()
        except ConfigError as exc:
            log.warning("reload refused, the running config stays: %s", exc)
            return _error(400, "invalid_config", f"reload refused: {exc}")
        on_change()
        return _json(
            {
                "reloaded": runtime.config_path,
                "filters": [f.name for f in config.filters],
                "variants": [v.name for v in config.variants],
            }
        )

    app = web.Application(middlewares=[authorize, json_not_found])
    app.router.add_get("/admin/filters", list_filters)
    app.router.add_patch("/admin/filters/{name}", patch_filter)
    app.router.add_get("/admin/variants", get_variants)
    app.router.add_put("/admin/variants", put_variants)
    app.router.add_post("/admin/reload", reload)
    app.router.add_post("/admin/check", check_handler(runtime))
    return app
