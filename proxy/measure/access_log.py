"""The access log: one JSON line per request, from the same figures as the metrics.

Written at the end of the request from its Breakdown (measure once, export
many), so a line's figures are exactly the values the histograms observed.
Never the Authorization header or any other header; the prompt and the
completion only with ``access_log_content``, and then as forwarded and sent,
that is after the filters' redactions.
"""

from __future__ import annotations

import logging
import random
import sys
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from proxy.measure.served import Served
from proxy.measure.timeline import Breakdown

log = logging.getLogger("taxmeter.access_log")


class AccessLog:
    """Writes to stdout or appends to a file, one line per (sampled) request."""

    def __init__(self, target: str, sample: float = 1.0, content: bool = False) -> None:
        self._own = target != "stdout"
        self._out: IO[str] = sys.stdout
        if self._own:
            # Open for the proxy's lifetime (closed at shutdown), line-buffered:
            # each request's line reaches the file when it is written.
            self._out = open(target, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        self._target = target
        self._sample = sample
        self._content = content
        self._random = random.Random()
        self._failing = False

    def write(self, ex: Served, figures: Breakdown, trace_id: str | None) -> None:
        if self._sample < 1.0 and self._random.random() >= self._sample:
            return
        line = orjson.dumps(self.record(ex, figures, trace_id)).decode() + "\n"
        try:
            self._out.write(line)
        except OSError as exc:
            # A full disk costs the log its lines, never the request its metrics:
            # said once per outage, not once per request.
            if not self._failing:
                self._failing = True
                log.warning(
                    "cannot write the access log %s (%s); its lines are lost until a write"
                    " succeeds",
                    self._target,
                    exc.strerror or exc,
                )
            return
        if self._failing:
            self._failing = False
            log.warning("the access log %s is written again", self._target)

    def record(self, ex: Served, figures: Breakdown, trace_id: str | None) -> dict[str, Any]:
        timeline = ex.timeline
        arrived = datetime.fromtimestamp(timeline.epoch_ns(timeline.received_ns) / 1e9, UTC)
        filters: dict[str, dict[str, float]] = {}
        for (name, stage), seconds in figures.filters.items():
            filters.setdefault(name, {})[stage] = seconds
        line: dict[str, Any] = {
            "time": arrived.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "request_id": ex.request_id,
            "trace_id": trace_id,
            "method": ex.method,
            "route": ex.route,
            "variant": ex.variant,
            "status": ex.status,
            "upstream_status": ex.upstream_status or None,
            "outcome": ex.outcome,
            "streamed": ex.streamed,
            "total_s": figures.total,
            "upstream_s": figures.upstream,
            "tax_s": figures.tax,
            "filter_critical_s": figures.filter_critical,
            "overhead_s": figures.overhead,
            "ttft_s": figures.ttft,
            "upstream_ttft_s": figures.upstream_ttft,
            "ttft_tax_s": figures.ttft_tax,
            "filters_s": filters,
            "holdback_s": figures.holdback,
            "actions": [
                {"filter": c.filter, "stage": c.stage, "mode": c.mode, "action": c.action}
                for c in timeline.filter_calls
                if c.action != "allow"
            ],
        }
        if self._content:
            line["request"] = ex.body
            if not isinstance(ex.response_body, bytes | bytearray):
                line["response"] = ex.response_body
        return line

    def close(self) -> None:
        if not self._own:
            return
        try:
            self._out.close()  # closed even when its flush fails
        except OSError as exc:
            if not self._failing:
                log.warning("cannot write the access log %s at shutdown (%s)", self._target,
                            exc.strerror or exc)  # fmt: skip
