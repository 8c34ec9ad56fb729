"""The side listeners' (admin, metrics) unknown paths and wrong methods, answered in JSON.

aiohttp's router answers them itself, in plain text (``404: Not Found``);
every other answer of taxmeter's is JSON, in the OpenAI error shape, so a
client that parses the error finds one here too. A 405 keeps the router's
``Allow`` header (the methods the path takes).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from proxy.formats.errors import error_body

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_MESSAGES = {
    404: ("not_found", "no such path on this listener"),
    405: ("method_not_allowed", "this path does not take that method"),
}


@web.middleware
async def json_not_found(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        known = _MESSAGES.get(exc.status)
        if known is None:
            raise
        code, message = known
        if isinstance(exc, web.HTTPMethodNotAllowed):
            message = f"{message}; it takes {', '.join(sorted(exc.allowed_methods))}"
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return web.Response(
            status=exc.status,
            body=error_body(message, code, "invalid_request_error"),
            content_type="application/json",
            headers=headers,
        )
