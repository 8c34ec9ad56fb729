"""An upstream answer as the proxy reads it, and the ways an upstream call fails.

Errors, and what the client gets for each (see :func:`proxy.upstream.classify_failure`)::

    UpstreamError
    ├── UpstreamUnreachable   the connection could not be made     -> 502 upstream_unreachable
    ├── UpstreamReset         it closed before the answer was done -> 502 upstream_reset
    └── UpstreamMalformed     the answer is not valid HTTP/1.1     -> 502 upstream_malformed
    TimeoutError              connect, read silence or total time  -> 504 upstream_timeout
"""

from __future__ import annotations

import asyncio
import zlib
from typing import TYPE_CHECKING, Any

from multidict import CIMultiDict

if TYPE_CHECKING:
    from proxy.upstream_conn import UpstreamConnection


class UpstreamError(Exception):
    """The upstream call failed."""


class UpstreamUnreachable(UpstreamError):
    """No connection could be made (refused, unknown host, TLS handshake failed)."""


class UpstreamReset(UpstreamError):
    """The connection closed or was reset before the answer was complete."""


class UpstreamMalformed(UpstreamError):
    """What the upstream sent is not a valid HTTP/1.1 answer (or not the one expected)."""


# A response's body is read as it arrives; past this many unread bytes the
# connection stops reading, so a slow client holds back the upstream instead
# of filling the proxy's memory.
_BUFFER_HIGH = 256 * 1024

_DECODABLE = {b"gzip": 16 + zlib.MAX_WBITS, b"x-gzip": 16 + zlib.MAX_WBITS, b"deflate": 0}


class UpstreamResponse:
    """An upstream response: status and headers at once, the body as it arrives."""

    __slots__ = (
        "_chunks",
        "_conn",
        "_decoder",
        "_deflate",
        "_error",
        "_size",
        "_waiter",
        "complete",
        "content_length",
        "headers",
        "reason",
        "status",
    )

    def __init__(
        self,
        conn: UpstreamConnection,
        status: int,
        reason: str,
        headers: CIMultiDict[str],
        decode: bool,
    ) -> None:
        self._conn = conn
        self.status = status
        self.reason = reason
        self.headers = headers
        length = headers.get("Content-Length")
        self.content_length = int(length) if length is not None and length.isdigit() else None
        self.complete = False  # the last byte of the body has arrived
        self._chunks: list[bytes] = []
        self._size = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._decoder: Any = None
        self._deflate = False
        if decode:
            encoding = headers.get("Content-Encoding", "identity").strip().lower()
            if encoding not in ("identity", ""):
                wbits = _DECODABLE.get(encoding.encode())
                if wbits is None:
                    raise UpstreamMalformed(f"cannot decode Content-Encoding {encoding!r}")
                self._deflate = wbits == 0
                self._decoder = zlib.decompressobj(wbits or zlib.MAX_WBITS)

    @property
    def last_read_ns(self) -> int | None:
        """When the connection last read bytes of this answer (None: not yet)."""
        return self._conn.read_ns

    @property
    def buffered(self) -> int:
        """Bytes of the body read from the connection and not yet taken."""
        return self._size

    def at_eof(self) -> bool:
        return self.complete and not self._chunks

    async def read_chunk(self) -> bytes:
        """What arrived since the last call, waiting for something; b"" at the end."""
        if not self._chunks:
            if self._error is not None:
                raise self._error
            if self.complete:
                return b""
            await self._wait()
            if not self._chunks:
                if self._error is not None:
                    raise self._error
                return b""
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        if self._size > _BUFFER_HIGH:
            self._conn.resume_reading()
        self._size = 0
        return data

    async def read(self) -> bytes:
        """The whole body."""
        parts = []
        while chunk := await self.read_chunk():
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        """Done with the answer: a connection read to the end serves the next
        request; one with bytes unread is closed."""
        self._conn.response_done(reusable=self.at_eof())

    # -- fed by the connection ---------------------------------------------
    async def _wait(self) -> None:
        waiter = self._waiter = self._conn.loop.create_future()
        self._conn.watch(waiter)
        try:
            await waiter
        except BaseException:
            self._conn.abort()
            raise
        finally:
            self._conn.unwatch()
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def feed(self, data: bytes) -> None:
        if self._decoder is not None:
            try:
                data = self._decoder.decompress(data)
            except zlib.error as exc:
                if not self._deflate:
                    self.fail(UpstreamMalformed(f"the body does not decompress: {exc}"))
                    return
                # "deflate" is zlib-wrapped by the standard and raw in practice.
                self._decoder, self._deflate = zlib.decompressobj(-zlib.MAX_WBITS), False
                self.feed(data)
                return
            if not data:
                return
        self._chunks.append(data)
        self._size += len(data)
        if self._size > _BUFFER_HIGH:
            self._conn.pause_reading()
        self._wake()

    def finish(self) -> None:
        if self._decoder is not None:
            rest = self._decoder.flush()
            if rest:
                self._chunks.append(rest)
        self.complete = True
        self._wake()

    def fail(self, error: BaseException) -> None:
        if not self.complete and self._error is None:
            self._error = error
        self._wake()
