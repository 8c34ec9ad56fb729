"""One keep-alive HTTP/1.1 connection to the upstream: writes a request, parses its answer.

The proxy talks to exactly one upstream, always the same way: one request,
one response, then the connection goes back to the pool
(:mod:`proxy.upstream.pool`). aiohttp's client builds a dozen objects per
request for features a sidecar never uses (redirects, cookies, traces,
proxies, a URL per request) and was a third of the proxy's CPU per request;
this is the part it needs. The bytes are parsed by llhttp (through
httptools), the parser Node.js and aiohttp use.

A connection serves another request only when its answer was read exactly to
its end and nothing follows: bytes after the end (a second answer in the same
write, the start of one, bytes arriving while the answer is still read, bytes
waiting in the kernel when it is handed back) close it, or they would be read
as the next request's answer. Each exchange parses with a parser of its own,
so nothing one answer left in a parser's state becomes part of the next.

A connection notes when it last read bytes (:attr:`UpstreamConnection.read_ns`),
so time an answer spends waiting for the handler's task to resume is counted
as the proxy's, not the model's (see :mod:`proxy.measure.timeline`).
"""

from __future__ import annotations

import asyncio
import select
from collections.abc import Callable
from time import perf_counter_ns
from typing import Any, cast

import httptools
from multidict import CIMultiDict

from proxy.upstream.response import (
    UpstreamError,
    UpstreamMalformed,
    UpstreamReset,
    UpstreamResponse,
)
from proxy.upstream.timer import ReadTimer

# llhttp sets no limit on a head; aiohttp's client allowed 8 KB a line. A
# model server's head is a few hundred bytes: past this, the answer is junk.
MAX_HEAD_BYTES = 64 * 1024


class _AfterTheEnd(Exception):
    """Raised in a parser callback to stop at a byte that follows the end of the answer."""


