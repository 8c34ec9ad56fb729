"""Attacks on the judged surfaces, over real sockets: the scripted upstream and the proxy."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from tests.surfaces.conftest import scripted, sse

__all__ = ["scripted", "sse"]

EMAIL = "jane.doe@example.com"
FILTERS: dict[str, Any] = {
    "filters": [
        {"name": "denylist", "type": "denylist", "params": {"words": ["open sesame"]}},
        {"name": "pii", "type": "pii"},  # every stage, streams included
    ]
}


async def streamed(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> bytes:
    """The whole streamed answer a client reads."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=body, headers=headers or {}) as response,
    ):
        return await response.read()


def data_events(raw: bytes) -> list[Any]:
    """The JSON documents of an event stream's data lines."""
    return [orjson.loads(line[6:]) for line in raw.split(b"\n") if line.startswith(b"data: {")]
