"""/stats with ``--workers N``: each worker's reservoir, gathered by the supervisor.

Every worker keeps its own reservoir (see :mod:`proxy.measure.stats`). It serves it
on a loopback port of its own and writes that port to ``stats-PID.port`` in
the workers' shared metrics directory; the supervisor's /stats asks every
worker listed there and merges the answers (:func:`proxy.measure.stats.merge`). A
worker that does not answer within a few seconds is left out of the document
(``"workers"`` says how many answered).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from proxy.control.not_found import json_not_found
from proxy.measure.stats import merge
from proxy.server.app import Apps, ablated_filters, variant_weights

_ASK_TIMEOUT_S = 5.0


def _port_file(metrics_dir: str, pid: int) -> Path:
    return Path(metrics_dir) / f"stats-{pid}.port"


async def serve_worker_stats(apps: Apps, metrics_dir: str) -> web.AppRunner:
    """Serve this worker's /stats on a loopback port, and say which in the shared directory."""

    async def stats(request: web.Request) -> web.Response:
        document = apps.stats.snapshot(
            variant_weights(apps.runtime.config), ablated_filters(apps.runtime.config)
        )
        return web.json_response(document)

    app = web.Application(middlewares=[json_not_found])  # JSON like every other listener
    app.router.add_get("/stats", stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    target = _port_file(metrics_dir, os.getpid())
    written = target.with_suffix(".tmp")
    written.write_text(str(port))
    written.replace(target)  # the supervisor never reads half a file
    return runner


def _worker_ports(metrics_dir: str) -> list[int]:
    # A few tiny files in a local directory: not worth a thread.
    ports = []
    for path in Path(metrics_dir).glob("stats-*.port"):
        with contextlib.suppress(FileNotFoundError, ValueError):
            ports.append(int(path.read_text()))
    return ports


def forget_worker(metrics_dir: str, pid: int) -> None:
    """A worker is gone: its reservoir went with it."""
    with contextlib.suppress(FileNotFoundError):
        _port_file(metrics_dir, pid).unlink()


async def gather_stats(metrics_dir: str) -> dict[str, Any]:
    """Every worker's /stats, merged into one document."""
    ports = _worker_ports(metrics_dir)
    timeout = aiohttp.ClientTimeout(total=_ASK_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def ask(port: int) -> dict[str, Any] | None:
            try:
                async with session.get(f"http://127.0.0.1:{port}/stats") as response:
                    response.raise_for_status()
                    document: dict[str, Any] = await response.json()
                    return document
            except (aiohttp.ClientError, TimeoutError):
                return None

        answers = await asyncio.gather(*(ask(port) for port in ports))
    return merge([a for a in answers if a is not None])
