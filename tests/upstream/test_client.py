"""The upstream client (proxy.upstream.pool, proxy.upstream.connection) against a raw-socket server
(tests/upstream/raw_upstream.py).
"""

from __future__ import annotations

import asyncio
import gzip
import shutil
import socket
import ssl
import subprocess
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from time import perf_counter_ns

import pytest
from multidict import CIMultiDict

from proxy.config.schema import UpstreamConfig
from proxy.upstream.connection import MAX_HEAD_BYTES
from proxy.upstream.pool import UpstreamPool
from proxy.upstream.response import UpstreamMalformed, UpstreamReset, UpstreamUnreachable
from tests.upstream.raw_upstream import (
    RawServer,
    get,
    ok,
    pool_for,
    raw_server,
    read_all,
    response,
)


async def test_a_connection_serves_request_after_request() -> None:
    async with raw_server(ok) as (server, url):
        pool = pool_for(url)
        for _ in range(5):
            assert await read_all(pool) == (200, b"hello")
        assert server.connections == 1
        await pool.close()


async def test_the_request_line_and_host_are_the_upstreams() -> None:
    async with raw_server(ok) as (server, url):
        pool = pool_for(url + "/prefix")
        headers = CIMultiDict([("X-One", "1"), ("X-One", "2")])
        await read_all(pool, target="/v1/chat?a=b", method="POST", body=b"{}", headers=headers)
        head = server.requests[0].decode()
        port = url.rsplit(":", 1)[1]
        assert head.startswith("POST /prefix/v1/chat?a=b HTTP/1.1\r\n")
        assert f"\r\nHost: 127.0.0.1:{port}\r\n" in head
        assert "\r\nX-One: 1\r\nX-One: 2\r\n" in head
        assert head.endswith("Content-Length: 2\r\n\r\n{}")
        await pool.close()


@pytest.mark.parametrize(
    "rounds",
    # In the second, the first round opens both and the later ones reuse them.
    [(8,), (2, 6, 6)],
    ids=["in one round", "after connections were made and reused"],
)
async def test_no_more_than_max_connections_are_open(rounds: tuple[int, ...]) -> None:
    async def slow(head: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.02)
        writer.write(response("200 OK", b"x"))
        return True

    async with raw_server(slow) as (server, url):
        pool = pool_for(url, max_connections=2)
        for round_size in rounds:
            answers = await asyncio.gather(*(read_all(pool) for _ in range(round_size)))
            assert answers == [(200, b"x")] * round_size
        assert (server.most_open, server.connections) == (2, 2)
        await pool.close()


