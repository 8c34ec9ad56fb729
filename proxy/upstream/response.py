"""An upstream answer as the proxy reads it, and the ways an upstream call fails.

An answer the proxy reads (``decode``: a judged JSON answer or stream) is
inflated here, a bounded step at a time (:mod:`proxy.formats.inflate`), and may be at
most ``max_bytes`` (``upstream.max_response_bytes``) once inflated: a
Content-Length over it fails at once, and every read counts, with or without
a Content-Encoding. An answer passed through as it is is neither inflated nor
capped: it goes to the client as it arrives, held back by the client's pace.

Errors, and what the client gets for each (see :func:`proxy.upstream.call.classify_failure`)::

    UpstreamError
    ├── UpstreamUnreachable  the connection could not be made     -> 502 upstream_unreachable
    ├── UpstreamReset        it closed before the answer was done -> 502 upstream_reset
    ├── UpstreamMalformed    the answer is not valid HTTP/1.1     -> 502 upstream_malformed
    └── UpstreamTooLarge     over max_bytes once inflated, or
                             inflating like a bomb                -> 502 upstream_response_too_large
    TimeoutError             connect, read silence or total time  -> 504 upstream_timeout
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from multidict import CIMultiDict

from proxy.formats.inflate import (
    InflateError,
    Inflater,
    InflateTooLarge,
    InflateUnsupported,
    content_coding,
)


class Connection(Protocol):
    """What an answer needs of the connection it is read from.

    That is an :class:`~proxy.upstream.connection.UpstreamConnection`, which builds
    its answers; known here by what it does, so imports go one way (connection to
    response)."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    @property
    def read_ns(self) -> int | None: ...

    def watch(self, waiter: asyncio.Future[Any]) -> None: ...

    def unwatch(self) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def response_done(self, response: UpstreamResponse, reusable: bool) -> None: ...

    def abort(self) -> None: ...


# Answers being read to their end after the client got what it needed (strong refs).
_FINISHING: set[asyncio.Future[None]] = set()


class UpstreamError(Exception):
    """The upstream call failed."""


class UpstreamUnreachable(UpstreamError):
    """No connection could be made (refused, unknown host, TLS handshake failed)."""


class UpstreamReset(UpstreamError):
    """The connection closed or was reset before the answer was complete."""


class UpstreamMalformed(UpstreamError):
    """What the upstream sent is not a valid HTTP/1.1 answer (or not the one expected)."""


class UpstreamTooLarge(UpstreamError):
    """An answer the proxy reads is over ``upstream.max_response_bytes``, once inflated."""


# A response's body is read as it arrives; past this many unread bytes the
# connection stops reading, so a slow client holds back the upstream instead
# of filling the proxy's memory.
_BUFFER_HIGH = 256 * 1024


def _upstream_error(exc: InflateError) -> UpstreamError:
    if isinstance(exc, InflateTooLarge):
        return UpstreamTooLarge(str(exc))
    return UpstreamMalformed(str(exc))


class UpstreamResponse:
    """An upstream response: status and headers at once, the body as it arrives."""

    __slots__ = (
        "_chunks",
        "_conn",
        "_error",
        "_finishing",
        "_inflater",
        "_left",
        "_size",
        "_waiter",
        "complete",
        "content_length",
        "decoded",
        "headers",
        "reason",
        "status",
    )

    def __init__(
        self,
        conn: Connection,
        status: int,
        reason: str,
        headers: CIMultiDict[str],
        decode: bool,
        max_bytes: int,
        has_body: bool,
    ) -> None:
        """``decode``: inflate the body and hold it to ``max_bytes`` (an answer
        the proxy reads); raises UpstreamTooLarge when its length is over, and
        UpstreamMalformed for a Content-Encoding it cannot undo. ``has_body``:
        False for an answer to HEAD, a 204 or a 304, whose length is not its own."""
        self._conn = conn
        self._finishing: asyncio.Future[None] | None = None
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
        self._inflater: Inflater | None = None
        self._left: int | None = None  # bytes the body may still be; None: no cap
        self.decoded = decode  # the body is read inflated, within max_bytes
        if not decode:
            return
        stated = self.content_length if has_body else None
        if stated is not None and stated > max_bytes:
            raise UpstreamTooLarge(
                f"the answer's Content-Length is over {max_bytes} bytes"
                " (upstream.max_response_bytes)"
            )
        try:
            coding = content_coding(headers.get("Content-Encoding"))
        except InflateUnsupported as exc:
            raise UpstreamMalformed(str(exc)) from exc
        if coding:
            self._inflater = Inflater(coding, max_bytes)  # counts what it inflates
        else:
            self._left = max_bytes

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
        if self._finishing is not None:
            return  # finish_in_background() closes it when the end is read
        # (A second close does nothing: by then the connection may serve another request.)
        self._conn.response_done(self, reusable=self.at_eof())

    def finish_in_background(self, most_bytes: int, within_s: float) -> None:
        """The client has its answer: read the rest off the request's path (a
        stream's own end after its terminal event), then close() as usual, so
        the connection is reused. More than ``most_bytes``, or longer than
        ``within_s``: closed instead."""
        task = asyncio.ensure_future(self._finish(most_bytes, within_s))
        self._finishing = task
        _FINISHING.add(task)
        task.add_done_callback(_FINISHING.discard)

    async def _finish(self, most_bytes: int, within_s: float) -> None:
        try:
            async with asyncio.timeout(within_s):
                while most_bytes > 0:
                    chunk = await self.read_chunk()
                    if not chunk:
                        break
                    most_bytes -= len(chunk)
        except (UpstreamError, TimeoutError):
            pass
        finally:
            self._finishing = None
            self.close()

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
        """Take bytes of the body; raises UpstreamTooLarge or UpstreamMalformed
        (from a parser callback: the connection fails the answer and closes)."""
        if self._inflater is not None:
            try:
                data = self._inflater.feed(data)
            except InflateError as exc:
                raise _upstream_error(exc) from exc
            if not data:
                return
        elif self._left is not None:
            self._left -= len(data)
            if self._left < 0:
                raise UpstreamTooLarge("the answer is over upstream.max_response_bytes")
        self._chunks.append(data)
        self._size += len(data)
        if self._size > _BUFFER_HIGH:
            self._conn.pause_reading()
        self._wake()

    def finish(self) -> None:
        """The body's last byte arrived; raises as :meth:`feed` does."""
        if self._inflater is not None:
            try:
                rest = self._inflater.finish()
            except InflateError as exc:
                raise _upstream_error(exc) from exc
            if rest:
                self._chunks.append(rest)
                self._size += len(rest)
        self.complete = True
        self._wake()

    def fail(self, error: BaseException) -> None:
        if not self.complete and self._error is None:
            self._error = error
        self._wake()
