"""Open-loop load: requests sent on a fixed schedule, whether or not earlier ones finished.

Latency is measured from each request's *scheduled* send time, so a server
that stalls is charged for the requests that queued behind the stall (no
coordinated omission). The client is a raw asyncio protocol speaking
HTTP/1.1 keep-alive (one request at a time per connection, pre-encoded
request bytes, Content-Length or chunked responses), because a full HTTP
client library in Python would cost more CPU than the proxies it measures.
Requests due in the same event-loop tick (timers have 1 ms resolution) are
sent together; how late each went out is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

CONNECT_AHEAD = 16  # connections opened before a step starts
DRAIN_TIMEOUT_S = 3.0  # how long the last requests of a step may take


class _Connection(asyncio.Protocol):
    """One keep-alive connection; ``done(status)`` is called per complete response."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.done: Callable[[int], None] | None = None
        self.closed = False
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.body_start = -1  # index after the headers; -1 while reading them
        self.length = -1  # Content-Length, or -1 for chunked
        self.chunk_pos = 0  # chunked: where the next chunk-size line starts
        self.close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.all.discard(self)
        if self.done is not None:
            done, self.done = self.done, None
            done(0)

    def send(self, request: bytes, done: Callable[[int], None]) -> None:
        assert self.transport is not None
        self.done = done
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.body_start < 0 and not self._parse_head():
            return
        if self.length >= 0:
            if len(self.buffer) - self.body_start < self.length:
                return
        elif not self._chunked_complete():
            return
        self._finish()

    def _parse_head(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self.buffer[:end]).lower()
        lines = head.split(b"\r\n")
        self.status = int(lines[0].split(b" ", 2)[1])
        self.length = 0 if self.status in (204, 304) else -1
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name == b"content-length":
                self.length = int(value)
            elif name == b"connection" and b"close" in value:
                self.close_after = True
        self.body_start = end + 4
        self.chunk_pos = self.body_start
        return True

    def _chunked_complete(self) -> bool:
        buffer = self.buffer
        while True:
            line_end = buffer.find(b"\r\n", self.chunk_pos)
            if line_end < 0:
                return False
            size = int(bytes(buffer[self.chunk_pos : line_end]).split(b";")[0], 16)
            if size == 0:
                # Trailers, if any, end with an empty line.
                if buffer.startswith(b"\r\n", line_end + 2):
                    return True
                return buffer.find(b"\r\n\r\n", line_end) >= 0
            if len(buffer) < line_end + 2 + size + 2:
                return False
            self.chunk_pos = line_end + 2 + size + 2

    def _finish(self) -> None:
        status, done = self.status, self.done
        self.buffer.clear()
        close = self.close_after
        self._reset()
        self.done = None
        if close:
            assert self.transport is not None
            self.transport.close()
            self.closed = True
        if done is not None:
            done(status)
        if not close:
            self.pool.idle.append(self)


@dataclass(frozen=True)
class StepResult:
    """One rate step: latencies (ms, from the scheduled time) of the measured requests."""

    target_rate: float
    sent_rate: float  # requests actually sent per second in the measured window
    latencies_ms: list[float]
    errors: int  # non-200, lost connections, unanswered at the end
    dropped: int  # not sent: the outstanding cap was reached
    late_p99_ms: float  # how late the send was (scheduled -> written), p99
    served_all: int  # answered with 200 over the whole step, warm-up included
    cpu_s: float  # this process's CPU time during the measured part
    wall_s: float  # how long the measured part took, drain included


def request_bytes(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
            f"Content-Length: {len(body)}"]  # fmt: skip
    head += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class _Pool:
    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port, self.limit = host, port, limit
        self.idle: list[_Connection] = []
        self.all: set[_Connection] = set()
        self.opening = 0

    @property
    def count(self) -> int:
        return len(self.all) + self.opening

    async def connect(self) -> _Connection:
        self.opening += 1
        try:
            loop = asyncio.get_running_loop()
            _, protocol = await loop.create_connection(
                lambda: _Connection(self), self.host, self.port
            )
        finally:
            self.opening -= 1
        self.all.add(protocol)
        return protocol

    def get(self) -> _Connection | None:
        while self.idle:
            connection = self.idle.pop()
            if not connection.closed:
                return connection
        return None

    def close(self) -> None:
        for connection in list(self.all):
            connection.done = None
            if connection.transport is not None:
                connection.transport.close()


async def run_step(
    host: str,
    port: int,
    request: bytes,
    rate: float,
    duration_s: float,
    warmup_s: float,
    max_outstanding: int,
    cpu_ns: Callable[[], int],
) -> StepResult:
    """Send ``rate`` requests/s for ``warmup_s + duration_s``; measure the last ``duration_s``."""
    loop = asyncio.get_running_loop()
    pool = _Pool(host, port, max_outstanding)
    for connection in await asyncio.gather(*(pool.connect() for _ in range(CONNECT_AHEAD))):
        pool.idle.append(connection)
    latencies: list[float] = []
    late: list[float] = []
    errors = dropped = outstanding = measured_sent = served_all = 0
    all_done = asyncio.Event()
    total = int(rate * (warmup_s + duration_s))
    first_measured = int(rate * warmup_s)

    def finisher(scheduled: float, measured: bool) -> Callable[[int], None]:
        def done(status: int) -> None:
            nonlocal errors, outstanding, served_all
            if finished:
                return
            outstanding -= 1
            served_all += status == 200
            if measured:
                if status == 200:
                    latencies.append((time.perf_counter() - scheduled) * 1000)
                else:
                    errors += 1
            if outstanding == 0 and sent == total:
                all_done.set()

        return done

    async def send_new(scheduled: float, callback: Callable[[int], None]) -> None:
        try:
            connection = await pool.connect()
        except OSError:
            callback(0)
            return
        connection.send(request, callback)

    tasks: set[asyncio.Task[None]] = set()
    finished = False
    cpu_before = 0
    wall_before = 0.0
    started = time.perf_counter() + 0.01
    sent = 0
    while sent < total:
        now = time.perf_counter()
        while sent < total and started + sent / rate <= now:
            scheduled = started + sent / rate
            measured = sent >= first_measured
            if sent == first_measured:
                cpu_before, wall_before = cpu_ns(), time.perf_counter()
            sent += 1
            if outstanding >= max_outstanding:
                dropped += measured
                continue
            outstanding += 1
            if measured:
                measured_sent += 1
                late.append((now - scheduled) * 1000)
            callback = finisher(scheduled, measured)
            idle = pool.get()
            if idle is not None:
                idle.send(request, callback)
            elif pool.count < pool.limit:
                task = loop.create_task(send_new(scheduled, callback))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            else:
                callback(0)
        if sent < total:
            await asyncio.sleep(max(0.001, started + sent / rate - time.perf_counter()))
    send_window = time.perf_counter() - (started + first_measured / rate)
    if outstanding:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_done.wait(), DRAIN_TIMEOUT_S)
    cpu_s = (cpu_ns() - cpu_before) / 1e9
    wall_s = time.perf_counter() - wall_before
    finished = True
    errors += outstanding
    pool.close()
    for task in list(tasks):
        task.cancel()
    late.sort()
    return StepResult(
        target_rate=rate,
        sent_rate=measured_sent / send_window if send_window > 0 else 0.0,
        latencies_ms=latencies,
        errors=errors,
        dropped=dropped,
        late_p99_ms=late[int(0.99 * (len(late) - 1))] if late else float("nan"),
        served_all=served_all,
        cpu_s=cpu_s,
        wall_s=wall_s,
    )
