"""The marks of one request's timeline: monotonic clock readings, taken as things happen.

Marks are ``time.perf_counter_ns()`` integers; the figures they add up to
are :mod:`proxy.measure.timeline`'s.
"""

from __future__ import annotations

from time import perf_counter_ns, time_ns

from filters.base import Stage
from proxy.measure.arrival import Arrival
from proxy.measure.loop_watch import LoopWatch


class FilterCall:
    """One timed call of one filter: stage, name, mode, start/end, action and its reason."""

    __slots__ = (
        "action", "cpu_ns", "critical", "end_ns", "filter", "mode", "reason", "stage", "start_ns",
    )  # fmt: skip

    def __init__(self, filter_name: str, stage: Stage, mode: str, critical: bool) -> None:
        self.filter = filter_name
        self.stage = stage
        self.mode = mode
        self.critical = critical
        self.action = "allow"
        self.reason: str | None = None  # the verdict's, as the filter wrote it
        self.cpu_ns = 0  # the filter's own code, on its thread's CPU clock
        self.start_ns = perf_counter_ns()
        self.end_ns = self.start_ns

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


class Marks:
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
        "loop_watch",
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

    def __init__(self, arrival: Arrival | None = None, loop_watch: LoopWatch | None = None) -> None:
        """``arrival``: the request's first byte on the wire; None, the handler starts now.
        ``loop_watch``: the app's (see proxy.measure.loop_watch); None, the loop is
        taken to be on time."""
        self.started_ns = perf_counter_ns()
        self.loop_watch = loop_watch
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
            late = 0 if self.loop_watch is None else self.loop_watch.waited(read, start)
            self.upstream_wait_ns = now - read + late

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

    def start_filter(self, filter_name: str, stage: Stage, mode: str, critical: bool) -> FilterCall:
        call = FilterCall(filter_name, stage, mode, critical)
        self.filter_calls.append(call)
        return call

    @staticmethod
    def end_filter(call: FilterCall, action: str, reason: str | None = None) -> None:
        call.end_ns = perf_counter_ns()
        call.action = action
        call.reason = reason

    def held(self, filter_name: str, arrived_ns: int) -> None:
        """A piece of stream text that arrived at ``arrived_ns`` is cleared by a filter now."""
        entry = self.holdback_ns.get(filter_name)
        if entry is None:
            entry = self.holdback_ns[filter_name] = [0, 0]
        entry[0] += perf_counter_ns() - arrived_ns
        entry[1] += 1

    def _upstream_start_ns(self) -> int | None:
        """When the request went to the model server: its body written, else the
        connection in hand, else (a failure before) when it was handed to the pool."""
        for mark in (self.upstream_written_ns, self.connect_end_ns):
            if mark is not None:
                return mark
        return self.upstream_sent_ns
