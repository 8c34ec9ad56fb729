"""A request's id: the client's ``X-Request-Id`` when it is a sane token, or one of ours.

Echoed in the answer's headers, the access log and the spans.
"""

from __future__ import annotations

import itertools
import os
import weakref

from aiohttp import web

from proxy.control.check import CHECK_REQUEST_ID


class RequestIds:
    """Our ids, for requests that bring none: a random prefix and a counter.

    Unique, and cheaper than uuid4. One per handler, made where it is built;
    a process forked from this one gets a prefix of its own.
    """

    def __init__(self) -> None:
        self._prefix = ""
        self._counter = itertools.count(1)
        self._renew()
        renew = weakref.WeakMethod(self._renew)  # the hook must not keep this alive
        os.register_at_fork(after_in_child=lambda: (method := renew()) and method())

    def _renew(self) -> None:
        self._prefix = os.urandom(6).hex()
        self._counter = itertools.count(1)

    def of(self, request: web.BaseRequest) -> str:
        given = request.headers.get("X-Request-Id")
        # Passed through only when it is a sane token; it is echoed in headers and logs.
        # Never the admin check's id: filters' logs tell a check from traffic by it.
        if (
            given
            and given != CHECK_REQUEST_ID
            and len(given) <= 128
            and given.isascii()
            and given.isprintable()
        ):
            return given
        return f"{self._prefix}{next(self._counter):020x}"
