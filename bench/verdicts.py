"""The issue's targets, each computed from the same run, and what measuring costs taxmeter.

A ratio is taken per repeat (both figures from the same repeat) and the
median of those ratios is judged; the spread is shown beside it. The
targets of the filters and of ``taxmeter report`` come from the same run's
bench/micro.py and bench/report_time.py (:mod:`verdicts_micro`).
"""

from __future__ import annotations

import statistics
from typing import Any

from rig import FOREIGN_LIMIT
from scenarios import Run, Scenario
from sweep import Sweep
from tables import added, spread, table
from verdicts_micro import micro_rows

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


def _row(
    what: str, measured: str, ratio: str, value: float | None, ok: bool, disturbed: str
) -> list[str]:
    return [what, measured, ratio, _verdict(value, value is not None and ok), disturbed]


def _differences(scenario: Scenario, on: str, off: str) -> list[float]:
    """Per repeat: the CPU per request (or stream) of ``on`` minus ``off``'s."""
    pairs = zip(_cpu(scenario, on), _cpu(scenario, off), strict=False)
    return [a - b for a, b in pairs if a is not None and b is not None]


def _cpu_rows(scenarios: dict[str, Scenario]) -> list[list[str]]:
    rows = []
    for name in ("c1", "c32", "streams_burst", "streams_steady"):
        s = scenarios.get(name)
        if s is None:
            continue
        ratios = _ratios(_cpu(s, TM), _cpu(s, "bare"))
        value = _median(ratios)
        chain = _differences(s, "tm_default", TM)
        beside = f"; default chain +{spread(chain)} ms" if chain else ""
        rows.append(_row(
            f"CPU per {s.per} ≤ 0.75x bare aiohttp's ({s.title.lower()})",
            f"{spread(_cpu(s, TM))} vs {spread(_cpu(s, 'bare'))} ms{beside}",
            f"{spread(ratios)} (≤ 0.75)", value, value is not None and value <= 0.75,
            _disturbed(s, TM, "bare", *(["tm_default"] if chain else [])),
        ))  # fmt: skip
    return rows


def _latency_rows(scenarios: dict[str, Scenario]) -> list[list[str]]:
    rows = []
    c1 = scenarios.get("c1")
    if c1 is not None:
        ratios = _ratios(_added_p50(c1, TM), _added_p50(c1, "nginx"))
        value = _median(ratios)
        rows.append(_row(
            "added p50 at concurrency 1 at most 1.5x nginx's",
            f"{spread(_added_p50(c1, TM))} vs {spread(_added_p50(c1, 'nginx'))} ms",
            f"{spread(ratios)} (≤ 1.5)", value, value is not None and value <= 1.5,
            _disturbed(c1, "direct", TM, "nginx"),
        ))  # fmt: skip
    for name in ("c1", "c32"):
        s = scenarios.get(name)
        if s is None:
            continue
        ratios = _ratios(_added_p50(s, TM), _added_p50(s, "litellm"))
        value = _median(ratios)
        rows.append(_row(
            f"added p50 ≤ 1/20 of LiteLLM's ({s.title.lower()})",
            f"{spread(_added_p50(s, TM))} vs {spread(_added_p50(s, 'litellm'))} ms",
            f"{spread(ratios)} (≤ 0.05)", value, value is not None and value <= 0.05,
            _disturbed(s, "direct", TM, "litellm"),
        ))  # fmt: skip
    return rows


def _ttft_rows(scenarios: dict[str, Scenario]) -> list[list[str]]:
    """Added TTFT p99 < 1 ms: no filters on chat, and the default chain on every surface."""
    rows = []
    streamed = [(k, TM) for k in ("streams_steady", "streams_burst")]
    streamed += [(k, "tm_default") for k in scenarios if k.startswith("surface_")]
    for name, key in streamed:
        s = scenarios.get(name)
        if s is None:
            continue
        values = added(s, key, lambda r: r.p99_ms)
        value = _median(values)
        who = "" if key == TM else ", default chain"
        rows.append(_row(
            f"added TTFT p99 < 1 ms ({s.title.lower()}{who})", f"{spread(values)} ms", "—",
            value, value is not None and value < 1, _disturbed(s, "direct", key),
        ))  # fmt: skip
    return rows


def _tracing_rows(scenarios: dict[str, Scenario]) -> list[list[str]]:
    rows = []
    for name in ("c1", "c32"):
        s = scenarios.get(name)
        if s is None or "tm_traced" not in s.runs:
            continue
        extra = _differences(s, "tm_traced", TM)
        value = _median(extra)
        rows.append(_row(
            f"every request traced adds ≤ 0.1 ms CPU per request ({s.title.lower()})",
            f"+{spread(extra)} ms (traced minus not)", "—", value,
            value is not None and value <= 0.1, _disturbed(s, TM, "tm_traced"),
        ))  # fmt: skip
    return rows


def _sweep_rows(sweep: Sweep | None) -> list[list[str]]:
    if sweep is None or TM not in sweep.passed:
        return []
    rate = sweep.passed[TM]
    steps = [st for (k, _), found in sweep.steps.items() if k in ("direct", TM)
             for st in found]  # fmt: skip
    hit = sum(st.usage.foreign >= FOREIGN_LIMIT for st in steps)
    return [[
        "≥ 1,500 non-streamed req/s on one core with added p99 < 5 ms (open loop)",
        f"{f'< {sweep.rates[0]:g}' if rate is None else f'{rate:g}'} req/s",
        "—",
        "**met**" if rate is not None and rate >= 1500 else "**missed**",
        f"{hit} of {len(steps)} steps",
    ]]  # fmt: skip


def targets_table(
    scenarios: dict[str, Scenario], sweep: Sweep | None, figures: dict[str, Any] | None = None
) -> list[str]:
    """One row per target; taxmeter is "no filters, metrics on" unless the row says otherwise.
    ``figures``: bench/micro.py's ("micro") and bench/report_time.py's ("report")."""
    rows = _latency_rows(scenarios) + _cpu_rows(scenarios) + _tracing_rows(scenarios)
    rows += _ttft_rows(scenarios) + _sweep_rows(sweep) + micro_rows(figures or {})
    header = ["target (taxmeter: no filters, metrics on, unless said)", "measured", "ratio",
              "verdict", "runs with other work on the host"]  # fmt: skip
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