async def test_a_request_waiting_for_a_connection_times_out_at_the_total() -> None:
    async def hang(head: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(2)
        return False

    async with raw_server(hang) as (_, url):
        pool = pool_for(url, max_connections=1, total_timeout_s=0.2)
        first = asyncio.ensure_future(get(pool))
        await asyncio.sleep(0.05)
        with pytest.raises(TimeoutError):
            await get(pool)
        with pytest.raises(TimeoutError):
            await first
        await pool.close()


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data)[2:-4]),  # raw deflate, as servers send it
    ],
)
async def test_a_compressed_answer_is_decoded_when_asked(
    encoding: str, encode: Callable[[bytes], bytes]
) -> None:
    text = b'{"text": "' + b"many words " * 1000 + b'"}'

    async def compressed(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(response("200 OK", encode(text), f"Content-Encoding: {encoding}"))
        return True

    async with raw_server(compressed) as (_, url):
        pool = pool_for(url)
        assert await read_all(pool, decode=True) == (200, text)
        assert await read_all(pool, decode=False) == (200, encode(text))
        await pool.close()


async def test_an_encoding_it_cannot_decode_is_malformed() -> None:
    async def brotli(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(response("200 OK", b"\x8b\x02\x80", "Content-Encoding: br"))
        return True

    async with raw_server(brotli) as (_, url):
        pool = pool_for(url)
        with pytest.raises(UpstreamMalformed, match="br"):
            await get(pool, decode=True)
        assert await read_all(pool) == (200, b"\x8b\x02\x80")  # passed through as it is
        await pool.close()


async def test_a_corrupt_gzip_body_is_malformed() -> None:
    async def corrupt(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(response("200 OK", b"not gzip at all", "Content-Encoding: gzip"))
        return True

    async with raw_server(corrupt) as (_, url):
        pool = pool_for(url)
        answer = await get(pool, decode=True)
        with pytest.raises(UpstreamMalformed, match="decompress"):
            await answer.read()
        answer.close()
        await pool.close()


@pytest.mark.parametrize("framing", ["content-length", "until-close"])
async def test_a_gzip_body_cut_short_is_malformed(framing: str) -> None:
    cut = gzip.compress(b"many words " * 1000)[:-20]

    async def truncated(head: bytes, writer: asyncio.StreamWriter) -> bool:
        if framing == "content-length":
            writer.write(response("200 OK", cut, "Content-Encoding: gzip"))
            return True
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n" + cut)
        return False

    async with raw_server(truncated) as (_, url):
        pool = pool_for(url)
        answer = await get(pool, decode=True)
        with pytest.raises(UpstreamMalformed, match="ends before its end"):
            await answer.read()
        answer.close()
        assert pool.open_connections == 0
        await pool.close()


async def test_100_continue_is_skipped() -> None:
    async def continued(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(response("201 Created", b"made"))
        return True

    async with raw_server(continued) as (server, url):
        pool = pool_for(url)
        assert await read_all(pool) == (201, b"made")
        assert await read_all(pool) == (201, b"made")
        assert server.connections == 1
        await pool.close()


async def test_a_body_without_length_ends_with_the_connection() -> None:
    async def until_close(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npart one, ")
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b"part two")
        return False

    async with raw_server(until_close) as (server, url):
        pool = pool_for(url)
        assert await read_all(pool) == (200, b"part one, part two")
        assert await read_all(pool) == (200, b"part one, part two")
        assert server.connections == 2
        await pool.close()


async def test_an_answer_notes_when_its_last_bytes_were_read() -> None:
    """When the last bytes came, not when the handler took the answer: the time
    between is the proxy's, not the model's (proxy.measure.marks, upstream_wait_ns)."""

    async def late_body(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"hello")
        return True

    async with raw_server(late_body) as (_, url):
        pool = pool_for(url)
        answer = await get(pool)
        head_in = perf_counter_ns()
        try:
            assert await answer.read() == b"hello"
            await asyncio.sleep(0.05)  # the handler is late: when it was read stays
            read_at = answer.last_read_ns
            assert read_at is not None
            # 50 ms after the head, 50 ms before now (10 ms spare each way: a loaded host)
            assert head_in + 40_000_000 <= read_at <= perf_counter_ns() - 40_000_000
        finally:
            answer.close()
        await pool.close()


async def test_a_head_answer_has_no_body_whatever_its_length_says() -> None:
    async def head_answer(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        return True

    async with raw_server(head_answer) as (server, url):
        pool = pool_for(url, read_timeout_s=2)  # a regression waits for the body, then fails
        for _ in range(2):
            answer = await get(pool, method="HEAD")
            assert (answer.status, answer.content_length, await answer.read()) == (200, 1000, b"")
            answer.close()
        assert server.connections == 1  # nothing followed the head (tests/upstream/test_hygiene.py)
        await pool.close()


async def test_a_head_answer_that_says_close_is_not_reused() -> None:
    # The server says it closes but does not yet: only what it said keeps the next
    # request off this connection (a reused one would be answered here, once).
    async def closing(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n")
        return True

    async with raw_server(closing) as (server, url):
        pool = pool_for(url, read_timeout_s=2)
        for _ in range(2):
            answer = await get(pool, method="HEAD")
            assert (answer.status, await answer.read()) == (200, b"")
            answer.close()
        assert server.connections == 2
        await pool.close()


async def test_a_streamed_body_goes_chunked_or_with_the_clients_length() -> None:
    async def pieces() -> AsyncIterator[bytes]:
        for piece in (b"one ", b"", b"two ", b"three"):
            await asyncio.sleep(0)
            yield piece

    async with raw_server(ok) as (server, url):
        pool = pool_for(url)
        await read_all(pool, method="POST", body=pieces())
        length = CIMultiDict([("Content-Length", "13")])
        await read_all(pool, method="POST", body=pieces(), headers=length)
        chunked, sized = server.requests
        assert b"Transfer-Encoding: chunked\r\n" in chunked
        assert chunked.endswith(b"\r\n\r\none two three")
        assert b"Transfer-Encoding" not in sized
        assert sized.endswith(b"Content-Length: 13\r\n\r\none two three")
        assert server.connections == 1
        await pool.close()


async def test_an_unread_answer_is_held_back_not_buffered() -> None:
    big = b"x" * (16 * 1024 * 1024)
    written = asyncio.Event()

    async def huge(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(response("200 OK", big))
        await writer.drain()
        written.set()
        return True

    async with raw_server(huge) as (_, url):
        pool = pool_for(url)
        answer = await get(pool)
        await asyncio.sleep(0.3)  # the server writes as fast as the proxy lets it
        assert answer.buffered <= 1024 * 1024
        assert not written.is_set()  # held back at the model server, not read on
        # Taking what is held resumes reading; the next high mark pauses it again.
        taken = len(await answer.read_chunk())
        await asyncio.sleep(0.3)
        assert 0 < answer.buffered <= 1024 * 1024
        assert not written.is_set()
        assert taken + len(await answer.read()) == len(big)
        answer.close()
        await pool.close()


@pytest.mark.parametrize(
    "garbage",
    [
        b"HTTP/1.1 2OO OK\r\n\r\n",
        b"SMTP ready\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
    ],
)
async def test_a_broken_answer_is_malformed_and_the_next_request_is_served(
    garbage: bytes,
) -> None:
    answers = iter([garbage, response("200 OK", b"fine")])

    async def broken_first(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(next(answers))
        return True

    async with raw_server(broken_first) as (_, url):
        pool = pool_for(url)
        with pytest.raises(UpstreamMalformed):
            await get(pool)
        assert await read_all(pool) == (200, b"fine")
        await pool.close()


async def test_bytes_nobody_asked_for_drop_the_connection() -> None:
    async def chatty(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(response("200 OK", b"one"))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"HTTP/1.1 200 OK\r\n")  # an answer to no request
        return True

    async with raw_server(chatty) as (server, url):
        pool = pool_for(url)
        assert await read_all(pool) == (200, b"one")
        await asyncio.sleep(0.1)
        assert pool.open_connections == 0
        assert await read_all(pool) == (200, b"one")
        assert server.connections == 2
        await pool.close()


async def test_a_connection_the_server_closed_while_idle_is_not_used() -> None:
    async def once(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(response("200 OK", b"bye"))
        await writer.drain()
        return False  # keep-alive by the headers, closed anyway (a keep-alive timeout)

    async with raw_server(once) as (server, url):
        pool = pool_for(url)
        assert await read_all(pool) == (200, b"bye")
        await asyncio.sleep(0.05)
        assert await read_all(pool) == (200, b"bye")
        assert server.connections == 2
        await pool.close()


async def test_silence_past_the_read_timeout_is_a_timeout() -> None:
    async def silent_body(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
        await asyncio.sleep(2)
        return False

    async with raw_server(silent_body) as (_, url):
        pool = pool_for(url, read_timeout_s=0.1)
        answer = await get(pool)
        assert await answer.read_chunk() == b"half"
        with pytest.raises(TimeoutError):
            await answer.read_chunk()
        assert pool.open_connections == 0
        await pool.close()


async def test_a_trickle_is_cut_at_the_total_timeout() -> None:
    async def trickle(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        for _ in range(100):
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.01)
        return True

    async with raw_server(trickle) as (_, url):
        pool = pool_for(url, read_timeout_s=0.5, total_timeout_s=0.2)
        answer = await get(pool)
        with pytest.raises(TimeoutError):
            await answer.read()
        await pool.close()


async def test_a_reset_mid_body_is_a_reset() -> None:
    async def cut(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
        await writer.drain()
        return False

    async with raw_server(cut) as (_, url):
        pool = pool_for(url)
        answer = await get(pool)
        with pytest.raises(UpstreamReset):
            await answer.read()
        await pool.close()


async def test_a_refused_connection_is_unreachable() -> None:
    async with raw_server(ok) as (_, url):
        pass  # closed: nothing listens on the port any more
    pool = pool_for(url)
    with pytest.raises(UpstreamUnreachable, match="cannot connect"):
        await get(pool)
    assert pool.open_connections == 0


async def test_a_cancelled_request_closes_its_connection() -> None:
    async def slow(head: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.2)
        writer.write(response("200 OK", b"late"))
        return True

    async with raw_server(slow) as (server, url):
        pool = pool_for(url)
        task = asyncio.ensure_future(get(pool))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.open_connections == 0
        assert await read_all(pool) == (200, b"late")
        assert server.connections == 2
        await pool.close()


async def test_an_idle_connection_past_the_idle_timeout_is_not_reused() -> None:
    async with raw_server(ok) as (server, url):
        pool = UpstreamPool(url, UpstreamConfig(url=url), idle_timeout_s=0.05)
        assert await read_all(pool) == (200, b"hello")
        assert await read_all(pool) == (200, b"hello")
        assert server.connections == 1
        await asyncio.sleep(0.1)
        assert await read_all(pool) == (200, b"hello")
        assert server.connections == 2
        assert pool.open_connections == 1
        await pool.close()


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, and its key."""
    if shutil.which("openssl") is None:
        pytest.fail("the TLS tests need the openssl command (Debian: openssl)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


async def test_an_https_upstream_is_verified_and_served(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # trust the test's own CA
    async with raw_server(ok, server_tls(certificate)) as (server, url):
        pool = pool_for(url)
        assert await read_all(pool) == (200, b"hello")
        assert await read_all(pool) == (200, b"hello")
        assert server.connections == 1
        port = url.rsplit(":", 1)[1]
        assert f"\r\nHost: 127.0.0.1:{port}\r\n".encode() in server.requests[0]
        await pool.close()


async def test_an_https_upstream_with_an_untrusted_certificate_is_unreachable(
    certificate: tuple[Path, Path],
) -> None:
    async with raw_server(ok, server_tls(certificate)) as (server, url):
        pool = pool_for(url)
        with pytest.raises(UpstreamUnreachable, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
            await get(pool)
        assert server.requests == []
        await pool.close()


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 1),  # one endless line
        b"HTTP/1.1 200 OK\r\n" + b"X-Many: a\r\n" * (MAX_HEAD_BYTES // 11 + 1),
    ],
)
async def test_an_endless_head_is_malformed(head: bytes) -> None:
    async def endless(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(head)
        await writer.drain()
        await asyncio.sleep(1)
        return False

    async with raw_server(endless) as (_, url):
        pool = pool_for(url)
        with pytest.raises(UpstreamMalformed, match="head is over"):
            await get(pool)
        await pool.close()


async def test_a_head_of_exactly_the_limit_still_incomplete_is_read_on() -> None:
    start = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Pad: "
    pad = start + b"a" * (MAX_HEAD_BYTES - len(start))  # all of the limit, not yet a head

    async def at_the_limit(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(pad)
        await writer.drain()
        await asyncio.sleep(0.1)  # read apart from its end
        writer.write(b"\r\n\r\nok")
        return True

    async with raw_server(at_the_limit) as (_, url):
        pool = pool_for(url)
        assert await read_all(pool) == (200, b"ok")
        await pool.close()


async def test_a_large_body_read_at_once_with_its_head_is_fine() -> None:
    big = b"y" * (4 * MAX_HEAD_BYTES)

    async def at_once(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(response("200 OK", big))
        return True

    async with raw_server(at_once) as (_, url):
        pool = pool_for(url)
        assert await read_all(pool) == (200, big)
        await pool.close()


async def test_a_live_answer_longer_than_the_read_timeout_is_not_cut() -> None:
    """Every gap is under the read timeout; the whole answer takes four times it."""

    async def steady(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
        for _ in range(10):
            await asyncio.sleep(0.04)
            writer.write(b"z")
            await writer.drain()
        return True

    async with raw_server(steady) as (_, url):
        pool = pool_for(url, read_timeout_s=0.1)
        for _ in range(2):  # the second on the same connection, its timer reused
            assert await read_all(pool) == (200, b"z" * 10)
        await pool.close()


async def test_a_read_timer_that_fires_after_its_wait_ended_does_nothing() -> None:
    """The timer is moved lazily (proxy.upstream.timer): it fires on idle connections too."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        async with raw_server(ok) as (_, url):
            pool = pool_for(url, read_timeout_s=0.05)
            assert await read_all(pool) == (200, b"hello")
            await asyncio.sleep(0.15)  # past the read timeout, the connection idle
            assert await read_all(pool) == (200, b"hello")
            await pool.close()
    finally:
        loop.set_exception_handler(None)
    assert errors == []


async def test_a_connection_that_closed_or_failed_to_open_frees_its_place() -> None:
    async def close_after(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(response("200 OK", b"x"))
        return False  # the server closes the connection

    async with raw_server(close_after) as (server, url):
        port = int(url.rsplit(":", 1)[1])
        pool = pool_for(url, max_connections=1, total_timeout_s=2)
        for _ in range(3):
            assert await read_all(pool) == (200, b"x")
            await asyncio.sleep(0.05)  # the close reaches the pool
        assert server.connections == 3
        await pool.close()
    # Nothing listens there now: each connect fails, and gives its place back.
    refused = pool_for(f"http://127.0.0.1:{port}", max_connections=1, total_timeout_s=2)
    for _ in range(3):
        with pytest.raises(UpstreamUnreachable, match=f"cannot connect to 127.0.0.1:{port}: "):
            await get(refused)
    await refused.close()


async def test_an_endless_head_that_trickles_in_is_malformed() -> None:
    # Each read is far below the limit; the head they make is not.
    async def trickle(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for _ in range(MAX_HEAD_BYTES // 4096 + 2):
            writer.write(b"X-Pad: " + b"a" * 4087 + b"\r\n")
            await writer.drain()
            await asyncio.sleep(0.002)  # one read each
        await asyncio.sleep(1)
        return False

    async with raw_server(trickle) as (_, url):
        pool = pool_for(url, read_timeout_s=5)
        with pytest.raises(UpstreamMalformed, match="head is over"):
            await get(pool)
        await pool.close()


async def test_a_reason_phrase_that_arrives_in_pieces_is_whole() -> None:
    async def in_pieces(request: bytes, writer: asyncio.StreamWriter) -> bool:
        for piece in (b"HTTP/1.1 200 All ", b"is ", b"well\r\nContent-Length: 2\r\n\r\nok"):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.02)  # one read each
        return True

    async with raw_server(in_pieces) as (_, url):
        pool = pool_for(url)
        answer = await get(pool)
        assert (answer.status, answer.reason, await answer.read()) == (200, "All is well", b"ok")
        answer.close()
        await pool.close()


async def test_an_answer_closed_twice_gives_its_connection_back_once() -> None:
    # Twice idle, one connection would serve two requests at once: each would
    # read the other's answer.
    async with raw_server(ok) as (server, url):
        pool = pool_for(url)
        answer = await get(pool)
        assert await answer.read() == b"hello"
        answer.close()
        answer.close()
        assert pool.idle_connections == 1
        both = await asyncio.gather(read_all(pool), read_all(pool))
        assert list(both) == [(200, b"hello")] * 2
        assert server.connections == 2
        await pool.close()


async def test_an_answer_that_switches_protocols_is_malformed() -> None:
    async def upgrade(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\n\r\nbinary frames")  # fmt: skip
        await asyncio.sleep(1)
        return False

    async with raw_server(upgrade) as (_, url):
        pool = pool_for(url)
        with pytest.raises(UpstreamMalformed, match="switched protocols"):
            await get(pool)
        await pool.close()


async def test_a_request_waiting_behind_an_answer_being_read_times_out_at_its_total() -> None:
    # The first answer's head is in and its body never ends: its connection stays
    # taken, and the second request's wait for it is bounded by its own total.
    async def head_then_nothing(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(3)
        return False

    async with raw_server(head_then_nothing) as (_, url):
        pool = pool_for(url, max_connections=1, total_timeout_s=0.3, read_timeout_s=5)
        first = await get(pool)  # held, unread
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(get(pool), 2)
        waited = loop.time() - started
        assert waited < 1.0  # 0.3 s, and room for a loaded host; unbounded, it is 2
        first.close()
        await pool.close()


async def test_a_finished_answer_closed_again_leaves_the_next_exchange_alone() -> None:
    # A blocked stream's handler closes its answer, then closes it again once the
    # client has read its ending; by then the connection may serve another request.
    served = 0

    async def answer(head: bytes, writer: asyncio.StreamWriter) -> bool:
        nonlocal served
        served += 1
        if served == 1:
            writer.write(response("200 OK", b"first"))
        else:  # the second answer's body comes a little later
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"second")
        return True

    async with raw_server(answer) as (server, url):
        pool = pool_for(url)
        first = await get(pool)
        assert await first.read() == b"first"
        first.close()  # read to its end: the connection goes back to the pool
        second = await get(pool)  # on the same connection
        assert server.connections == 1
        first.close()
        assert await second.read() == b"second"
        second.close()
        await pool.close()


async def test_a_failed_connect_gives_back_its_place_once() -> None:
    # Given back twice, the count of connects in progress would let a second
    # connection past a limit of one.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there yet: the first connect is refused
    pool = pool_for(f"http://127.0.0.1:{port}", max_connections=1, total_timeout_s=3)
    with pytest.raises(UpstreamUnreachable):
        await get(pool)

    async def slow(head: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.05)
        writer.write(response("200 OK", b"x"))
        return True

    state = RawServer(slow)
    server = await asyncio.start_server(state.serve, "127.0.0.1", port)
    try:
        both = await asyncio.gather(read_all(pool), read_all(pool))
        assert list(both) == [(200, b"x")] * 2
        assert state.most_open == 1
    finally:
        await pool.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("framing", ["Content-Length: 29", "Transfer-Encoding: chunked"])
async def test_a_connection_whose_204_declared_a_body_is_not_reused(framing: str) -> None:
    # A 204 has no body, and may not declare one (RFC 9110; a HEAD's or a 304's
    # length is the representation's); a server that declares one and sends it
    # anyway, late, would have it read as the answer to the next request.
    answers = 0

    async def late_body(head: bytes, writer: asyncio.StreamWriter) -> bool:
        nonlocal answers
        answers += 1
        if answers > 1:
            writer.write(response("200 OK", b"mine"))
            return True
        writer.write(f"HTTP/1.1 204 No Content\r\n{framing}\r\n\r\n".encode())
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(response("200 OK", b"theirs"))
        return True

    async with raw_server(late_body) as (server, url):
        pool = pool_for(url)
        first = await get(pool)
        assert await first.read() == b""
        first.close()
        assert await read_all(pool) == (200, b"mine")
        assert server.connections == 2
        await pool.close()


@pytest.mark.parametrize(
    "framing", ["", "Content-Length: 0\r\n"], ids=["no length", "a length of 0"]
)
async def test_a_connection_whose_204_declared_no_body_is_reused(framing: str) -> None:
    async def no_content(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(f"HTTP/1.1 204 No Content\r\n{framing}\r\n".encode())
        return True

    async with raw_server(no_content) as (server, url):
        pool = pool_for(url)
        for _ in range(2):
            first = await get(pool)
            assert await first.read() == b""
            first.close()
        assert server.connections == 1
        await pool.close()


async def test_a_woken_request_that_is_cancelled_passes_its_turn_on() -> None:
    # The one connection comes free and wakes the first waiting request, which is
    # cancelled (its client left, or its time ran out) before it takes it.
    async def slow(head: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.05)
        writer.write(response("200 OK", b"x"))
        return True

    async with raw_server(slow) as (_, url):
        pool = pool_for(url, max_connections=1, total_timeout_s=2)
        holder = await get(pool)
        woken = asyncio.ensure_future(read_all(pool))
        waiting = asyncio.ensure_future(read_all(pool))
        await asyncio.sleep(0.02)  # both wait for the connection
        assert await holder.read() == b"x"
        holder.close()  # wakes the first in line
        woken.cancel()  # in the same turn, before it runs
        assert await asyncio.wait_for(waiting, 1) == (200, b"x")
        await pool.close()
