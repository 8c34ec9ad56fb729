"""Which headers cross the proxy, in each direction (RFC 9110 section 7.6.1)."""

from __future__ import annotations

from collections.abc import Iterable

from multidict import CIMultiDict, CIMultiDictProxy

# Hop-by-hop headers, plus those the proxy recomputes for the body it sends.
_HOP_BY_HOP = frozenset(
    {
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
    }
)


def _dropped(headers: CIMultiDictProxy[str]) -> frozenset[str]:
    named = headers.get("Connection")
    if not named:
        return _HOP_BY_HOP
    return _HOP_BY_HOP | {h.strip().lower() for h in named.split(",")}


def _copy(headers: CIMultiDictProxy[str], drop: Iterable[str] = ()) -> CIMultiDict[str]:
    skip = _dropped(headers) | {d.lower() for d in drop}
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in skip)


def upstream_request_headers(
    incoming: CIMultiDictProxy[str],
    client_ip: str | None,
    scheme: str,
    request_id: str,
    judge_response: bool,
) -> CIMultiDict[str]:
    """The headers sent upstream: end-to-end ones, X-Forwarded-*, X-Request-Id."""
    # A response the proxy must read is asked for uncompressed.
    out = _copy(incoming, ("accept-encoding",) if judge_response else ())
    if client_ip:
        prior = incoming.get("X-Forwarded-For")
        out["X-Forwarded-For"] = f"{prior}, {client_ip}" if prior else client_ip
    out["X-Forwarded-Proto"] = scheme
    out["X-Request-Id"] = request_id
    return out


def client_response_headers(upstream: CIMultiDictProxy[str], decoded: bool) -> CIMultiDict[str]:
    """The upstream response's end-to-end headers, as the client gets them."""
    return _copy(upstream, ("content-encoding",) if decoded else ())
