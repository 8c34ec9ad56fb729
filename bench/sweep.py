"""The open-loop rate sweep: the highest rate at which a proxy adds under 5 ms at p99.

At each rate, each repeat runs the model server directly and then every
proxy still in the sweep. A proxy leaves the sweep at the first rate where
its added p99 (median over the repeats) reaches the limit, where requests
fail or are dropped, or where the generator could not keep the schedule
against it. The sweep ends when the generator cannot keep the schedule
against the model server alone: beyond that, no proxy can be judged.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from closed_loop import BODY
from open_loop import StepResult, request_bytes, run_step
from rig import FOREIGN_LIMIT, Rig, TargetGone, Usage
from scenarios import percentile

LIMIT_MS = 5.0
LAG = 0.95  # a step whose send rate falls below this fraction of the target lagged


@dataclass(frozen=True)
class Step:
    key: str
    rate: float
    repeat: int
    p50_ms: float
    p99_ms: float
    result: StepResult
    usage: Usage

    @property
    def lagged(self) -> bool:
        return self.result.sent_rate < LAG * self.rate

    @property
    def proxy_cpu_ms(self) -> float | None:
        served = self.result.served_all  # the rig's snapshots include the warm-up
        cpu = self.usage.proxy_cpu_s
        return None if cpu is None or not served else cpu * 1000 / served


@dataclass
class Sweep:
    rates: list[float]
    step_s: float
    warmup_s: float
    steps: dict[tuple[str, float], list[Step]] = field(default_factory=dict)
    passed: dict[str, float | None] = field(default_factory=dict)  # highest passing rate
    stopped: dict[str, str] = field(default_factory=dict)  # why a target left the sweep
    notes: list[str] = field(default_factory=list)

    def added(self, key: str, rate: float, which: str) -> list[float]:
        """Per repeat: the target's p50 or p99 minus direct's at the same rate and repeat."""
        direct = {s.repeat: s for s in self.steps.get(("direct", rate), [])}
        out = []
        for step in self.steps.get((key, rate), []):
            base = direct.get(step.repeat)
            if base is not None:
                out.append(getattr(step, which) - getattr(base, which))
        return out


def _verdict(steps: list[Step], added_p99: list[float]) -> str | None:
    """Why these steps fail the sweep, or None if they pass."""
    reason = _failure(steps, added_p99)
    if reason is not None and any(s.usage.foreign >= FOREIGN_LIMIT for s in steps):
        reason += " (other work on the host was running)"
    return reason


def _failure(steps: list[Step], added_p99: list[float]) -> str | None:
    if any(s.lagged for s in steps):
        worst = min(s.result.sent_rate for s in steps)
        return f"generator lagged (sent {worst:.0f}/s)"
    failed = sum(s.result.errors + s.result.dropped for s in steps)
    if failed:
        return f"{failed} requests failed or dropped"
    if added_p99 and statistics.median(added_p99) >= LIMIT_MS:
        return f"added p99 {statistics.median(added_p99):.2f} ms"
    return None


async def sweep(
    rig: Rig,
    order: list[str],
    rates: list[float],
    duration_s: float,
    warmup_s: float,
    repeats: int,
    key_header: dict[str, str],
    max_outstanding: int = 2000,
) -> Sweep:
    result = Sweep(rates, duration_s, warmup_s)
    alive = [k for k in order if k != "direct"]
    result.passed = dict.fromkeys(alive)
    body = BODY.encode()

    async def one(key: str, rate: float, repeat: int) -> Step | None:
        target = rig.targets[key]
        where = urlsplit(target.url)
        host, port = where.hostname or "127.0.0.1", where.port or 80
        request = request_bytes(host, port, "/v1/chat/completions", body, key_header)
        cpu: Callable[[], int] = rig.self_cpu_ns

        async def warm() -> None:
            pass  # each step has its own warm-up at its rate

        async def run() -> tuple[StepResult, float]:
            done = await run_step(host, port, request, rate, duration_s, warmup_s,
                                  max_outstanding, cpu)  # fmt: skip
            return done, 0.0

        what = f"sweep {rate:g}/s #{repeat + 1} {key}"
        try:
            step, usage = await rig.measure(target, warm, run, what)
        except TargetGone:
            return None
        latencies = step.latencies_ms
        out = Step(key, rate, repeat, percentile(latencies, 0.5), percentile(latencies, 0.99),
                   step, usage)  # fmt: skip
        result.steps.setdefault((key, rate), []).append(out)
        print(f"bench: sweep {rate:6.0f}/s #{repeat + 1} {key:13} p50 {out.p50_ms:8.3f} ms  "
              f"p99 {out.p99_ms:8.3f} ms  sent {step.sent_rate:6.0f}/s  errors {step.errors} "
              f"dropped {step.dropped}  foreign {usage.foreign:.0%}")  # fmt: skip
        return out

    for rate in rates:
        if not alive:
            break
        for repeat in range(repeats):
            await one("direct", rate, repeat)
            for key in alive:
                if key not in rig.gone:
                    await one(key, rate, repeat)
        for key in [k for k in alive if k in rig.gone]:
            alive.remove(key)
            result.stopped[key] = f"at {rate:g}/s: the proxy exited"
        direct_fail = _verdict(result.steps[("direct", rate)], [])
        for key in list(alive):
            reason = _verdict(result.steps[(key, rate)], result.added(key, rate, "p99_ms"))
            if reason is not None:
                alive.remove(key)
                result.stopped[key] = f"at {rate:g}/s: {reason}"
            elif direct_fail is None:
                result.passed[key] = rate
        if direct_fail is not None:
            result.stopped["direct"] = f"at {rate:g}/s: {direct_fail}"
            for key in alive:
                result.stopped[key] = (
                    f"not judged beyond {rate:g}/s: the generator and model server "
                    f"alone failed there ({direct_fail})"
                )
            break
    else:
        for key in alive:
            result.stopped[key] = f"passed every rate up to {rates[-1]:g}/s"
    return result
