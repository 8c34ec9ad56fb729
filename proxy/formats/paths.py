"""A request target's path, and its one canonical spelling (RFC 3986 6.2.2, no parameters).

Routes are matched in this spelling only; why is in :mod:`proxy.config.routes`.
"""

from __future__ import annotations

import re
import string

_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
# pchar (RFC 3986 3.3) without ';' (parameters, refused) and '%' (escapes).
PATH_CHARS = _UNRESERVED | frozenset("!$&'()*+,=:@/")
_HEX = frozenset(string.hexdigits)
_PLAIN = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,=:@/]*")  # no escapes, no ';'


# -- the request target -------------------------------------------------------


def origin_form(raw_target: str) -> str | None:
    """The path and query of a request target; None when it has no path.

    An absolute-form target (``http://host/path``, RFC 9112 3.2.2) keeps its
    path and query, never the host. An authority-form (``host:443``) or
    asterisk-form (``*``) target is no path.
    """
    if raw_target.startswith("/"):
        return raw_target
    scheme, sep, rest = raw_target.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return None
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    tail = rest[cut:]
    return tail if tail.startswith("/") else "/" + tail


def split_query(target: str) -> str:
    """The path of an origin-form target (the query is no part of the path)."""
    return target.partition("?")[0]


# -- canonical form -----------------------------------------------------------


def path_problem(path: str) -> str | None:
    """Why ``path`` is not canonical, in words; None when it is."""
    segments = path.split("/")[1:]
    for position, segment in enumerate(segments):
        if segment.replace("%2e", ".").replace("%2E", ".") in (".", ".."):
            return f"a dot segment ({segment!r})"
        if not segment and position < len(segments) - 1:
            return "an empty segment ('//')"
    i = 0
    while i < len(path):
        char = path[i]
        if char == "%":
            pair = path[i + 1 : i + 3]
            if len(pair) < 2 or not set(pair) <= _HEX:
                return "a '%' not followed by two hex digits"
            decoded = chr(int(pair, 16))
            if decoded in "/\\":
                return f"an encoded '{decoded}' (%{pair})"
            if decoded in _UNRESERVED:
                return f"a percent-encoded unreserved character (%{pair} is {decoded!r})"
            if pair != pair.upper():
                return f"lowercase hex in a percent-encoding (%{pair}, canonically %{pair.upper()})"
            i += 3
            continue
        if char == "\\":
            return "a backslash"
        if char == ";":
            return "a ';' parameter"
        if char not in PATH_CHARS:
            return f"a character not allowed in a path ({char!r})"
        i += 1
    return None


def normalise_path(path: str) -> str:
    """The canonical spelling of ``path`` (RFC 3986 6.2.2, and no parameters).

    Escapes of unreserved characters are decoded, of ``/`` and ``\\`` read
    as ``/`` as a lenient server would, other hex upper-cased; characters a
    path may not hold are encoded; ``;`` parameters, empty and dot segments
    are removed. A trailing slash is kept (it is the same route).
    """
    if _PLAIN.fullmatch(path) and "//" not in path and "/." not in path:
        return path  # the usual path: nothing to decode, remove or resolve
    chars: list[str] = []
    i = 0
    while i < len(path):
        char = path[i]
        pair = path[i + 1 : i + 3]
        if char == "%" and len(pair) == 2 and set(pair) <= _HEX:
            decoded = chr(int(pair, 16))
            if decoded in "/\\":
                decoded = "/"
            plain = decoded in _UNRESERVED or decoded == "/"
            chars.append(decoded if plain else "%" + pair.upper())
            i += 3
            continue
        if char == "\\":
            chars.append("/")
        elif char in PATH_CHARS or char == ";":
            chars.append(char)
        else:
            chars.extend(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
        i += 1
    kept: list[str] = []
    trailing = False
    for raw_segment in "".join(chars).split("/")[1:]:
        segment = raw_segment.partition(";")[0]
        trailing = segment in ("", ".", "..")
        if segment == "..":
            if kept:
                kept.pop()
        elif segment not in ("", "."):
            kept.append(segment)
    if not kept:
        return "/"
    return "/" + "/".join(kept) + ("/" if trailing else "")


def path_segments(path: str) -> list[str]:
    """A canonical path's segments; a trailing slash is the same route."""
    segments = path.split("/")[1:]
    if segments and not segments[-1]:
        segments.pop()
    return segments
