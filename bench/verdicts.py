"""The issue's targets, each computed from the same run, and what measuring costs taxmeter.

A ratio is taken per repeat (both figures from the same repeat) and the
median of those ratios is judged; the spread is shown beside it.
"""

from __future__ import annotations

import statistics

from rig import FOREIGN_LIMIT
from scenarios import Run, Scenario
from sweep import Sweep
from tables import added, spread, table

TM = "tm_none"


def _ratios(top: list[float | None], bottom: list[float | None]) -> list[float]:
    return [t / b for t, b in zip(top, bottom, strict=False) if t is not None and b and b > 0]


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _verdict(value: float | None, ok: bool) -> str:
    return "not measured" if value is None else ("**met**" if ok else "**missed**")


def _disturbed(scenario: Scenario, *keys: str) -> str:
    """How many of the runs a row is computed from ran alongside other work."""
    runs = [r for k in keys for r in scenario.runs.get(k, [])]
    hit = sum(r.usage.foreign >= FOREIGN_LIMIT for r in runs)
    return f"{hit} of {len(runs)}"


def _cpu(scenario: Scenario, key: str) -> list[float | None]:
    return [r.proxy_cpu_ms for r in scenario.runs.get(key, [])]


def _added_p50(scenario: Scenario, key: str) -> list[float | None]:
    def pick(r: Run) -> float:
        return r.p50_ms

    return list(added(scenario, key, pick)) if key in scenario.runs else []


def targets_table(scenarios: dict[str, Scenario], sweep: Sweep | None) -> list[str]:
    rows: list[list[str]] = []
    for name in ("c32", "c1"):
        s = scenarios.get(name)
        if s is None:
            continue
        ratios = _ratios(_cpu(s, TM), _cpu(s, "bare"))
        value = _median(ratios)
        rows.append([
            f"CPU per request ≤ bare aiohttp's ({s.title.lower()})",
            f"{spread(_cpu(s, TM))} vs {spread(_cpu(s, 'bare'))} ms",
            f"{spread(ratios)} (≤ 1)",
            _verdict(value, value is not None and value <= 1),
            _disturbed(s, TM, "bare"),
        ])  # fmt: skip
    c1 = scenarios.get("c1")
    if c1 is not None:
        ratios = _ratios(_added_p50(c1, TM), _added_p50(c1, "nginx"))
        value = _median(ratios)
        rows.append([
            "added p50 at concurrency 1 at most 2x nginx's",
            f"{spread(_added_p50(c1, TM))} vs {spread(_added_p50(c1, 'nginx'))} ms",
            f"{spread(ratios)} (≤ 2)",
            _verdict(value, value is not None and value <= 2),
            _disturbed(c1, "direct", TM, "nginx"),
        ])  # fmt: skip
    for name in ("c1", "c32"):
        s = scenarios.get(name)
        if s is None:
            continue
        ratios = _ratios(_added_p50(s, TM), _added_p50(s, "litellm"))
        value = _median(ratios)
        rows.append([
            f"added p50 ≤ 1/20 of LiteLLM's ({s.title.lower()})",
            f"{spread(_added_p50(s, TM))} vs {spread(_added_p50(s, 'litellm'))} ms",
            f"{spread(ratios)} (≤ 0.05)",
            _verdict(value, value is not None and value <= 0.05),
            _disturbed(s, "direct", TM, "litellm"),
        ])  # fmt: skip
    for name in ("streams_steady", "streams_burst"):
        s = scenarios.get(name)
        if s is None or TM not in s.runs:
            continue
        values = added(s, TM, lambda r: r.p99_ms)
        value = _median(values)
        rows.append([
            f"added TTFT p99 < 1 ms ({s.title.lower()})",
            f"{spread(values)} ms",
            "—",
            _verdict(value, value is not None and value < 1),
            _disturbed(s, "direct", TM),
        ])  # fmt: skip
    if sweep is not None and TM in sweep.passed:
        rate = sweep.passed[TM]
        steps = [st for (k, _), found in sweep.steps.items() if k in ("direct", TM)
                 for st in found]  # fmt: skip
        hit = sum(st.usage.foreign >= FOREIGN_LIMIT for st in steps)
        rows.append([
            "≥ 1,500 non-streamed req/s on one core with added p99 < 5 ms (open loop)",
            f"{f'< {sweep.rates[0]:g}' if rate is None else f'{rate:g}'} req/s",
            "—",
            "**met**" if rate is not None and rate >= 1500 else "**missed**",
            f"{hit} of {len(steps)} steps",
        ])  # fmt: skip
    header = ["target (taxmeter, no filters, metrics on)", "measured", "ratio", "verdict",
              "runs with other work on the host"]  # fmt: skip
    return table(header, rows)


# What each part of taxmeter's own measurement costs: the row with it on minus the row without.
_COSTS = (
    ("metrics", TM, "tm_nometrics"),
    ("tracing, every request sampled", "tm_traced", TM),
    ("tracing, 1% sampled", "tm_sampled", TM),
)


def measurement_cost(scenarios: dict[str, Scenario]) -> list[str]:
    """CPU and latency of metrics (on - off) and of tracing (on - off), per scenario."""
    rows = []
    for what, on_key, off_key in _COSTS:
        for s in scenarios.values():
            if on_key not in s.runs or off_key not in s.runs:
                continue
            on, off = _cpu(s, on_key), _cpu(s, off_key)
            cpu = [a - b for a, b in zip(on, off, strict=False) if a is not None and b is not None]
            p50 = [a.p50_ms - b.p50_ms for a, b in zip(s.runs[on_key], s.runs[off_key],
                                                       strict=False)]  # fmt: skip
            rows.append([what, s.title, spread(cpu, 1000), spread(p50, 1000)])
    if not rows:
        return []
    header = ["what", "scenario", "CPU µs per request or stream (on - off)", "p50 µs (on - off)"]
    return table(header, rows)
