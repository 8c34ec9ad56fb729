"""Which headers cross the proxy, in each direction (RFC 9110 section 7.6.1)."""

from __future__ import annotations

from multidict import CIMultiDict, CIMultiDictProxy

# Hop-by-hop headers, plus those the proxy recomputes for the body it sends.
_HOP_BY_HOP = (
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    # The proxy answers a client's 100-continue itself, and sends the body without
    # waiting for one: an upstream told to expect it might answer before the body.
    "expect",
    # The proxy's own admin token (proxy.control.variants) is never the model server's business.
    "x-taxmeter-admin-token",
)
# "Connection" values that name no other header: the common case, no extra work.
_PLAIN_CONNECTION = frozenset({"", "keep-alive", "close"})


Headers = CIMultiDict[str] | CIMultiDictProxy[str]


def _copy(headers: Headers, also_drop: tuple[str, ...] = ()) -> CIMultiDict[str]:
    # Copying all and deleting the few hop-by-hop names (C-level, case-insensitive
    # lookups) is ten times cheaper than filtering every header in Python.
    # Every Connection line counts, not only the first (RFC 9110 section 7.6.1).
    named = headers.getall("Connection", ())
    out = headers.copy()
    for name in _HOP_BY_HOP:
        if name in out:
            del out[name]
    for name in also_drop:
        if name in out:
            del out[name]
    for line in named:
        line = line.strip().lower()
        if line in _PLAIN_CONNECTION:
            continue
        for name in line.split(","):
            name = name.strip()
            if name and name in out:
                del out[name]
    return out


def upstream_request_headers(
    incoming: CIMultiDictProxy[str],
    client_ip: str | None,
    scheme: str,
    request_id: str,
    judge_response: bool,
    body_inflated: bool,
) -> CIMultiDict[str]:
    """The headers sent upstream: end-to-end ones, X-Forwarded-*, X-Request-Id.

    ``body_inflated``: the body goes upstream inflated, so its Content-Encoding
    does not. (Content-Length is always the proxy's own, for the bytes it sends.)
    """
    # A response the proxy must read is asked for uncompressed.
    drop: tuple[str, ...] = ("accept-encoding",) if judge_response else ()
    if body_inflated:
        drop += ("content-encoding",)
    out = _copy(incoming, drop)
    if client_ip:
        prior = incoming.get("X-Forwarded-For")
        out["X-Forwarded-For"] = f"{prior}, {client_ip}" if prior else client_ip
    out["X-Forwarded-Proto"] = scheme
    out["X-Request-Id"] = request_id
    return out


def client_response_headers(upstream: Headers, decoded: bool) -> CIMultiDict[str]:
    """The upstream response's end-to-end headers, as the client gets them."""
    return _copy(upstream, ("content-encoding",) if decoded else ())
