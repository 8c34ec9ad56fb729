"""Reading a client's request body: bounded in size, bounded in silence, inflated with bounds.

One policy, applied everywhere (see docs/reliability.md, "Request bodies"):

* a body the proxy forwards without judging is forwarded exactly as the
  client sent it: its bytes, its ``Content-Encoding`` and its
  ``Content-Length``, never inflated (:func:`passed_chunks`);
* a body the proxy judges is read whole (:func:`read_body`), inflated within
  ``max_body_bytes`` and a ratio bound (:func:`decoded`), judged, and
  forwarded inflated, with its true length and no ``Content-Encoding``.

aiohttp's own inflation is off on the proxy's listener (``auto_decompress``):
it inflated without a bound, and a body inflated by the server but framed
by the client's compressed length let the rest of it become a second,
unjudged request on the upstream connection.

Errors, and what the client gets::

    BodyError
    ├── BodyTooLarge         over max_body_bytes, raw or inflated -> 413 body_too_large
    ├── BodyTimeout          silent past client_body_timeout_s    -> 408 client_body_timeout
    ├── BodyUndecodable      not valid for its Content-Encoding   -> 400 invalid_body
    └── BodyEncodingUnknown  not gzip, deflate or identity        -> 415
                                                  unsupported_content_encoding
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import StreamReader, web

from proxy.formats.inflate import (
    Inflater,
    InflateTooLarge,
    InflateUnsupported,
    content_coding,
)


class BodyError(Exception):
    """The request body cannot be taken; ``status`` and ``code`` say what the client gets."""

    status = 400
    code = "invalid_body"


class BodyTooLarge(BodyError):
    status = 413
    code = "body_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is over the maximum of {limit} bytes (max_body_bytes)")


class BodyTimeout(BodyError):
    status = 408
    code = "client_body_timeout"

    def __init__(self, silence_s: float) -> None:
        super().__init__(
            f"the request body stopped arriving for {silence_s:g} s (client_body_timeout_s)"
        )


class BodyUndecodable(BodyError):
    status = 400
    code = "invalid_body"


class BodyEncodingUnknown(BodyError):
    status = 415
    code = "unsupported_content_encoding"


# Bodies up to this size arrive in one read anyway; reading them whole is
# cheaper than streaming them chunked.
_READ_WHOLE_BYTES = 64 * 1024


async def read_body(request: web.BaseRequest, limit: int, silence_s: float) -> bytearray | bytes:
    """The raw body, whole, read into one buffer."""
    length = request.content_length
    if length is not None and length > limit:
        raise BodyTooLarge(limit)
    content = request.content
    if content.is_eof() and content.exception() is None:
        # Nearly every small body came in with its head: it is all buffered
        # already, so it is taken at once, with no timer and no generator.
        whole = content.read_nowait()
        if len(whole) > limit:
            raise BodyTooLarge(limit)
        return whole
    chunks = _chunks(content, silence_s)
    # Grown as bytes arrive, never sized from the Content-Length up front: a
    # head that declares 32 MiB and then goes quiet must not cost 32 MiB.
    # (Growing a large buffer moves no bytes: glibc remaps it.)
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(limit)
    return body


async def passed_chunks(
    request: web.BaseRequest, limit: int, silence_s: float
) -> AsyncIterator[bytes]:
    """The raw body as it arrives, for a body forwarded unjudged; BodyTooLarge past ``limit``."""
    seen = 0
    async for chunk in _chunks(request.content, silence_s):
        seen += len(chunk)
        if seen > limit:
            raise BodyTooLarge(limit)
        yield chunk


async def passed_body(
    request: web.BaseRequest, limit: int, silence_s: float
) -> bytearray | bytes | AsyncIterator[bytes]:
    """A body forwarded unjudged: read whole when it is small, else passed on as it arrives."""
    length = request.content_length
    if length is not None and length <= _READ_WHOLE_BYTES:
        return await read_body(request, limit, silence_s)
    if length is not None and length > limit:
        raise BodyTooLarge(limit)
    return passed_chunks(request, limit, silence_s)


def decoded(body: bytearray | bytes, encoding: str | None, limit: int) -> bytearray | bytes:
    """The body with its Content-Encoding undone, within ``limit`` inflated bytes."""
    if not encoding:
        return body
    try:
        coding = content_coding(encoding)
    except InflateUnsupported as exc:
        raise BodyEncodingUnknown(
            f"{exc}: send the body as gzip, deflate or identity (one coding)"
        ) from exc
    if not coding:
        return body
    inflater = Inflater(coding, limit)
    try:
        inflated = inflater.feed(body)
        rest = inflater.finish()
    except InflateTooLarge as exc:
        raise BodyTooLarge(limit) from exc
    except ValueError as exc:  # InflateInvalid
        raise BodyUndecodable(f"the request body is not valid {coding}: {exc}") from exc
    return inflated + rest if rest else inflated


async def _chunks(content: StreamReader, silence_s: float) -> AsyncIterator[bytes]:
    """Chunks as they arrive; BodyTimeout when none comes for ``silence_s``."""
    while True:
        try:
            # No timer is left running while the chunk is with the caller.
            async with asyncio.timeout(silence_s):
                chunk = await content.readany()
        except TimeoutError:
            raise BodyTimeout(silence_s) from None
        if not chunk:
            return
        yield chunk
