"""The timeline's breakdown, from marks set by hand: one row per way filter time can lie.

No clock is read: each row builds a Timeline, sets its marks (in milliseconds
from the first byte) and checks the figures the metrics, traces and
Server-Timing all derive from. The rows are where a wrong rule would show:
filter time that overlapped the model's own time counted as tax, parallel
filters counted twice, the wait for parallel filters after the answer was
ready left out, a stream's held text charged to the total.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from filters.base import Stage
from proxy.measure.timeline import Timeline

NS_PER_MS = 1_000_000


@dataclass(frozen=True)
class Call:
    """One filter call: [start, end) in ms; critical: the request waited on it."""

    start: float
    end: float
    critical: bool = True
    stage: Stage = "input"
    name: str = "f"


@dataclass(frozen=True)
class MarksMs:
    """A request's marks in ms (None: not reached); received is 0."""

    last: float  # the client's last byte
    started: float = 0.0  # the handler ran (after ingress)
    upstream: tuple[float, float] | None = None  # request written, answer's last byte
    calls: tuple[Call, ...] = ()
    parallel_done: float | None = None
    first_content: float | None = None  # the upstream's first content (a stream)
    client_first_content: float | None = None  # the client's first content
    first_byte: float | None = None  # the upstream's first byte, when before its first content
    client_first_byte: float | None = None  # the client's, likewise (a role-only event)
    upstream_wait: float = 0.0  # the read answer waited this long for the loop
    egress: float | None = None  # the last byte handed to the client's socket
    streamed: bool = False


@dataclass(frozen=True)
class Figures:
    total: float
    upstream: float
    tax: float
    filter_critical: float
    overhead: float
    extra: dict[str, float] = field(default_factory=dict)  # other Breakdown fields, ms


def ms(value: float) -> int:
    return round(value * NS_PER_MS)


def timeline_of(marks: MarksMs) -> Timeline:
    timeline = Timeline()  # no arrival: its clock is reset below
    timeline.received_ns = 0
    timeline.started_ns = ms(marks.started)
    if marks.upstream is not None:
        sent, last = marks.upstream
        timeline.upstream_sent_ns = timeline.upstream_written_ns = ms(sent)
        timeline.upstream_first_byte_ns = ms(marks.first_byte or marks.first_content or last)
        timeline.upstream_last_byte_ns = ms(last)
        timeline.upstream_wait_ns = ms(marks.upstream_wait)
    if marks.first_content is not None:
        timeline.upstream_first_content_ns = ms(marks.first_content)
    if marks.client_first_content is not None:
        timeline.client_first_content_ns = ms(marks.client_first_content)
    timeline.client_first_byte_ns = ms(
        marks.client_first_byte or marks.client_first_content or marks.last
    )
    timeline.client_last_byte_ns = ms(marks.last)
    if marks.parallel_done is not None:
        timeline.parallel_done_ns = ms(marks.parallel_done)
    if marks.egress is not None:
        timeline.egress_ns = ms(marks.egress)
    for call in marks.calls:
        made = timeline.start_filter(call.name, call.stage, "enforce", call.critical)
        made.start_ns, made.end_ns = ms(call.start), ms(call.end)
    return timeline


