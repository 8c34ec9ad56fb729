"""Requests HTTP parsing rejects: an OpenAI-shaped 400 that quotes nothing back.

aiohttp answers a request its parser rejects (request smuggling patterns, a
bad Content-Length, a control character in a header, a line too long, bytes
that are not HTTP) before any handler runs. Its own answer is plain text
that quotes the offending bytes, and it logs them at ERROR: a malformed
``Authorization`` header would put its token in the log and echo it back.
:class:`CleanErrors` is aiohttp's connection handler with that one method
replaced: the answer is the OpenAI error shape, naming the kind of fault
only, and the log line says the kind and the peer, never the bytes.
"""

from __future__ import annotations

import logging
from typing import TypeVar

from aiohttp import http_exceptions, web
from aiohttp.web_protocol import RequestHandler

from proxy.formats.errors import error_body

log = logging.getLogger("taxmeter.http")

# What each parser error says about the request, without quoting it.
_KINDS: tuple[tuple[type[Exception], str], ...] = (
    (http_exceptions.LineTooLong, "a request line or header is too long"),
    (http_exceptions.InvalidHeader, "an invalid header"),
    (http_exceptions.BadHttpMethod, "not an HTTP request"),
    (http_exceptions.BadStatusLine, "an invalid request line"),
    (http_exceptions.ContentLengthError, "an invalid body length"),
    (http_exceptions.TransferEncodingError, "an invalid chunked body"),
    (http_exceptions.InvalidURLError, "an invalid request target"),
)


# llhttp reports most faults as a plain BadHttpMessage whose description
# (before the quoted bytes) names the part: matched on that description only.
_WORDS = (
    ("content-length", "an invalid body length"),
    ("transfer-encoding", "an invalid transfer encoding"),
    ("chunk", "an invalid chunked body"),
    ("header", "an invalid header"),
    ("method", "not an HTTP request"),
    ("url", "an invalid request target"),
    ("version", "an invalid HTTP version"),
)


def _kind(exc: BaseException | None) -> str:
    for cls, kind in _KINDS:
        if isinstance(exc, cls):
            return kind
    if isinstance(exc, http_exceptions.HttpProcessingError):
        description = exc.message.split("\n", 1)[0].split(":", 1)[0].lower()
        for word, kind in _WORDS:
            if word in description:
                return kind
    return "a malformed request"


class CleanErrors(RequestHandler):
    """aiohttp's request handler protocol; parser errors answered and logged cleanly."""

    __slots__ = ()  # aiohttp's handler has slots; a dict per connection would cost memory

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, http_exceptions.HttpProcessingError) or status >= 500:
            return super().handle_error(request, status, exc, message)
        kind = _kind(exc)
        log.info("rejected a malformed HTTP request from %s: %s", request.remote, kind)
        response = web.Response(
            status=status,
            body=error_body(f"malformed HTTP request: {kind}", "invalid_http_request"),
            content_type="application/json",
        )
        response.force_close()  # the parser's state is unknown: no keep-alive
        return response


Handler = TypeVar("Handler", bound=CleanErrors)


def new_handler(server: web.Server, cls: type[Handler]) -> Handler:
    """What ``server()`` makes, as a ``cls`` (a :class:`CleanErrors`)."""
    # web.Server keeps its loop and handler keyword arguments in these two;
    # it offers no other way to choose the handler class.
    return cls(server, loop=server._loop, **server._kwargs)