class UpstreamConnection(asyncio.Protocol):
    """One connection: writes a request, parses its answer, waits in the pool between."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_idle: Callable[[Any], None],
        max_response_bytes: int,
    ) -> None:
        self.loop = loop
        self._on_idle = on_idle  # called with the connection when it may be reused
        self._max_response_bytes = max_response_bytes  # of an answer read with decode
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.read_ns: int | None = None
        self.closed = False
        self.busy = False
        self.idle_since = 0.0  # loop time it last went back to the pool
        self.read_timeout_s = 0.0
        self.deadline = 0.0  # loop time by which the whole exchange must be over
        self.head_only = False  # a HEAD request: the answer has no body, whatever it says
        # False: of the answers read with decode, only an event stream is decoded; a
        # whole answer nothing judges is relayed as it came, unbounded (see pool.request).
        self.decode_whole = True
        self._head: asyncio.Future[UpstreamResponse] | None = None
        self._decode = False
        self._response: UpstreamResponse | None = None
        self._head_bytes = 0  # read before the answer's head was complete
        self._reason = b""
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._informational = False
        self._keep_alive = False
        self._message_done = False
        # A 204 whose head declares a body (RFC 9110 forbids it, unlike a HEAD's or a
        # 304's length): a server that sends the body anyway, late, would answer the
        # next request on the connection with it.
        self._declared_body = False
        self._reading_paused = False
        self._writing_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._timer = ReadTimer(loop)
        self._poll: select.poll | None = None  # the socket, for bytes the loop has not read

    # -- the exchange, from the client's side ----------------------------
    def send(self, data: bytes | bytearray | memoryview, decode: bool) -> None:
        """Start an exchange by writing the request head (and the body, if it is bytes)."""
        assert self.transport is not None
        self.busy = True
        self.read_ns = None
        # A HEAD answer leaves the parser expecting a body it will never get.
        self._parser = httptools.HttpResponseParser(self)
        self._decode = decode
        self._response = None
        self._head_bytes = 0
        self._message_done = False
        self._keep_alive = False
        self._declared_body = False
        self._head = self.loop.create_future()
        self.transport.write(data)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self) -> None:
        """Wait until the kernel takes what was written (for a body sent in chunks)."""
        if self.closed:
            raise UpstreamReset("the model server closed the connection")
        if self._writing_paused:
            self._drained = self.loop.create_future()
            await self._drained

    async def response(self) -> UpstreamResponse:
        """The answer's status and headers, once they arrived."""
        head = self._head
        assert head is not None
        if not head.done():
            self.watch(head)
            try:
                await head
            except BaseException:
                self.abort()
                raise
            finally:
                self.unwatch()
        return head.result()

    def watch(self, waiter: asyncio.Future[Any]) -> None:
        """Fail ``waiter`` with TimeoutError after the read timeout or at the deadline,
        unless it is done first (whoever awaits it stops the watch when it is)."""
        self._timer.watch(waiter, min(self.loop.time() + self.read_timeout_s, self.deadline))

    def unwatch(self) -> None:
        self._timer.unwatch()

    def response_done(self, response: UpstreamResponse, reusable: bool) -> None:
        """``response`` was read (to its end, if ``reusable``): the connection is
        free again, or closed. Only the answer the connection is serving counts: a
        finished answer closed again must not end the next request's exchange."""
        if not self.busy or response is not self._response:
            return
        done = reusable and self._message_done and self._keep_alive and not self.closed
        # A byte, or the end, waiting unread in the kernel (a paused read left
        # it there) would be the next request's answer. poll(2), no wait: ~1 µs.
        if done and (self._poll is None or not self._poll.poll(0)):
            self.busy = False
            self._response = None
            self.idle_since = self.loop.time()
            self._on_idle(self)
        else:
            self.abort()

    @property
    def closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def abort(self) -> None:
        """Close at once; the connection is not reused."""
        if self.transport is not None and not self.closed:
            self.transport.abort()
        self._lost(UpstreamReset("the model server closed the connection"))

    def pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = False
            self.transport.resume_reading()

    # -- asyncio.Protocol ---------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not registered as asyncio.Transport subclasses.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self._poll = select.poll()
            self._poll.register(sock.fileno(), select.POLLIN)

    def data_received(self, data: bytes) -> None:
        self.read_ns = perf_counter_ns()
        if not self.busy or self._message_done:
            # Bytes no request asked for: the connection cannot be trusted.
            self.abort()
            return
        try:
            self._parser.feed_data(data)
            if self._response is None:
                self._head_bytes += len(data)
                if self._head_bytes > MAX_HEAD_BYTES:
                    raise UpstreamMalformed(f"the answer's head is over {MAX_HEAD_BYTES} bytes")
        except UpstreamError as exc:
            self._fail_and_close(exc)
        except httptools.HttpParserUpgrade:
            self._fail_and_close(UpstreamMalformed("the model server switched protocols"))
        except httptools.HttpParserError as exc:
            cause = exc.__context__  # what a callback raised
            if isinstance(cause, _AfterTheEnd):
                self.abort()  # the answer itself is whole: its reader still gets it
            elif isinstance(cause, UpstreamError):
                self._fail_and_close(cause)
            else:
                self._fail_and_close(UpstreamMalformed(f"malformed HTTP answer: {exc}"))

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(UpstreamReset(f"the model server closed the connection: {exc or 'EOF'}"))

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    # -- httptools callbacks ------------------------------------------------
    def on_message_begin(self) -> None:
        if self._message_done:
            raise _AfterTheEnd
        self._raw_headers = []
        self._reason = b""

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        self._informational = 100 <= status < 200
        if self._informational:
            return  # 100 Continue and the like: the answer follows
        headers: CIMultiDict[str] = CIMultiDict(
            [(name.decode("latin-1"), value.decode("latin-1")) for name, value in self._raw_headers]
        )
        head = self._head
        reason = self._reason.decode("latin-1")
        # An undecodable encoding or a length over the cap raises here;
        # data_received fails the exchange.
        has_body = not self.head_only and status not in (204, 304)
        self._declared_body = status == 204 and (
            headers.get("Content-Length", "0").strip() != "0" or "Transfer-Encoding" in headers
        )
        decode = self._decode and (
            self.decode_whole or headers.get("Content-Type", "").startswith("text/event-stream")
        )
        response = UpstreamResponse(
            self, status, reason, headers, decode, self._max_response_bytes, has_body
        )
        self._response = response
        if head is not None and not head.done():
            head.set_result(response)
        if self.head_only:
            # The parser expects the body the headers describe; any byte of it
            # is one after the end (on_body), and the next exchange has its own parser.
            self._message_done = True
            self._keep_alive = self._parser.should_keep_alive() and not self._declared_body
            response.finish()

    def on_body(self, body: bytes) -> None:
        if self._message_done:
            raise _AfterTheEnd
        if self._response is not None:
            self._response.feed(body)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        if self._message_done:
            return  # a HEAD answer's, said to have no body: it ended with its head
        self._message_done = True
        self._keep_alive = self._parser.should_keep_alive() and not self._declared_body
        if self._response is not None:
            self._response.finish()

    # -- ending -----------------------------------------------------------
    def _fail_and_close(self, error: UpstreamError) -> None:
        self._fail(error)
        self.abort()

    def _fail(self, error: BaseException) -> None:
        head = self._head
        if head is not None and not head.done():
            head.set_exception(error)
            # Whoever awaits the head still gets the error; when a failed body
            # write ended the exchange first, nobody will, and that is no news.
            head.exception()
        if self._response is not None:
            self._response.fail(error)

    def _lost(self, error: UpstreamError) -> None:
        if self.closed:
            return
        self.closed = True
        self._timer.cancel()
        if self._response is not None and not self._message_done and self._until_eof():
            # No length and not chunked: the end of the connection ends the body.
            self._message_done = True
            try:
                self._response.finish()
            except UpstreamError as exc:
                error = exc  # a compressed body cut short, or over the cap
        self._fail(error)
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_exception(error)
        self._on_idle(self)  # the pool forgets it

    def _until_eof(self) -> bool:
        response = self._response
        assert response is not None
        return (
            response.content_length is None
            and "chunked" not in response.headers.get("Transfer-Encoding", "").lower()
        )