ROWS = [
    pytest.param(
        MarksMs(last=125, upstream=(22, 122), calls=(Call(1, 21),)),
        Figures(total=125, upstream=100, tax=25, filter_critical=20, overhead=5),
        id="an input filter before the model: all of it is tax",
    ),
    pytest.param(
        MarksMs(last=125, upstream=(20, 120), calls=(Call(10, 30),)),
        Figures(total=125, upstream=100, tax=25, filter_critical=10, overhead=15),
        id="a filter overlapping the model's start: only the part before it",
    ),
    pytest.param(
        MarksMs(last=125, upstream=(20, 120), calls=(Call(30, 50),)),
        Figures(total=125, upstream=100, tax=25, filter_critical=0, overhead=25),
        id="a filter wholly inside the model's time: none of it",
    ),
    pytest.param(
        MarksMs(last=125, upstream=(20, 120), calls=(Call(110, 124, stage="output"),)),
        Figures(total=125, upstream=100, tax=25, filter_critical=4, overhead=21),
        id="a filter overlapping the model's end: only the part after it",
    ),
    pytest.param(
        MarksMs(last=125, upstream=(22, 122), calls=(Call(1, 21), Call(5, 16, name="g"))),
        Figures(total=125, upstream=100, tax=25, filter_critical=20, overhead=5),
        id="two filters at once: their union, not their sum",
    ),
    pytest.param(
        MarksMs(last=125, upstream=(22, 122), calls=(Call(1, 6), Call(10, 20, name="g"))),
        Figures(total=125, upstream=100, tax=25, filter_critical=15, overhead=10),
        id="two filters one after the other: both",
    ),
    pytest.param(
        MarksMs(last=125, upstream=(22, 122), calls=(Call(1, 10), Call(5, 21, name="g"))),
        Figures(total=125, upstream=100, tax=25, filter_critical=20, overhead=5),
        id="a second filter outlasting the first it overlaps: their union",
    ),
    pytest.param(
        MarksMs(
            last=155, upstream=(2, 100), calls=(Call(1, 150, critical=False),), parallel_done=150
        ),
        Figures(total=155, upstream=98, tax=57, filter_critical=50, overhead=7),
        id="parallel input filters done after the answer: the wait after it",
    ),
    pytest.param(
        MarksMs(
            last=105, upstream=(2, 100), calls=(Call(1, 50, critical=False),), parallel_done=50
        ),
        Figures(total=105, upstream=98, tax=7, filter_critical=0, overhead=7),
        id="parallel input filters done before the answer: none",
    ),
    pytest.param(
        MarksMs(
            last=105,
            upstream=(2, 100),
            calls=(Call(1, 30, critical=False),),
            parallel_done=30,
            first_content=20,
            client_first_content=31,
            streamed=True,
        ),
        Figures(
            total=105,
            upstream=98,
            tax=7,
            filter_critical=0,
            overhead=7,
            extra={"ttft": 31, "upstream_ttft": 18, "ttft_tax": 13},
        ),
        id="a stream held for parallel filters while the model generates: ttft tax, not tax",
    ),
    pytest.param(
        MarksMs(
            last=105,
            upstream=(2, 100),
            first_byte=4,
            first_content=20,
            client_first_byte=5,
            client_first_content=31,
            streamed=True,
        ),
        Figures(
            total=105,
            upstream=98,
            tax=7,
            filter_critical=0,
            overhead=7,
            extra={"ttft": 31, "upstream_ttft": 18, "ttft_tax": 13},
        ),
        id="a stream whose first event has no text: time to first token is to the first text",
    ),
    pytest.param(
        MarksMs(
            last=115,
            upstream=(2, 100),
            calls=(Call(1, 110, critical=False),),
            parallel_done=110,
            first_content=20,
            client_first_content=111,
            streamed=True,
        ),
        Figures(total=115, upstream=98, tax=17, filter_critical=10, overhead=7),
        id="a stream held for parallel filters past the model's end: that part is tax",
    ),
    pytest.param(
        MarksMs(
            last=106,
            upstream=(2, 100),
            first_content=20,
            client_first_content=21,
            streamed=True,
            calls=(Call(50, 52, stage="stream"), Call(100, 103, stage="stream")),
        ),
        Figures(total=106, upstream=98, tax=8, filter_critical=3, overhead=5),
        id="stream filter calls: those during generation are not tax, the last one is",
    ),
    pytest.param(
        MarksMs(last=22, calls=(Call(1, 21),)),
        Figures(total=22, upstream=0, tax=22, filter_critical=20, overhead=2),
        id="blocked before the model: all of it is tax",
    ),
    pytest.param(
        MarksMs(last=130, upstream=(22, 122), calls=(Call(1, 21), Call(122, 127, critical=False))),
        Figures(total=130, upstream=100, tax=30, filter_critical=20, overhead=10),
        id="a call nobody waited on (observed later): not filter time",
    ),
    pytest.param(
        MarksMs(last=125, started=5, upstream=(22, 122), calls=(Call(6, 21),)),
        Figures(
            total=125, upstream=100, tax=25, filter_critical=15, overhead=10, extra={"ingress": 5}
        ),
        id="ingress before the handler ran: tax, in the overhead",
    ),
    pytest.param(
        MarksMs(last=125, upstream=(22, 122), egress=123, calls=(Call(1, 21),)),
        Figures(
            total=125,
            upstream=100,
            tax=25,
            filter_critical=20,
            overhead=5,
            extra={"egress": 2, "proxy_work": 3},
        ),
        id="egress, the response's last writes: in the overhead",
    ),
    pytest.param(
        MarksMs(last=125, upstream=(22, 122), upstream_wait=3, calls=(Call(1, 21),)),
        Figures(
            total=125, upstream=97, tax=28, filter_critical=20, overhead=8, extra={"loop_wait": 3}
        ),
        id="an answer that waited for the loop: the proxy's, not the model's",
    ),
]


@pytest.mark.parametrize(("marks", "expected"), ROWS)
def test_the_breakdown_of_hand_set_marks(marks: MarksMs, expected: Figures) -> None:
    got = timeline_of(marks).breakdown(streamed=marks.streamed)
    seconds = {
        "total": got.total, "upstream": got.upstream, "tax": got.tax,
        "filter_critical": got.filter_critical, "overhead": got.overhead,
    }  # fmt: skip
    wanted = {
        "total": expected.total, "upstream": expected.upstream, "tax": expected.tax,
        "filter_critical": expected.filter_critical, "overhead": expected.overhead,
    }  # fmt: skip
    assert {k: v * 1e3 for k, v in seconds.items()} == pytest.approx(wanted, abs=1e-9)
    for name, value in expected.extra.items():
        assert getattr(got, name) * 1e3 == pytest.approx(value, abs=1e-9), name
    # Whatever the row, the figures reconcile.
    assert got.total == pytest.approx(got.upstream + got.tax, abs=1e-12)
    assert got.tax == pytest.approx(got.filter_critical + got.overhead, abs=1e-12)


def test_each_filter_is_summed_over_its_calls_whatever_overlapped() -> None:
    marks = MarksMs(last=125, upstream=(20, 120),
                  calls=(Call(1, 11), Call(15, 25), Call(30, 40, stage="output")))  # fmt: skip
    got = timeline_of(marks).breakdown(streamed=False)
    # Per filter, what each cost, overlap or not; only the tax is cut to the critical path.
    assert {k: v * 1e3 for k, v in got.filters.items()} == pytest.approx(
        {("f", "input"): 20.0, ("f", "output"): 10.0}, abs=1e-9
    )
    assert got.filter_critical * 1e3 == pytest.approx(15.0, abs=1e-9)  # 1-11 and 15-20
