"""The request timeline: the single record of where one request's time went.

Every figure taxmeter reports (metrics, Server-Timing, traces, logs) is
derived from the marks recorded here, and this is the only module that reads
a clock for them. Marks are ``time.perf_counter_ns()`` integers; figures are
derived once, in :meth:`Timeline.breakdown`, and reconcile exactly:

    total = upstream + tax
    tax   = filter_critical + overhead

``filter_critical`` is the part of the tax spent in filters: the union of
the intervals in which the request waited on a filter (sequential calls, and
the wait for parallel input filters after the upstream was ready), less the
upstream interval, so overlapping calls are not counted twice and time that
overlapped the model's own work is not counted as tax. A stream filter that
holds tokens back while the model is still generating shows in the stream
holdback and the time-to-first-token tax, not in the total tax.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter_ns, time_ns
from typing import NamedTuple

from filters.base import Stage

NS_PER_S = 1_000_000_000

# The loop watch's timer period; lateness under the slack is timer rounding
# (uvloop's timers have millisecond resolution; on an idle loop 99% of
# wake-ups are less late than this), not waiting.
TICK_S = 0.005
SLACK_NS = 500_000
# An event handled this soon after the loop caught up was queued behind the stall.
BACKLOG_NS = 2_000_000


class LoopWatch:
    """How late the event loop runs, all the time: a timer every ``TICK_S``.

    Each wake-up's lateness goes to the observers (the event-loop lag
    metric). The last late wake-up is kept, so that an event handled right
    after the loop was blocked or saturated (a request's first byte, an
    upstream answer) can be charged the time it waited for the loop: see
    :meth:`waited`. One per process; every proxy app on the loop shares it.
    """

    def __init__(self) -> None:
        self.observers: list[Callable[[float], None]] = []
        self._due_ns = 0
        self._late: tuple[int, int] | None = None  # (due, ran) of the last late wake-up
        self._handle: asyncio.TimerHandle | None = None

    def start(self, observe: Callable[[float], None]) -> None:
        self.observers.append(observe)
        if self._handle is None:
            self._due_ns = perf_counter_ns()
            self._tick()

    def stop(self, observe: Callable[[float], None]) -> None:
        self.observers.remove(observe)
        if not self.observers and self._handle is not None:
            self._handle.cancel()
            self._handle = None
            self._late = None

    def _tick(self) -> None:
        now = perf_counter_ns()
        lateness = max(0, now - self._due_ns)
        self._late = (self._due_ns, now) if lateness > SLACK_NS else None
        for observe in self.observers:
            observe(lateness / NS_PER_S)
        self._due_ns = now + int(TICK_S * NS_PER_S)
        self._handle = asyncio.get_running_loop().call_later(TICK_S, self._tick)

    def waited(self, now_ns: int, since_ns: int) -> int:
        """How long an event handled at ``now_ns``, not ready before ``since_ns``, waited.

        Either a wake-up is overdue now (the loop is late at this moment), or
        the last one was late and the event is handled in the backlog right
        after it; otherwise the loop was on time and nothing is charged.
        """
        if self._handle is None:
            return 0
        if now_ns - self._due_ns > SLACK_NS:
            start, end = self._due_ns, now_ns
        elif self._late is not None and now_ns - self._late[1] < BACKLOG_NS:
            start, end = self._late
        else:
            return 0
        return max(0, end - max(start, since_ns))


LOOP_WATCH = LoopWatch()


class Arrival(NamedTuple):
    """When a request's first byte was read, and how long it had waited for the loop."""

    read_ns: int
    waited_ns: int


def arrival_now(idle_since_ns: int) -> Arrival:
    """The arrival of a request whose first byte is being read now.

    ``idle_since_ns``: when its connection was last idle (no byte of this
    request can have arrived before), which bounds the wait charged.
    """
    now = perf_counter_ns()
    return Arrival(now, LOOP_WATCH.waited(now, idle_since_ns))


class FilterCall:
    """One timed call of one filter: stage, name, mode, start/end and action."""

    __slots__ = ("action", "critical", "end_ns", "filter", "mode", "stage", "start_ns")

    def __init__(self, filter_name: str, stage: Stage, mode: str, critical: bool) -> None:
        self.filter = filter_name
        self.stage = stage
        self.mode = mode
        self.critical = critical
        self.action = "allow"
        self.start_ns = perf_counter_ns()
        self.end_ns = self.start_ns

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


