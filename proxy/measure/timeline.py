"""The request timeline: the single record of where one request's time went.

Every figure taxmeter reports (metrics, Server-Timing, traces, logs) is
derived from the marks recorded here (:mod:`proxy.measure.marks`), and the
timeline's modules are the only ones that read a clock for them. Marks are
``time.perf_counter_ns()`` integers; figures are derived once, in
:meth:`Timeline.breakdown`, and reconcile exactly:

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

from dataclasses import dataclass
from time import perf_counter_ns

from filters.base import Stage
from proxy.measure.loop_watch import NS_PER_S as NS_PER_S
from proxy.measure.marks import Marks


@dataclass(frozen=True, slots=True)
class Breakdown:
    """The derived figures of one request, in seconds."""

    total: float
    upstream: float
    tax: float
    filter_critical: float
    overhead: float
    filters: dict[tuple[str, Stage], float]  # per (filter, stage), summed over calls
    filter_cpu: dict[tuple[str, Stage], float]  # the same calls' CPU (proxy.judge.cpu_time)
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

    def server_timing(self) -> str:
        """The W3C Server-Timing value of these final figures: the trailer's.

        The same floats the metrics record, in milliseconds: ``total``,
        ``upstream`` (when the request reached the model), ``tax`` and its two
        parts ``filters`` (filter time on the critical path) and ``overhead``;
        each filter per stage; for a stream ``ttft``, ``upstream-ttft`` and
        ``holdback-NAME``.
        """
        parts = [
            f"filter-{name};desc={stage};dur={seconds * 1e3:.3f}"
            for (name, stage), seconds in self.filters.items()
        ]
        if self.called_upstream:
            parts.append(f"upstream;dur={self.upstream * 1e3:.3f}")
        parts.append(f"tax;dur={self.tax * 1e3:.3f}")
        parts.append(f'filters;desc="tax in filters";dur={self.filter_critical * 1e3:.3f}')
        parts.append(f'overhead;desc="tax not in filters";dur={self.overhead * 1e3:.3f}')
        if self.ttft is not None and self.upstream_ttft is not None:
            parts.append(f"ttft;dur={self.ttft * 1e3:.3f}")
            parts.append(f"upstream-ttft;dur={self.upstream_ttft * 1e3:.3f}")
        for name, seconds in self.holdback.items():
            parts.append(f"holdback-{name};dur={seconds * 1e3:.3f}")
        parts.append(f"total;dur={self.total * 1e3:.3f}")
        return ", ".join(parts)


class Timeline(Marks):
    """A request's marks, and the figures derived from them."""

    __slots__ = ()

    def upstream_interval(self, now_ns: int | None = None) -> tuple[int, int] | None:
        """The model server's interval, (start, end) marks: the ``upstream`` figure.

        ``now_ns``: the clock as read by the caller, for a call still under way.
        """
        start = self._upstream_start_ns()
        if start is None:
            return None
        end = self.upstream_last_byte_ns
        if end is None:
            # The upstream call did not finish (error, disconnect): charge it
            # up to the end of the request so that tax is not inflated.
            end = self.client_last_byte_ns or now_ns or perf_counter_ns()
        else:
            end -= self.upstream_wait_ns
        return start, max(start, end)

    def _ready_ns(self, streamed: bool) -> int | None:
        """When the upstream's answer could first have been forwarded."""
        if streamed:
            return self.upstream_first_content_ns or self.upstream_first_byte_ns
        return self.upstream_last_byte_ns

    def filter_critical_ns(self, streamed: bool) -> int:
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

    def breakdown(self, streamed: bool) -> Breakdown:
        end = self.client_last_byte_ns
        if end is None:
            end = perf_counter_ns()
        total = max(0, end - self.received_ns)
        interval = self.upstream_interval()
        upstream = 0 if interval is None else min(interval[1] - interval[0], total)
        tax = total - upstream
        filter_critical = min(self.filter_critical_ns(streamed), tax)
        per_filter: dict[tuple[str, Stage], float] = {}
        filter_cpu: dict[tuple[str, Stage], float] = {}
        for call in self.filter_calls:
            key = (call.filter, call.stage)
            per_filter[key] = per_filter.get(key, 0.0) + call.duration_ns / NS_PER_S
            filter_cpu[key] = filter_cpu.get(key, 0.0) + call.cpu_ns / NS_PER_S
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
            filter_cpu=filter_cpu,
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

    def server_timing(self) -> str:
        """The W3C Server-Timing value sent with the headers: what is known as they are written.

        Before the body is sent, so ``tax-until-headers`` and ``total-until-headers``
        are not the request's final figures: those (what the metrics record) are in
        the trailer (:meth:`Breakdown.server_timing`). Each input and output
        filter's entry is complete by now; stream filters' are in the trailer only.
        ``upstream`` is final when the model's answer was read whole before the
        headers; else ``upstream-headers`` is its time to its response headers, and
        the model's time so far is not tax. A request that never reached the model
        (blocked, refused) has all its time so far as tax.
        """
        now = perf_counter_ns()
        per_filter: dict[tuple[str, str], int] = {}
        for call in self.filter_calls:
            if call.stage != "stream":
                key = (call.filter, call.stage)
                per_filter[key] = per_filter.get(key, 0) + call.duration_ns
        parts = [
            f"filter-{name};desc={stage};dur={ns / 1e6:.3f}"
            for (name, stage), ns in per_filter.items()
        ]
        elapsed_ns = now - self.received_ns
        upstream_ns = 0
        interval = self.upstream_interval(now)  # one still under way: the model's so far
        if interval is not None:
            upstream_ns = min(interval[1] - interval[0], elapsed_ns)
            if self.upstream_last_byte_ns is not None:
                parts.append(f"upstream;dur={upstream_ns / 1e6:.3f}")
            elif self.upstream_sent_ns is not None and self.upstream_headers_ns is not None:
                headers_ns = self.upstream_headers_ns - self.upstream_sent_ns
                parts.append(f"upstream-headers;dur={headers_ns / 1e6:.3f}")
        parts.append(
            f'tax-until-headers;desc="tax until headers";dur={(elapsed_ns - upstream_ns) / 1e6:.3f}'
        )
        parts.append(f'total-until-headers;desc="time until headers";dur={elapsed_ns / 1e6:.3f}')
        return ", ".join(parts)


def _outside(start: int, end: int, interval: tuple[int, int] | None) -> int:
    """The length of [start, end) that lies outside ``interval``."""
    length = end - start
    if interval is None or length <= 0:
        return max(0, length)
    overlap = min(end, interval[1]) - max(start, interval[0])
    return length - max(0, overlap)
