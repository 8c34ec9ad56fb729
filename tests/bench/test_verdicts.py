"""The targets section of bench/run.py's page, judged from synthetic runs.

No load is generated: each test builds the figures a run would have found
and reads the verdict rows bench/verdicts.py makes of them.
"""

from __future__ import annotations

from typing import Any

import pytest
from rig import Usage
from scenarios import Run, Scenario
from verdicts import targets_table
from verdicts_micro import DENYLIST, PII


def run(p50_ms: float = 1.0, p99_ms: float = 2.0, cpu_ms: float | None = None) -> Run:
    usage = Usage(wall_s=5.0, proxy_cpu_s=None, model_cpu_s=1.0, self_cpu_s=1.0,
                  load_core_busy=0.5, proxy_core_busy=0.5)  # fmt: skip
    return Run(p50_ms, p99_ms, 1000.0, 5000, 0, cpu_ms, usage, 1.0)


def scenario(key: str, per: str = "request", **runs: Run) -> Scenario:
    title = {"c1": "Non-streamed, closed loop, concurrency 1"}.get(key, f"Scenario {key}")
    return Scenario(key, title, "wrk", per, runs={k: [r] for k, r in runs.items()})


def rows(scenarios: list[Scenario], figures: dict[str, Any] | None = None) -> dict[str, list[str]]:
    """Target text -> its cells (measured, ratio, verdict, disturbed)."""
    lines = targets_table({s.key: s for s in scenarios}, None, figures)[2:]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return {c[0]: c[1:] for c in cells}


def only(found: dict[str, list[str]], start: str) -> list[str]:
    [key] = [k for k in found if k.startswith(start)]
    return found[key]


@pytest.mark.parametrize(("added_ms", "verdict"), [(0.29, "**met**"), (0.31, "**missed**")])
def test_added_p50_at_c1_is_judged_against_one_and_a_half_times_nginx(
    added_ms: float, verdict: str
) -> None:
    c1 = scenario("c1", direct=run(p50_ms=1.0), tm_none=run(p50_ms=1.0 + added_ms),
                  nginx=run(p50_ms=1.2))  # fmt: skip
    found = rows([c1])
    row = only(found, "added p50 at concurrency 1 at most 1.5x nginx's")
    assert row[2] == verdict, row
    assert not [k for k in found if "2x nginx" in k]  # the older target is gone


@pytest.mark.parametrize(("none_ms", "verdict"), [(0.30, "**met**"), (0.31, "**missed**")])
def test_cpu_per_request_is_judged_against_three_quarters_of_bare_with_the_chain_beside(
    none_ms: float, verdict: str
) -> None:
    c1 = scenario("c1", direct=run(), bare=run(cpu_ms=0.40), tm_none=run(cpu_ms=none_ms),
                  tm_default=run(cpu_ms=none_ms + 0.05))  # fmt: skip
    streams = scenario("streams_burst", "stream", direct=run(), bare=run(cpu_ms=2.0),
                       tm_none=run(cpu_ms=1.0))  # fmt: skip
    found = rows([c1, streams])
    row = only(found, "CPU per request ≤ 0.75x bare aiohttp's (non-streamed")
    assert row[2] == verdict, row
    assert "default chain +0.050 ms" in row[0], row
    stream_row = only(found, "CPU per stream ≤ 0.75x bare aiohttp's")
    assert stream_row[2] == "**met**"
    assert "default chain" not in stream_row[0]  # not run in that scenario: nothing beside
    assert not [k for k in found if "≤ bare aiohttp" in k]  # the older target is gone


@pytest.mark.parametrize(("traced_ms", "verdict"), [(0.39, "**met**"), (0.41, "**missed**")])
def test_every_request_traced_may_add_a_tenth_of_a_millisecond_of_cpu(
    traced_ms: float, verdict: str
) -> None:
    c1 = scenario("c1", direct=run(), tm_none=run(cpu_ms=0.30), tm_traced=run(cpu_ms=traced_ms))
    row = only(rows([c1]), "every request traced adds ≤ 0.1 ms CPU per request")
    assert row[2] == verdict, row


def test_each_surface_streamed_through_the_default_chain_has_its_row() -> None:
    found = rows([
        scenario("surface_chat", "stream", direct=run(p99_ms=200.0),
                 tm_default=run(p99_ms=200.9)),
        scenario("surface_messages", "stream", direct=run(p99_ms=200.0),
                 tm_default=run(p99_ms=201.5)),
        scenario("surface_responses", "stream", direct=run(p99_ms=200.0)),  # not run through it
    ])  # fmt: skip
    assert only(found, "added TTFT p99 < 1 ms (scenario surface_chat, default chain)")[2] == (
        "**met**"
    )
    assert only(found, "added TTFT p99 < 1 ms (scenario surface_messages")[2] == "**missed**"
    assert only(found, "added TTFT p99 < 1 ms (scenario surface_responses")[2] == "not measured"


def micro(pii_1k: float, pii_16k: float, guard: dict[str, float] | None) -> dict[str, Any]:
    cases = {f"{PII}, 1 KB": pii_1k, f"{DENYLIST}, 1 KB": 10.0,
             f"{PII}, 16 KB": pii_16k, f"{DENYLIST}, 16 KB": 100.0}  # fmt: skip
    notes = ["semantic_guard: not measured (needs the ml extra)"] if guard is None else []
    return {"cases_us": cases, "semantic_guard": guard, "notes": notes}


def test_pii_semantic_guard_and_report_are_judged_from_the_same_runs_figures() -> None:
    figures = {
        "micro": micro(30.0, 201.0, {"p50_ms": 7.5, "p99_ms": 20.0, "prompts": 345.0}),
        "report": {"seconds": 0.8, "own_seconds": 0.3, "variants": 4, "reservoir_size": 10000},
    }
    found = rows([], figures)
    assert only(found, "`pii` on 1 KB ≤ 3x")[1:3] == ["3.000 (≤ 3)", "**met**"]
    assert only(found, "`pii` on 16 KB ≤ 2x")[1:3] == ["2.010 (≤ 2)", "**missed**"]
    assert only(found, "`semantic_guard` p50 ≤ 8 ms")[2] == "**met**"
    report = only(found, "`taxmeter report` < 1 s on a full reservoir (4 variants of 10000)")
    assert report[0] == "0.800 s (its own work 0.300 s)"
    assert report[2] == "**met**"

    figures = {"micro": micro(31.0, 100.0, None), "report": {"seconds": 1.2, "own_seconds": 0.5}}
    found = rows([], figures)
    assert only(found, "`pii` on 1 KB ≤ 3x")[2] == "**missed**"
    assert only(found, "`pii` on 16 KB ≤ 2x")[2] == "**met**"
    guard = only(found, "`semantic_guard` p50")
    assert guard[0] == "semantic_guard: not measured (needs the ml extra)"
    assert guard[2] == "not measured"
    assert only(found, "`taxmeter report` < 1 s")[2] == "**missed**"


def test_without_micro_or_report_figures_those_targets_have_no_row() -> None:
    found = rows([scenario("c1", direct=run(), tm_none=run(), nginx=run())])
    assert not [k for k in found if "pii" in k or "semantic_guard" in k or "report" in k]


def test_the_micro_cases_the_pii_targets_read_exist() -> None:
    from micro import filter_cases

    names = filter_cases({"1 KB": "a", "16 KB": "b"})
    for size in ("1 KB", "16 KB"):
        assert f"{PII}, {size}" in names
        assert f"{DENYLIST}, {size}" in names
