"""Starting an aiohttp app on a listening address, the same way for every listener."""

from __future__ import annotations

from aiohttp import web

from proxy.config.schema import HostPort
from proxy.server.listen_error import ListenError
from proxy.server.wire import WireRunner

# In-flight requests (long generations) get this long to finish on SIGTERM;
# Kubernetes' default grace period is 30 s.
SHUTDOWN_GRACE_S = 25.0


async def start_tcp_site(site: web.TCPSite, where: HostPort) -> None:
    """``site.start()``, with a failure to bind told as a ListenError naming the address."""
    try:
        await site.start()
    except OSError as exc:
        raise ListenError(where, exc) from exc


async def start_site(
    app: web.Application, where: HostPort, reuse_port: bool = False
) -> web.AppRunner:
    """Start an app on HOST:PORT; the runner is returned for cleanup.

    Connections are served behind the wire clock (see proxy.server.wire), so a
    request's time starts when its first byte is read, and within the app's
    client limits (proxy.server.client_limits; the defaults for an app without them).
    """
    # auto_decompress off: bodies are inflated by proxy.exchange.request_body, with bounds,
    # and only where the proxy judges them (forwarded bodies keep their encoding).
    runner = WireRunner(
        app,
        access_log=None,
        handler_cancellation=True,
        shutdown_timeout=SHUTDOWN_GRACE_S,
        auto_decompress=False,
    )
    await runner.setup()
    site = web.TCPSite(
        runner, where.host, where.port, reuse_address=True, reuse_port=reuse_port or None
    )
    try:
        await start_tcp_site(site, where)
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def bound_url(runner: web.AppRunner) -> str:
    """The http:// URL a runner's first site actually listens on (port 0 resolved)."""
    assert runner.addresses, "the runner has no listening socket"
    host, port = runner.addresses[0][:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
