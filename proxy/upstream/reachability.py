"""Whether the model server accepts connections: what /readyz and the start-up warning say.

Cheap by construction: a TCP connect (opened and closed at once, no request:
a model server need not serve any path but its API's), made at most once per
``interval_s`` however often it is asked, and bounded by ``timeout_s`` so an
answer never waits on a black-holed address. In between, the proxy's own
connects count (:class:`proxy.upstream.pool.UpstreamPool` reports them): a
refused one marks the upstream unreachable at once, a successful one
reachable. For https only TCP is checked: a TLS or HTTP fault still shows
as 502s, not here.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from yarl import URL

from proxy.config.readiness import ReadinessConfig
from proxy.formats.shown_url import shown_url


def connect_failure(host: str, port: int, exc: OSError) -> str:
    """What a failed connect to the upstream says, the same in every message and body."""
    if isinstance(exc, TimeoutError):
        return f"cannot connect to {host}:{port}: timed out"
    return f"cannot connect to {host}:{port}: {exc.strerror or exc}"


@dataclass(frozen=True, slots=True)
class Reach:
    """One answer: reachable, or why not and since when (seconds since the epoch)."""

    reachable: bool
    error: str = ""
    since: float = 0.0

    @property
    def since_text(self) -> str:
        return datetime.fromtimestamp(self.since, UTC).isoformat(timespec="seconds")


class _Opened(asyncio.Protocol):
    pass


class Reachability:
    """The model server's reachability, checked at most once per interval."""

    def __init__(self, url: str, interval_s: float, timeout_s: float) -> None:
        parsed = URL(url)
        self.host = parsed.raw_host or ""
        self.port = parsed.port or (443 if parsed.scheme == "https" else 80)
        # Where it is, never the URL's credentials: /readyz is read by anyone who scrapes.
        self.where = shown_url(url)
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._last: Reach | None = None
        self._checked_at = 0.0  # monotonic seconds, for the interval only
        self._probe: asyncio.Task[Reach] | None = None

    @classmethod
    def for_readiness(cls, url: str, config: ReadinessConfig) -> Reachability | None:
        """The check /readyz makes, or None when readiness ignores the upstream."""
        return cls(url, config.interval_s, config.timeout_s) if config.upstream else None

    def connected(self) -> None:
        """A connection to the upstream was opened: it is reachable now."""
        self._note(Reach(True))

    def refused(self, error: str) -> None:
        """A connection to the upstream failed (``error`` says how): unreachable now."""
        self._note(self._down(error))

    async def check(self) -> Reach:
        """The latest answer if it is fresh, else a new connect (shared by concurrent callers)."""
        if self._last is not None and time.monotonic() - self._checked_at < self._interval_s:
            return self._last
        if self._probe is None:
            self._probe = asyncio.get_running_loop().create_task(self._connect())
            self._probe.add_done_callback(self._probed)
        # Shielded: a caller that gives up does not cancel the others' answer.
        return await asyncio.shield(self._probe)

    def _probed(self, task: asyncio.Task[Reach]) -> None:
        self._probe = None
        if not task.cancelled() and task.exception() is None:
            self._note(task.result())

    async def _connect(self) -> Reach:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._timeout_s):
                transport, _ = await loop.create_connection(_Opened, self.host, self.port)
        except OSError as exc:  # refused, unknown host, no route; TimeoutError too
            return self._down(connect_failure(self.host, self.port, exc))
        transport.close()
        return Reach(True)

    def _down(self, error: str) -> Reach:
        # Down since the first failure of this outage, not the latest check.
        last = self._last
        since = last.since if last is not None and not last.reachable else time.time()
        return Reach(False, error, since)

    def _note(self, reach: Reach) -> None:
        self._last = reach
        self._checked_at = time.monotonic()