@dataclass(frozen=True, slots=True)
class Breakdown:
    """The derived figures of one request, in seconds."""

    total: float
    upstream: float
    tax: float
    filter_critical: float
    overhead: float
    filters: dict[tuple[str, Stage], float]  # per (filter, stage), summed over calls
    holdback: dict[str, float]  # per stream filter: mean wait of a piece of text
    ttft: float | None
    upstream_ttft: float | None
    called_upstream: bool
    # overhead = ingress + upstream_connect + loop_wait + egress + proxy_work
    ingress: float = 0.0  # first byte (less its wait for the loop) to the handler running
    upstream_connect: float = 0.0  # connection pool wait and connect
    loop_wait: float = 0.0  # the upstream's answer waiting for a late event loop
    egress: float = 0.0  # writing the response's last bytes to the connection
    proxy_work: float = 0.0  # the rest: ours, excluding filters

    @property
    def tax_ratio(self) -> float:
        return self.tax / self.total if self.total > 0 else 0.0

    @property
    def ttft_tax(self) -> float | None:
        if self.ttft is None or self.upstream_ttft is None:
            return None
        return self.ttft - self.upstream_ttft


class Timeline:
    """Monotonic marks of one request, from arrival to the last byte sent."""

    __slots__ = (
        "body_read_ns",
        "client_first_byte_ns",
        "client_first_content_ns",
        "client_last_byte_ns",
        "connect_end_ns",
        "connect_start_ns",
        "egress_ns",
        "epoch_offset_ns",
        "filter_calls",
        "holdback_ns",
        "parallel_done_ns",
        "received_ns",
        "started_ns",
        "upstream_first_byte_ns",
        "upstream_first_content_ns",
        "upstream_headers_ns",
        "upstream_last_byte_ns",
        "upstream_sent_ns",
        "upstream_wait_ns",
        "upstream_written_ns",
    )

    def __init__(self, arrival: Arrival | None = None) -> None:
        """``arrival``: the request's first byte on the wire; None, the handler starts now."""
        self.started_ns = perf_counter_ns()
        if arrival is None:
            self.received_ns = self.started_ns
        else:
            # The bytes waited in the socket while the loop was busy: they count.
            self.received_ns = arrival.read_ns - arrival.waited_ns
        # The one wall-clock reading: a mark plus this is nanoseconds since the
        # epoch (span start and end times); the marks themselves stay monotonic.
        self.epoch_offset_ns = time_ns() - perf_counter_ns()
        self.body_read_ns: int | None = None
        self.upstream_sent_ns: int | None = None
        self.connect_start_ns: int | None = None
        self.connect_end_ns: int | None = None
        self.upstream_written_ns: int | None = None
        self.upstream_wait_ns = 0
        self.egress_ns: int | None = None
        self.upstream_headers_ns: int | None = None
        self.upstream_first_byte_ns: int | None = None
        self.upstream_first_content_ns: int | None = None
        self.upstream_last_byte_ns: int | None = None
        self.parallel_done_ns: int | None = None
        self.client_first_byte_ns: int | None = None
        self.client_first_content_ns: int | None = None
        self.client_last_byte_ns: int | None = None
        self.filter_calls: list[FilterCall] = []
        self.holdback_ns: dict[str, list[int]] = {}  # filter -> [sum, count]

    def epoch_ns(self, mark_ns: int) -> int:
        """A mark as wall-clock nanoseconds since the epoch (for span times)."""
        return mark_ns + self.epoch_offset_ns

    # -- marks -------------------------------------------------------------
    @staticmethod
    def now() -> int:
        """A mark to pass back later (the arrival of a chunk of a stream)."""
        return perf_counter_ns()

    def mark_body_read(self) -> None:
        self.body_read_ns = perf_counter_ns()

    def mark_upstream_sent(self) -> None:
        self.upstream_sent_ns = perf_counter_ns()

    def mark_connect_start(self) -> None:
        self.connect_start_ns = perf_counter_ns()

    def mark_connect_end(self) -> None:
        self.connect_end_ns = perf_counter_ns()

    def mark_upstream_written(self) -> None:
        self.upstream_written_ns = perf_counter_ns()

    def mark_egress(self) -> None:
        """The response's last writes begin (after them: the client's last byte)."""
        self.egress_ns = perf_counter_ns()

    def mark_upstream_headers(self) -> None:
        self.upstream_headers_ns = perf_counter_ns()

    def mark_upstream_first_byte(self, at_ns: int | None = None) -> None:
        if self.upstream_first_byte_ns is None:
            self.upstream_first_byte_ns = perf_counter_ns() if at_ns is None else at_ns

    def mark_upstream_first_content(self, at_ns: int) -> None:
        if self.upstream_first_content_ns is None:
            self.upstream_first_content_ns = at_ns

    def mark_upstream_last_byte(self, read_ns: int | None = None) -> None:
        """The upstream's answer is complete; ``read_ns``: when its last bytes were read
        from the connection, if known (the wait since is the proxy's, not the model's)."""
        now = perf_counter_ns()
        if self.upstream_first_byte_ns is None:
            self.upstream_first_byte_ns = now
        self.upstream_last_byte_ns = now
        start = self._upstream_start_ns()
        if start is not None:
            read = now if read_ns is None or not start <= read_ns <= now else read_ns
            # Bytes that sat unread because the loop was late, and a read answer
            # waiting for the handler to resume, are ours, not the model's.
            self.upstream_wait_ns = now - read + LOOP_WATCH.waited(read, start)

    def mark_parallel_done(self) -> None:
        self.parallel_done_ns = perf_counter_ns()

    def mark_client_first_byte(self) -> None:
        if self.client_first_byte_ns is None:
            self.client_first_byte_ns = perf_counter_ns()

    def mark_client_first_content(self) -> None:
        if self.client_first_content_ns is None:
            self.client_first_content_ns = perf_counter_ns()

    def mark_client_last_byte(self) -> None:
        now = perf_counter_ns()
        if self.client_first_byte_ns is None:
            self.client_first_byte_ns = now
        self.client_last_byte_ns = now

    def start_filter(
        self, filter_name: str, stage: Stage, mode: str, critical: bool = True
    ) -> FilterCall:
        call = FilterCall(filter_name, stage, mode, critical)
        self.filter_calls.append(call)
        return call

    @staticmethod
    def end_filter(call: FilterCall, action: str) -> None:
        call.end_ns = perf_counter_ns()
        call.action = action

    def held(self, filter_name: str, arrived_ns: int) -> None:
        """A piece of stream text that arrived at ``arrived_ns`` is cleared by a filter now."""
        entry = self.holdback_ns.get(filter_name)
        if entry is None:
            entry = self.holdback_ns[filter_name] = [0, 0]
        entry[0] += perf_counter_ns() - arrived_ns
        entry[1] += 1

    # -- figures -----------------------------------------------------------
    def _upstream_start_ns(self) -> int | None:
        """When the request went to the model server: its body written, else the
        connection in hand, else (a failure before) when it was handed to the pool."""
        for mark in (self.upstream_written_ns, self.connect_end_ns):
            if mark is not None:
                return mark
        return self.upstream_sent_ns

    def upstream_interval(self) -> tuple[int, int] | None:
        """The model server's interval, (start, end) marks: the ``upstream`` figure."""
        start = self._upstream_start_ns()
        if start is None:
            return None
        end = self.upstream_last_byte_ns
        if end is None:
            # The upstream call did not finish (error, disconnect): charge it
            # up to the end of the request so that tax is not inflated.
            end = self.client_last_byte_ns or perf_counter_ns()
        else:
            end -= self.upstream_wait_ns
        return start, max(start, end)

    def _ready_ns(self, streamed: bool) -> int | None:
        """When the upstream's answer could first have been forwarded."""
        if streamed:
            return self.upstream_first_content_ns or self.upstream_first_byte_ns
        return self.upstream_last_byte_ns

    def filter_critical_ns(self, streamed: bool = False) -> int:
        intervals = [(c.start_ns, c.end_ns) for c in self.filter_calls if c.critical]
        ready = self._ready_ns(streamed)
        if (
            self.parallel_done_ns is not None
            and ready is not None
            and self.parallel_done_ns > ready
        ):
            intervals.append((ready, self.parallel_done_ns))
        upstream = self.upstream_interval()
        covered = 0
        cur_start = cur_end = -1
        for start, end in sorted(intervals):
            if start > cur_end:
                covered += _outside(cur_start, cur_end, upstream)
                cur_start, cur_end = start, end
            elif end > cur_end:
                cur_end = end
        return covered + _outside(cur_start, cur_end, upstream)

    def breakdown(self, streamed: bool = False) -> Breakdown:
        end = self.client_last_byte_ns
        if end is None:
            end = perf_counter_ns()
        total = max(0, end - self.received_ns)
        interval = self.upstream_interval()
        upstream = 0 if interval is None else min(interval[1] - interval[0], total)
        tax = total - upstream
        filter_critical = min(self.filter_critical_ns(streamed), tax)
        per_filter: dict[tuple[str, Stage], float] = {}
        for call in self.filter_calls:
            key = (call.filter, call.stage)
            per_filter[key] = per_filter.get(key, 0.0) + call.duration_ns / NS_PER_S
        ttft = upstream_ttft = None
        if streamed:
            client_first = self.client_first_content_ns or self.client_first_byte_ns
            upstream_first = self.upstream_first_content_ns or self.upstream_first_byte_ns
            if client_first is not None and upstream_first is not None:
                ttft = (client_first - self.received_ns) / NS_PER_S
                start = self._upstream_start_ns()
                assert start is not None
                upstream_ttft = (upstream_first - start) / NS_PER_S
        overhead = tax - filter_critical
        parts = self._overhead_parts_ns(end, interval)
        return Breakdown(
            total=total / NS_PER_S,
            upstream=upstream / NS_PER_S,
            tax=tax / NS_PER_S,
            filter_critical=filter_critical / NS_PER_S,
            overhead=overhead / NS_PER_S,
            filters=per_filter,
            holdback={f: s / n / NS_PER_S for f, (s, n) in self.holdback_ns.items() if n},
            ttft=ttft,
            upstream_ttft=upstream_ttft,
            called_upstream=self.upstream_sent_ns is not None,
            ingress=parts[0] / NS_PER_S,
            upstream_connect=parts[1] / NS_PER_S,
            loop_wait=parts[2] / NS_PER_S,
            egress=parts[3] / NS_PER_S,
            proxy_work=max(0, overhead - sum(parts)) / NS_PER_S,
        )

    def _overhead_parts_ns(
        self, end: int, interval: tuple[int, int] | None
    ) -> tuple[int, int, int, int]:
        """(ingress, upstream connect, loop wait, egress) of the overhead."""
        ingress = max(0, self.started_ns - self.received_ns)
        connect = 0
        if self.connect_start_ns is not None and self.connect_end_ns is not None:
            connect = self.connect_end_ns - self.connect_start_ns
        loop_wait = self.upstream_wait_ns if interval is not None else 0
        egress = 0 if self.egress_ns is None else max(0, end - self.egress_ns)
        return ingress, connect, loop_wait, egress

    def server_timing(self, final: bool = False) -> str:
        """The W3C Server-Timing value of what is known now.

        Sent with the headers, and when ``final`` (an HTTP trailer at the end of
        a stream) with the whole breakdown.
        """
        now = perf_counter_ns()
        per_filter: dict[tuple[str, str], int] = {}
        for call in self.filter_calls:
            key = (call.filter, call.stage)
            per_filter[key] = per_filter.get(key, 0) + call.duration_ns
        parts = [
            f"filter-{name};desc={stage};dur={ns / 1e6:.3f}"
            for (name, stage), ns in per_filter.items()
        ]
        total_ns = now - self.received_ns
        interval = self.upstream_interval()
        if interval is not None and self.upstream_last_byte_ns is not None:
            upstream_ns = interval[1] - interval[0]
            parts.append(f"upstream;dur={upstream_ns / 1e6:.3f}")
            parts.append(f"tax;dur={(total_ns - upstream_ns) / 1e6:.3f}")
        elif self.upstream_sent_ns is not None and self.upstream_headers_ns is not None:
            headers_ns = self.upstream_headers_ns - self.upstream_sent_ns
            parts.append(f"upstream-headers;dur={headers_ns / 1e6:.3f}")
        if final:
            figures = self.breakdown(streamed=True)
            if figures.ttft is not None and figures.upstream_ttft is not None:
                parts.append(f"ttft;dur={figures.ttft * 1e3:.3f}")
                parts.append(f"upstream-ttft;dur={figures.upstream_ttft * 1e3:.3f}")
            for name, seconds in figures.holdback.items():
                parts.append(f"holdback-{name};dur={seconds * 1e3:.3f}")
        parts.append(f"total;dur={total_ns / 1e6:.3f}")
        return ", ".join(parts)


def _outside(start: int, end: int, interval: tuple[int, int] | None) -> int:
    """The length of [start, end) that lies outside ``interval``."""
    length = end - start
    if interval is None or length <= 0:
        return max(0, length)
    overlap = min(end, interval[1]) - max(start, interval[0])
    return length - max(0, overlap)
