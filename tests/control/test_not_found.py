"""The admin and metrics listeners answer an unknown path or a wrong method in JSON.

Before, aiohttp's router answered both in plain text (``404: Not Found``).
"""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.control.test_admin import AUTH, admin_proxy
from tests.loopback import ProxyFactory


async def answer(
    url: str, method: str, headers: dict[str, str] | None = None
) -> tuple[int, str, str | None, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers) as response,
    ):
        body = await response.json()  # fails on a body that is not JSON
        return response.status, response.content_type, response.headers.get("Allow"), body


async def test_the_admin_api_answers_unknown_paths_and_methods_in_json(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await admin_proxy(start_proxy, {})
    status, kind, _, body = await answer(f"{proxy.admin_url}/admin/nothing", "GET", AUTH)
    assert (status, kind, body["error"]["code"]) == (404, "application/json", "not_found")
    assert body["error"]["type"] == "invalid_request_error"
    status, kind, allow, body = await answer(f"{proxy.admin_url}/admin/reload", "GET", AUTH)
    assert (status, kind, allow) == (405, "application/json", "POST")
    assert body["error"]["code"] == "method_not_allowed"
    assert "POST" in body["error"]["message"]
    # Without the token nothing says which paths exist.
    status, _, _, body = await answer(f"{proxy.admin_url}/admin/nothing", "GET")
    assert (status, body["error"]["code"]) == (401, "unauthorized")


async def test_the_metrics_listener_answers_unknown_paths_and_methods_in_json(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy({})
    status, kind, _, body = await answer(f"{proxy.metrics_url}/nothing", "GET")
    assert (status, kind, body["error"]["code"]) == (404, "application/json", "not_found")
    status, kind, allow, body = await answer(f"{proxy.metrics_url}/metrics", "POST")
    assert (status, kind, body["error"]["code"]) == (405, "application/json", "method_not_allowed")
    assert allow is not None
    assert "GET" in allow
    status, _, _, body = await answer(f"{proxy.metrics_url}/healthz", "GET")
    assert (status, body) == (200, {"status": "ok"})
