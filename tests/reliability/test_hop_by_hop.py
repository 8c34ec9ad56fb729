"""Hop-by-hop headers never cross the proxy, in either direction (RFC 9110 section 7.6.1).

Every ``Connection`` line counts, not only the first: ``Connection: keep-alive``
then ``Connection: X-Secret`` names X-Secret as hop-by-hop, and before it was
forwarded. Raw sockets on both sides, since HTTP clients and servers fold or
rewrite repeated Connection lines.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from tests.loopback import ProxyFactory
from tests.reliability.recording_upstream import recording_upstream

# Each header RFC 9110 section 7.6.1 names (and Proxy-Connection, which some
# clients still send), with a value; Transfer-Encoding is the proxy's own framing.
HOP_BY_HOP = {
    "Keep-Alive": "timeout=5",
    "Proxy-Connection": "keep-alive",
    "TE": "trailers",
    "Trailer": "X-Checksum",
    "Upgrade": "h2c",
    "Proxy-Authorization": "Basic c2VjcmV0",
    "Proxy-Authenticate": "Basic realm=x",
    "X-Taxmeter-Admin-Token": "the proxy's own secret",
}
# Connection lines, each naming one custom header hop-by-hop.
CONNECTION_LINES = {
    "keep-alive": None,
    "X-Secret-One": "1",
    "x-secret-two, keep-alive": "2",
    " X-Secret-Three ,X-Secret-Four": "3",
}


def request_head(body: bytes, route: str = "/v1/anything") -> bytes:
    lines = [b"POST %b HTTP/1.1" % route.encode(), b"Host: x", b"Content-Length: %d" % len(body)]
    lines += [f"{name}: {value}".encode() for name, value in HOP_BY_HOP.items()]
    for line, value in CONNECTION_LINES.items():
        lines.append(f"Connection: {line}".encode())
        if value is not None:
            for name in line.split(","):
                if name.strip().lower() != "keep-alive":
                    lines.append(f"{name.strip()}: {value}".encode())
    lines.append(b"X-Kept: yes")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


NAMED = {n.strip().lower() for line in CONNECTION_LINES for n in line.split(",")} - {"keep-alive"}


async def exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    head = await reader.readuntil(b"\r\n\r\n")
    writer.close()
    return head


CHAT = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
# Unjudged (forwarded as sent) and judged (read whole, by the filter chain).
ROUTES = {"/v1/anything": b"{}", "/v1/chat/completions": CHAT}


@pytest.mark.parametrize("route", ROUTES)
async def test_no_hop_by_hop_header_reaches_the_model(
    start_proxy: ProxyFactory, route: str
) -> None:
    async with recording_upstream() as upstream:
        proxy = await start_proxy(
            {"filters": [{"name": "pii", "type": "pii"}]}, upstream=upstream.url
        )
        head = await exchange(proxy.server.port, request_head(ROUTES[route], route))
        assert head.startswith(b"HTTP/1.1 200")
        (seen,) = upstream.seen
    for name in [*HOP_BY_HOP, *NAMED]:
        assert name.lower() not in seen.headers, name
    assert seen.headers["x-kept"] == "yes"


@contextlib.asynccontextmanager
async def answering_with(head_lines: list[bytes]) -> AsyncIterator[str]:
    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"\r\n".join([b"HTTP/1.1 200 OK", *head_lines, b"Content-Length: 2"])
                     + b"\r\n\r\nok")  # fmt: skip
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


@pytest.mark.parametrize("route", ["/v1/anything", "/v1/chat/completions"])
async def test_no_hop_by_hop_header_of_the_model_reaches_the_client(
    start_proxy: ProxyFactory, route: str
) -> None:
    lines = [f"{name}: {value}".encode() for name, value in HOP_BY_HOP.items()
             if name != "X-Taxmeter-Admin-Token"]  # fmt: skip
    for line, value in CONNECTION_LINES.items():
        lines.append(f"Connection: {line}".encode())
        if value is not None:
            lines += [f"{n.strip()}: {value}".encode() for n in line.split(",")
                      if n.strip().lower() != "keep-alive"]  # fmt: skip
    lines += [b"X-Kept: yes", b"Content-Type: text/plain"]
    async with answering_with(lines) as url:
        proxy = await start_proxy(upstream=url)
        body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
        data = (b"POST %b HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%b" % (route.encode(), len(body), body))  # fmt: skip
        head = (await exchange(proxy.server.port, data)).decode("latin-1").lower()
    names = {line.split(":", 1)[0] for line in head.split("\r\n")[1:] if ":" in line}
    for name in [*HOP_BY_HOP, *NAMED]:
        assert name.lower() not in names, name
    if route == "/v1/anything":
        assert "x-kept" in names


@pytest.mark.parametrize("route", ROUTES)
async def test_a_client_s_100_continue_is_answered_by_the_proxy_not_forwarded(
    start_proxy: ProxyFactory, route: str
) -> None:
    async with recording_upstream() as upstream:
        proxy = await start_proxy(upstream=upstream.url)
        body = ROUTES[route]
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.server.port)
        writer.write(b"POST %b HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n"
                     % (route.encode(), len(body)))  # fmt: skip
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100")
        writer.write(body)
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        writer.close()
        (seen,) = upstream.seen
    assert "expect" not in seen.headers
