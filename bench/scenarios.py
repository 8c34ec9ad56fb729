"""The closed-loop and streaming scenarios, run over every target, repeats interleaved.

Each repeat visits the targets in order (direct first), so every proxy is
compared with the model server measured moments before it: "added" is
always proxy minus direct of the same repeat.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import ClientSession
from closed_loop import WrkResult, run_wrk
from procs import peak_rss_kib, reset_peak_rss
from rig import Rig, TargetGone, Usage
from self_report import mean_ms, overhead_totals
from streams import StreamsResult, burst, session, steady


@dataclass(frozen=True)
class Run:
    """One target in one repeat of one scenario."""

    p50_ms: float
    p99_ms: float
    throughput: float  # requests/s (closed loop) or streams measured
    count: int
    errors: int
    proxy_cpu_ms: float | None  # per request, or per stream
    usage: Usage
    gen_cpu_s: float  # the load generator's CPU time
    reported_overhead_ms: float | None = None  # taxmeter's own mean, from its /metrics
    mean_ms: float | None = None  # the generator's mean latency, where it reports one

    @property
    def gen_util(self) -> float:
        return self.gen_cpu_s / self.usage.wall_s if self.usage.wall_s > 0 else float("nan")

    @property
    def proxy_util(self) -> float | None:
        cpu = self.usage.proxy_cpu_s
        return None if cpu is None or self.usage.wall_s <= 0 else cpu / self.usage.wall_s


@dataclass
class Scenario:
    key: str
    title: str
    generator: str  # what generated the load, for the table's column header
    per: str  # "request" or "stream"
    runs: dict[str, list[Run]] = field(default_factory=dict)
    peak_rss_kib: dict[str, int | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# The API surfaces a stream can be made on (stream_ttft.SURFACES), as titles say them.
SURFACE_TITLES = {
    "chat": "chat completions",
    "completions": "completions",
    "responses": "responses",
    "messages": "messages",
}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def _start_rss(rig: Rig, scenario: Scenario, order: list[str]) -> None:
    for key in order:
        pid = rig.targets[key].pid
        if pid is not None and not reset_peak_rss(pid):
            scenario.notes.append(f"{key}: peak RSS could not be reset; it is since start")


def _end_rss(rig: Rig, scenario: Scenario, order: list[str]) -> None:
    for key in order:
        pid = rig.targets[key].pid
        scenario.peak_rss_kib[key] = None if pid is None else peak_rss_kib(pid)


async def closed_loop(
    rig: Rig,
    order: list[str],
    script: Path,
    connections: int,
    duration_s: int,
    warmup_s: int,
    repeats: int,
) -> Scenario:
    title = f"Non-streamed, closed loop, concurrency {connections}"
    scenario = Scenario(f"c{connections}", title, "wrk", "request")
    _start_rss(rig, scenario, order)
    for repeat in range(repeats):
        for key in order:
            if key in rig.gone:
                continue
            url = rig.targets[key].url
            metrics_url = rig.targets[key].metrics_url
            reported: list[float | None] = [None]

            async def warm(url: str = url) -> object:
                return await run_wrk(url, script, connections, warmup_s)

            async def run(
                url: str = url,
                metrics_url: str | None = metrics_url,
                reported: list[float | None] = reported,
            ) -> tuple[WrkResult, float]:
                before = None if metrics_url is None else await overhead_totals(metrics_url)
                done = await run_wrk(url, script, connections, duration_s)
                if metrics_url is not None and before is not None:
                    reported[0] = mean_ms(before, await overhead_totals(metrics_url))
                return done, done.cpu_s

            what = f"{scenario.key} #{repeat + 1} {key}"
            try:
                result, usage = await rig.measure(rig.targets[key], warm, run, what)
            except TargetGone:
                continue
            per_request = None
            if usage.proxy_cpu_s is not None and result.requests:
                per_request = usage.proxy_cpu_s * 1000 / result.requests
            scenario.runs.setdefault(key, []).append(
                Run(result.p50_ms, result.p99_ms, result.rps, result.requests,
                    result.errors + result.status_errors, per_request, usage, result.cpu_s,
                    reported[0], result.mean_ms)
            )  # fmt: skip
            print(f"bench: {scenario.key} #{repeat + 1} {key:13} p50 {result.p50_ms:8.3f} ms  "
                  f"p99 {result.p99_ms:8.3f} ms  {result.rps:8.0f} req/s  "
                  f"foreign {usage.foreign:.0%}")  # fmt: skip
    _end_rss(rig, scenario, order)
    return scenario


async def streaming(
    rig: Rig,
    order: list[str],
    mode: str,
    streams: int,
    tokens: int,
    stream_s: float,
    duration_s: float,
    repeats: int,
    headers: dict[str, str],
    surface: str | None = None,
) -> Scenario:
    """``mode`` is "burst" or "steady" (see :mod:`streams`); with a ``surface``
    (chat, completions, responses, messages), a burst on that API surface, its
    key ``surface_<name>``."""
    if surface is not None:
        title = f"Streamed {SURFACE_TITLES[surface]}, {streams} streams started together"
        key = f"surface_{surface}"
    elif mode == "burst":
        title = f"Streamed, {streams} streams of {tokens} tokens started together"
        key = "streams_burst"
    else:
        title = (f"Streamed, {streams} streams of {tokens} tokens kept open "
                 f"(starts staggered, {duration_s:g} s)")  # fmt: skip
        key = "streams_steady"
    scenario = Scenario(key, title, "client", "stream")
    api = surface or "chat"
    _start_rss(rig, scenario, order)
    for repeat in range(repeats):
        for key in order:
            if key in rig.gone:
                continue
            url = rig.targets[key].url
            client = session(streams)

            async def warm(url: str = url, client: ClientSession = client) -> object:
                # As many short streams as will run: every connection, ours and the
                # proxy's to the model server, is open when the clock starts.
                return await burst(client, url, streams, 2, headers, rig.self_cpu_ns, api)

            async def run(
                url: str = url, client: ClientSession = client
            ) -> tuple[StreamsResult, float]:
                cpu = rig.self_cpu_ns
                if mode == "burst" or surface is not None:
                    return await burst(client, url, streams, tokens, headers, cpu, api), 0.0
                done = await steady(client, url, streams, tokens, headers, stream_s,
                                    duration_s, cpu)  # fmt: skip
                return done, 0.0

            what = f"{scenario.key} #{repeat + 1} {key}"
            try:
                async with client:
                    result, usage = await rig.measure(rig.targets[key], warm, run, what)
            except TargetGone:
                continue
            per_stream = None
            if usage.proxy_cpu_s is not None and result.started:
                per_stream = usage.proxy_cpu_s * 1000 / result.started
            p50, p99 = percentile(result.ttft_ms, 0.5), percentile(result.ttft_ms, 0.99)
            scenario.runs.setdefault(key, []).append(
                Run(p50, p99, len(result.ttft_ms), len(result.ttft_ms), result.failed,
                    per_stream, usage, result.cpu_s)
            )  # fmt: skip
            print(f"bench: {scenario.key} #{repeat + 1} {key:13} TTFT p50 {p50:8.3f} ms  "
                  f"p99 {p99:8.3f} ms  ({len(result.ttft_ms)} streams, "
                  f"{result.failed} failed)  foreign {usage.foreign:.0%}")  # fmt: skip
    _end_rss(rig, scenario, order)
    return scenario
