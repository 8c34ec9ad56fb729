"""The request timeline: the single record of where one request's time went.

Every figure taxmeter reports (metrics, Server-Timing, traces, logs) is
derived from the marks recorded here, and this is the only module that reads
a clock for them. Marks are ``time.perf_counter_ns()`` integers; figures are
derived once, in :meth:`Timeline.breakdown`, and reconcile exactly:

    total = upstream + tax
    tax   = filter_critical + overhead

``filter_critical`` is the part of the filters' time the client waited for:
the union of the intervals of filter calls that held the request, so calls
that overlap each other or the upstream call are not counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from time import perf_counter_ns

from filters.base import Stage

NS_PER_S = 1_000_000_000


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
    ttft: float | None
    upstream_ttft: float | None
    called_upstream: bool

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
        "client_last_byte_ns",
        "filter_calls",
        "received_ns",
        "upstream_first_byte_ns",
        "upstream_headers_ns",
        "upstream_last_byte_ns",
        "upstream_sent_ns",
    )

    def __init__(self, received_ns: int | None = None) -> None:
        self.received_ns = perf_counter_ns() if received_ns is None else received_ns
        self.body_read_ns: int | None = None
        self.upstream_sent_ns: int | None = None
        self.upstream_headers_ns: int | None = None
        self.upstream_first_byte_ns: int | None = None
        self.upstream_last_byte_ns: int | None = None
        self.client_first_byte_ns: int | None = None
        self.client_last_byte_ns: int | None = None
        self.filter_calls: list[FilterCall] = []

    # -- marks -------------------------------------------------------------
    def mark_body_read(self) -> None:
        self.body_read_ns = perf_counter_ns()

    def mark_upstream_sent(self) -> None:
        self.upstream_sent_ns = perf_counter_ns()

    def mark_upstream_headers(self) -> None:
        self.upstream_headers_ns = perf_counter_ns()

    def mark_upstream_first_byte(self) -> None:
        if self.upstream_first_byte_ns is None:
            self.upstream_first_byte_ns = perf_counter_ns()

    def mark_upstream_last_byte(self) -> None:
        now = perf_counter_ns()
        if self.upstream_first_byte_ns is None:
            self.upstream_first_byte_ns = now
        self.upstream_last_byte_ns = now

    def mark_client_first_byte(self) -> None:
        if self.client_first_byte_ns is None:
            self.client_first_byte_ns = perf_counter_ns()

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

    # -- figures -----------------------------------------------------------
    def upstream_ns(self) -> int:
        if self.upstream_sent_ns is None:
            return 0
        end = self.upstream_last_byte_ns
        if end is None:
            # The upstream call did not finish (error, disconnect): charge it
            # up to the end of the request so that tax is not inflated.
            end = self.client_last_byte_ns or perf_counter_ns()
        return max(0, end - self.upstream_sent_ns)

    def filter_critical_ns(self) -> int:
        intervals = sorted((c.start_ns, c.end_ns) for c in self.filter_calls if c.critical)
        covered = 0
        cur_start = cur_end = -1
        for start, end in intervals:
            if start > cur_end:
                covered += cur_end - cur_start
                cur_start, cur_end = start, end
            elif end > cur_end:
                cur_end = end
        covered += cur_end - cur_start
        return covered

    def breakdown(self, streamed: bool = False) -> Breakdown:
        end = self.client_last_byte_ns
        if end is None:
            end = perf_counter_ns()
        total = max(0, end - self.received_ns)
        upstream = min(self.upstream_ns(), total)
        tax = total - upstream
        filter_critical = min(self.filter_critical_ns(), tax)
        per_filter: dict[tuple[str, Stage], float] = {}
        for call in self.filter_calls:
            key = (call.filter, call.stage)
            per_filter[key] = per_filter.get(key, 0.0) + call.duration_ns / NS_PER_S
        ttft = upstream_ttft = None
        if streamed and self.client_first_byte_ns is not None:
            ttft = (self.client_first_byte_ns - self.received_ns) / NS_PER_S
        if (
            streamed
            and self.upstream_first_byte_ns is not None
            and self.upstream_sent_ns is not None
        ):
            upstream_ttft = (self.upstream_first_byte_ns - self.upstream_sent_ns) / NS_PER_S
        return Breakdown(
            total=total / NS_PER_S,
            upstream=upstream / NS_PER_S,
            tax=tax / NS_PER_S,
            filter_critical=filter_critical / NS_PER_S,
            overhead=(tax - filter_critical) / NS_PER_S,
            filters=per_filter,
            ttft=ttft,
            upstream_ttft=upstream_ttft,
            called_upstream=self.upstream_sent_ns is not None,
        )

    def server_timing(self) -> str:
        """The W3C Server-Timing value of what is known now (sent with the headers)."""
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
        if self.upstream_sent_ns is not None and self.upstream_last_byte_ns is not None:
            upstream_ns = self.upstream_last_byte_ns - self.upstream_sent_ns
            parts.append(f"upstream;dur={upstream_ns / 1e6:.3f}")
            parts.append(f"tax;dur={(total_ns - upstream_ns) / 1e6:.3f}")
        elif self.upstream_sent_ns is not None and self.upstream_headers_ns is not None:
            headers_ns = self.upstream_headers_ns - self.upstream_sent_ns
            parts.append(f"upstream-headers;dur={headers_ns / 1e6:.3f}")
        parts.append(f"total;dur={total_ns / 1e6:.3f}")
        return ", ".join(parts)
