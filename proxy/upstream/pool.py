"""The keep-alive pool of connections to the upstream, and one request sent over it.

Connections are reused last-in first-out, so the warmest one serves the next
request. One idle for longer than 15 s (aiohttp's default too) is closed
rather than reused: a load balancer or NAT on the way may have dropped it
without a word, and the request sent on it would wait out the read timeout.
At most
``upstream.max_connections`` are open; a request beyond that waits for one to
come back (bounded by ``total_timeout_s``). Timeouts, as configured:

* ``connect_timeout_s``: opening a connection (TCP and TLS);
* ``read_timeout_s``: silence while waiting for the answer's head or body;
* ``total_timeout_s``: the whole exchange, from asking for a connection to the
  answer's last byte.

``max_response_bytes`` bounds an answer the proxy reads (``decode``), once
inflated (see :mod:`proxy.upstream.response`).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterable
from typing import Any

from multidict import CIMultiDict
from yarl import URL

from proxy.config.schema import UpstreamConfig
from proxy.formats.json_pieces import EncodedDocument
from proxy.measure.timeline import Timeline
from proxy.upstream.connection import UpstreamConnection
from proxy.upstream.reachability import Reachability, connect_failure
from proxy.upstream.response import UpstreamError, UpstreamResponse, UpstreamUnreachable

# Methods whose request has a body by definition: sent with Content-Length: 0
# when the client sent none, as aiohttp's client did.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class BodyLengthMismatch(UpstreamError):
    """A request body streamed upstream is not as long as its Content-Length.

    The client's fault (a 400 ``invalid_body``, see
    :func:`proxy.upstream.call.classify_failure`); the upstream connection is
    closed and never received a whole request.
    """


# A body up to this size is written with its head in one call; a larger one is
# written in slices, each once the kernel took the last, so that neither the
# concatenation nor the transport's buffer holds a second copy of it.
_WRITE_WHOLE_BYTES = 256 * 1024


async def _send_large(
    conn: UpstreamConnection, head: bytes, body: bytes | bytearray, decode: bool
) -> None:
    conn.send(head, decode)
    with memoryview(body) as view:
        for start in range(0, len(view), _WRITE_WHOLE_BYTES):
            conn.write(view[start : start + _WRITE_WHOLE_BYTES])
            await conn.drain()


async def _send_pieces(
    conn: UpstreamConnection, head: bytes, body: EncodedDocument, decode: bool
) -> None:
    conn.send(head, decode)
    sent = 0
    for piece in body:
        sent += len(piece)
        if sent > body.length:
            break
        conn.write(piece)
        await conn.drain()
    if sent != body.length:
        # The document changed between counting and writing: a bug of ours,
        # and the upstream must not read past a wrong length.
        raise RuntimeError(f"a re-encoded body was {sent} bytes, not {body.length}")


class UpstreamPool:
    """Every connection to the one upstream; built once, shared by all requests."""

    def __init__(
        self,
        base: str,
        config: UpstreamConfig,
        idle_timeout_s: float = 15.0,
        reachability: Reachability | None = None,
    ) -> None:
        """``reachability`` hears of every connect, made or failed (what /readyz says)."""
        url = URL(base)
        self.scheme = url.scheme
        self.host = url.raw_host or ""
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.path_prefix = url.raw_path.rstrip("/")
        default_port = url.is_default_port()
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._host_line = f"Host: {host if default_port else f'{host}:{self.port}'}\r\n"
        self._ssl: ssl.SSLContext | None = None
        if url.scheme == "https":
            self._ssl = ssl.create_default_context()
        self._connect_timeout_s = config.connect_timeout_s
        self._read_timeout_s = config.read_timeout_s
        self._total_timeout_s = config.total_timeout_s
        self._limit = config.max_connections  # 0: no limit
        self._idle_timeout_s = idle_timeout_s
        self._max_response_bytes = config.max_response_bytes
        self._idle: deque[UpstreamConnection] = deque()  # the oldest on the left
        self._open: set[UpstreamConnection] = set()
        self._connecting = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._reachability = reachability

    @property
    def open_connections(self) -> int:
        return len(self._open)

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    async def request(
        self,
        method: str,
        target: str,
        headers: CIMultiDict[str],
        body: bytes | EncodedDocument | AsyncIterable[bytes] | None,
        timeline: Timeline,
        decode: bool,
        decode_whole: bool = True,
    ) -> UpstreamResponse:
        """Send a request and return its answer once its head arrived.

        ``target``: the path and query, as the client sent them. ``decode``:
        undo a gzip or deflate Content-Encoding and hold the body to
        ``max_response_bytes`` (for a body the proxy reads); with
        ``decode_whole`` False, only when the answer is an event stream (a
        whole answer no output filter reads is relayed as it came).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._total_timeout_s
        timeline.mark_connect_start()
        conn = await self._connection(loop, deadline)
        timeline.mark_connect_end()
        conn.read_timeout_s = self._read_timeout_s
        conn.deadline = deadline
        conn.head_only = method == "HEAD"
        conn.decode_whole = decode_whole
        try:
            if isinstance(body, EncodedDocument):
                head = self._head(method, target, headers, body.length, chunked=False)
                async with asyncio.timeout_at(deadline):
                    await _send_pieces(conn, head, body, decode)
            elif body is None or isinstance(body, bytes | bytearray):
                length = len(body) if body else (0 if method in _BODY_METHODS else None)
                head = self._head(method, target, headers, length, chunked=False)
                if body and len(body) > _WRITE_WHOLE_BYTES:
                    async with asyncio.timeout_at(deadline):
                        await _send_large(conn, head, body, decode)
                else:
                    conn.send(head + body if body else head, decode)
            else:
                async with asyncio.timeout_at(deadline):
                    await self._send_streamed(conn, method, target, headers, body, decode)
            timeline.mark_upstream_written()
            return await conn.response()
        except BaseException:
            conn.abort()
            raise

    async def _send_streamed(
        self,
        conn: UpstreamConnection,
        method: str,
        target: str,
        headers: CIMultiDict[str],
        body: AsyncIterable[bytes],
        decode: bool,
    ) -> None:
        """A body passed on as it arrives: with the client's length, or chunked.

        With a length, the body must be exactly that long (BodyLengthMismatch):
        past it, the excess would reach the upstream as the start of another
        request. The piece that completes the length is held until the body
        ends, so a body found too long has not reached it whole either.
        """
        declared = _declared_length(headers)
        conn.send(self._head(method, target, headers, None, declared is None), decode)
        if declared is None:
            async for chunk in body:
                if chunk:
                    conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                    await conn.drain()
            conn.write(b"0\r\n\r\n")
            return
        sent = 0
        last = b""
        async for chunk in body:
            if not chunk:
                continue
            if last or sent + len(chunk) > declared:
                raise BodyLengthMismatch(
                    f"the request body is longer than its Content-Length ({declared} bytes)"
                )
            sent += len(chunk)
            if sent == declared:
                last = chunk
                continue
            conn.write(chunk)
            await conn.drain()
        if sent < declared:
            raise BodyLengthMismatch(
                f"the request body is shorter than its Content-Length ({sent} of {declared} bytes)"
            )
        conn.write(last)

    def _head(
        self,
        method: str,
        target: str,
        headers: CIMultiDict[str],
        length: int | None,
        chunked: bool,
    ) -> bytes:
        lines = [f"{method} {self.path_prefix}{target} HTTP/1.1\r\n", self._host_line]
        lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
        if length is not None:
            lines.append(f"Content-Length: {length}\r\n")
        elif chunked:
            lines.append("Transfer-Encoding: chunked\r\n")
        lines.append("\r\n")
        head = "".join(lines)
        # Header values came through a parser that refuses line breaks; this
        # one C-level count keeps a future bug from splitting a request.
        if head.count("\n") != len(lines):
            raise ValueError("a header to send upstream contains a line break")
        # Bytes the client sent that are not UTF-8 pass through as they were.
        return head.encode("utf-8", "surrogateescape")

    # -- the pool -----------------------------------------------------------
    async def _connection(
        self, loop: asyncio.AbstractEventLoop, deadline: float
    ) -> UpstreamConnection:
        while True:
            idle = self._idle
            stale = loop.time() - self._idle_timeout_s
            while idle and idle[0].idle_since < stale:
                idle.popleft().abort()
            while idle:
                conn = idle.pop()
                # Closing: the server's FIN is in, connection_lost not yet run.
                if not conn.closed and not conn.closing:
                    return conn
                conn.abort()
            if not self._limit or len(self._open) + self._connecting < self._limit:
                return await self._connect(loop)
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except BaseException:
                # Woken, then cancelled or timed out before it could take the place:
                # the wake-up goes to the next in line, or that one waits for nothing.
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()
                raise

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> UpstreamConnection:
        self._connecting += 1
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                transport, conn = await loop.create_connection(
                    lambda: UpstreamConnection(loop, self._returned, self._max_response_bytes),
                    self.host,
                    self.port,
                    ssl=self._ssl,
                )
        except BaseException as exc:
            self._connecting -= 1
            self._wake_one()  # a failed attempt frees its place
            if not isinstance(exc, OSError):
                raise
            failure = connect_failure(self.host, self.port, exc)
            # A TLS fault is the server's configuration, not its absence.
            if self._reachability is not None and not isinstance(exc, ssl.SSLError):
                self._reachability.refused(failure)
            # Refused, unknown host, TLS handshake (ssl.SSLError); not the
            # connect timeout, which is an OSError too and a 504.
            if isinstance(exc, TimeoutError):
                raise
            raise UpstreamUnreachable(failure) from exc
        self._connecting -= 1
        if self._reachability is not None:
            self._reachability.connected()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._open.add(conn)
        return conn

    def _returned(self, conn: Any) -> None:
        """A connection is free again, or closed (UpstreamConnection calls this)."""
        if conn.closed:
            self._open.discard(conn)
            if conn in self._idle:
                self._idle.remove(conn)
        else:
            self._idle.append(conn)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        """Close every connection (at shutdown)."""
        for conn in list(self._open):
            conn.abort()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports finish closing


def _declared_length(headers: CIMultiDict[str]) -> int | None:
    """The Content-Length the handler set for a streamed body (None: send it chunked)."""
    value = headers.get("Content-Length")
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or len(headers.getall("Content-Length")) > 1:
        raise ValueError(f"a streamed body's Content-Length is not one number: {value!r}")
    return int(value)
