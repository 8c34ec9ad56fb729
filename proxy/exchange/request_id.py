"""A request's id: the client's ``X-Request-Id`` when it is a sane token, or one of ours.

Echoed in the answer's headers, the access log and the spans.
"""

from __future__ import annotations

import itertools
import os

from aiohttp import web

from proxy.control.check import CHECK_REQUEST_ID


def request_id(request: web.BaseRequest) -> str:
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
    # A random per-process prefix and a counter: unique, and cheaper than uuid4.
    return f"{_id_prefix}{next(_id_counter):020x}"


def _new_id_prefix() -> None:
    global _id_prefix, _id_counter
    _id_prefix = os.urandom(6).hex()
    _id_counter = itertools.count(1)


_id_prefix = ""
_id_counter = itertools.count(1)
_new_id_prefix()
os.register_at_fork(after_in_child=_new_id_prefix)
