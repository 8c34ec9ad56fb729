"""The figures of ``taxmeter calibrate``, and how they are printed."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass

import orjson

from proxy.measure.metrics import OVERHEAD_PARTS

OVERHEAD = "taxmeter_proxy_overhead_seconds"
_PART = "taxmeter_proxy_overhead_part_seconds"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(frozen=True)
class Figures:
    """Milliseconds, except the counts (``requests``, ``concurrency``, ``warmup_per_client``,
    ``reported_requests``)."""

    requests: int  # pairs counted: a request direct and the same through the proxy
    concurrency: int
    warmup_per_client: int  # pairs each client sent first, not counted
    reported_requests: int  # the requests the proxy's metrics counted over the same time
    direct_p50_ms: float
    proxied_p50_ms: float
    added_p50_ms: float  # black box: of (proxied - direct), each pair measured back to back
    added_p99_ms: float
    added_mean_ms: float
    reported_overhead_mean_ms: float
    residual_ms: float  # added mean - reported overhead mean: like with like
    parts_mean_ms: dict[str, float]
    hop_p50_ms: float
    hop_p99_ms: float

    @classmethod
    def of(
        cls,
        concurrency: int,
        warmup: int,
        direct: list[float],
        proxied: list[float],
        reported: dict[str, float],
        hops: list[float],
    ) -> Figures:
        counted = reported.get(f"{OVERHEAD}_count", 0.0)
        count = counted or 1.0

        def mean_ms(key: str) -> float:
            return reported.get(key, 0.0) / count * 1e3

        # Each client sends a pair back to back, so a pair shares the host's
        # state of the moment (other load, CPU frequency) and its difference is
        # what the proxy added to that request.
        added = [p - d for p, d in zip(proxied, direct, strict=True)]
        added_mean = statistics.fmean(added) * 1e3
        overhead = mean_ms(f"{OVERHEAD}_sum")
        return cls(
            requests=len(proxied),
            concurrency=concurrency,
            warmup_per_client=warmup,
            reported_requests=round(counted),
            direct_p50_ms=_percentile(direct, 0.5) * 1e3,
            proxied_p50_ms=_percentile(proxied, 0.5) * 1e3,
            added_p50_ms=_percentile(added, 0.5) * 1e3,
            added_p99_ms=_percentile(added, 0.99) * 1e3,
            added_mean_ms=added_mean,
            reported_overhead_mean_ms=overhead,
            residual_ms=added_mean - overhead,
            parts_mean_ms={p: mean_ms(f"{_PART}_sum:{p}") for p in OVERHEAD_PARTS},
            hop_p50_ms=_percentile(hops, 0.5) * 1e3,
            hop_p99_ms=_percentile(hops, 0.99) * 1e3,
        )


def render(f: Figures) -> str:
    parts = ", ".join(f"{name} {ms:.3f}" for name, ms in f.parts_mean_ms.items())
    warmup = f.warmup_per_client * f.concurrency
    reported = f"the proxy counted {f.reported_requests}"
    if f.reported_requests != f.requests:
        reported += f" of {f.requests}: its metrics had not recorded the rest when scraped"
    return "\n".join([
        f"taxmeter calibrate: {f.requests} requests direct and {f.requests} through the proxy, "
        f"interleaved, {f.concurrency} at a time, after {warmup} warm-up pairs "
        f"({f.warmup_per_client} per client, not counted)",
        f"  direct p50                 {f.direct_p50_ms:8.3f} ms",
        f"  through the proxy p50      {f.proxied_p50_ms:8.3f} ms",
        f"  added (black box)    mean  {f.added_mean_ms:8.3f} ms   p50 {f.added_p50_ms:.3f} ms"
        f"   p99 {f.added_p99_ms:.3f} ms",
        f"  self-reported overhead     {f.reported_overhead_mean_ms:8.3f} ms (mean; {reported})",
        f"    by part (ms, mean): {parts}",
        f"  residual (added mean - reported mean) {f.residual_ms:8.3f} ms",
        f"  one extra loopback hop p50 {f.hop_p50_ms:8.3f} ms   p99 {f.hop_p99_ms:.3f} ms"
        "  (a round trip through a do-nothing process: no in-process clock sees it)",
        "",
    ])  # fmt: skip


def render_json(f: Figures) -> str:
    return orjson.dumps(asdict(f), option=orjson.OPT_INDENT_2).decode() + "\n"
