"""Every table a bench run writes says which run it came from, on the line under it.

Rendered from synthetic runs, as in test_verdicts: no load is generated.
"""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import micro
import report_time
from open_loop import StepResult
from provenance import Run, plain, stamp, this_run
from report_doc import render
from rig import Usage
from scenarios import Run as Measured
from scenarios import Scenario
from sweep import Step, Sweep

RUN = Run("8c18b4954424", "2026-12-04", "AMD EPYC (2 cores)", "full run, 3 repeats")
LINE = "_run: commit 8c18b4954424, 2026-12-04, AMD EPYC (2 cores), full run, 3 repeats_"


def usage() -> Usage:
    return Usage(wall_s=5.0, proxy_cpu_s=1.0, model_cpu_s=1.0, self_cpu_s=1.0,
                 load_core_busy=0.5, proxy_core_busy=0.5)  # fmt: skip


def measured(p50_ms: float, reported_ms: float | None = None) -> Measured:
    return Measured(p50_ms, p50_ms * 2, 1000.0, 5000, 0, 0.3, usage(), 1.0, reported_ms, p50_ms)


def scenario(key: str, per: str = "request") -> Scenario:
    runs = {"direct": [measured(1.0)], "tm_none": [measured(1.4, 0.3)],
            "tm_nometrics": [measured(1.3)], "nginx": [measured(1.2)]}  # fmt: skip
    return Scenario(key, f"Scenario {key}", "wrk", per, runs=runs, peak_rss_kib={"tm_none": 50_000})


def sweep() -> Sweep:
    result = StepResult(500, 500, [1.0, 2.0], 0, 0, 0.1, 2000, 0.5, 3.0)
    steps = {
        (k, 500.0): [Step(k, 500.0, 0, 1.0, 2.0, result, usage())] for k in ("direct", "tm_none")
    }
    return Sweep([500.0], 3.0, 0.5, steps, passed={"tm_none": 500.0})


def micro_section() -> str:
    measured = {"Built-in filters (one check() call, input stage)":
                {"pii, 1 KB": (28.8, 24.3), "denylist (20 phrases), 1 KB": (16.9, 15.6)},
                "Timeline to export": {"marks (build the timeline)": (1.5, 1.4)}}  # fmt: skip
    guard = {"p50_ms": 7.1, "p99_ms": 16.3, "prompts": 345.0}
    return micro.section(measured, guard, "semantic_guard: 345 prompts", "7 samples", LINE)


def report_section(markdown: bool = True) -> str:
    rows = {"the whole command": [1.08, 1.07, 1.09], "its own work": [0.26, 0.2, 0.3]}
    figures = {"variants": 4, "reservoir_size": 10_000, "resamples": 2000}
    return report_time.section(rows, figures, 3, markdown, LINE)


def tables(text: str) -> list[tuple[str, list[str]]]:
    """(the table's first row, the two lines after its last row) for every markdown table."""
    lines = [*text.split("\n"), "", ""]
    found, start = [], None
    for i, line in enumerate(lines):
        if line.startswith("|") and start is None:
            start = i
        if start is not None and not line.startswith("|"):
            found.append((lines[start], lines[i : i + 2]))
            start = None
    return found


def test_the_run_line_names_the_commit_the_date_the_machine_and_the_run() -> None:
    assert RUN.line() == LINE
    assert plain(LINE) == LINE[1:-1]


def test_every_table_of_a_page_has_the_runs_line_under_it_once() -> None:
    scenarios = {"c1": scenario("c1"), "c32": scenario("c32"),
                 "streams_burst": scenario("streams_burst", "stream")}  # fmt: skip
    micro_text = micro_section() + "\n" + report_section()
    figures = {"report": {"seconds": 1.08, "own_seconds": 0.26}}
    page = render(scenarios, sweep(), ["versions: nginx 1.22.1, LiteLLM 1.0"], micro_text, 3,
                  "full", 30.1, figures, run=RUN)  # fmt: skip
    found = tables(page)
    # targets; each scenario and its self-report (3 x 2); the sweep's two; the cost of
    # measuring; three microbenchmark tables; the report's
    assert len(found) == 14, [first for first, _ in found]
    for first, after in found:
        assert after == ["", LINE], (first, after)
    assert page.count(LINE) == 14  # the micro tables, stamped already, are not stamped again
    assert "on commit 8c18b4954424, 2026-12-04 (UTC)" in page.split("\n")[0]


def test_the_microbenchmarks_and_the_report_timing_alone_carry_the_line() -> None:
    for text in (micro_section(), report_section()):
        found = tables(text)
        assert found
        for first, after in found:
            assert after == ["", LINE], (first, after)
    assert report_section(markdown=False).splitlines()[-1] == plain(LINE)


def test_stamp_parts_the_line_from_a_table_and_from_the_text_after_it() -> None:
    text = "| a |\n|---|\n| 1 |\nright after\n\n| b |\n|---|"
    assert stamp(text, LINE) == (
        f"| a |\n|---|\n| 1 |\n\n{LINE}\n\nright after\n\n| b |\n|---|\n\n{LINE}"
    )
    assert stamp(stamp(text, LINE), LINE) == stamp(text, LINE)
    assert stamp("no table here", LINE) == "no table here"


def test_this_run_is_this_checkouts_commit_today_in_utc() -> None:
    git = ["git", "-C", str(Path(__file__).parents[2]), "rev-parse", "--short=12", "HEAD"]
    head = subprocess.run(git, capture_output=True, text=True, check=True).stdout.strip()
    line = this_run("bench/micro.py").line()
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert re.fullmatch(rf"_run: commit {head}( with uncommitted changes)?, {today}, "
                        r".+ \(\d+ cores\), bench/micro\.py_", line), line  # fmt: skip
