"""The targets judged from the run's microbenchmarks and its timing of ``taxmeter report``.

``figures["micro"]`` is what bench/micro.py writes with --json (each case's
median µs per call, semantic_guard's p50 and p99 ms per prompt or None);
``figures["report"]`` what bench/report_time.py writes (the whole command's
median seconds, and its own work's). A target whose figures are absent from
the run (its scenario not run) has no row; one whose figure is missing within
them (semantic_guard without the ml extra) says "not measured" and why.
"""

from __future__ import annotations

from typing import Any

from tables import num

PII, DENYLIST = "pii", "denylist (20 phrases)"
# size -> the most pii may cost against the denylist on the same text
PII_RATIOS = {"16 KB": 2.0, "1 KB": 3.0}
SEMANTIC_P50_MS = 8.0
REPORT_S = 1.0


def _verdict(value: float | None, ok: bool) -> str:
    return "not measured" if value is None else ("**met**" if ok else "**missed**")


def _pii_rows(cases: dict[str, float]) -> list[list[str]]:
    rows = []
    for size, limit in PII_RATIOS.items():
        pii, denylist = cases.get(f"{PII}, {size}"), cases.get(f"{DENYLIST}, {size}")
        ratio = pii / denylist if pii is not None and denylist else None
        measured = f"{num(pii)} vs {num(denylist)} µs"
        rows.append([
            f"`pii` on {size} ≤ {limit:g}x `denylist` (20 phrases) on {size} (bench/micro.py)",
            measured, f"{num(ratio)} (≤ {limit:g})",
            _verdict(ratio, ratio is not None and ratio <= limit), "—",
        ])  # fmt: skip
    return rows


def _semantic_row(micro: dict[str, Any]) -> list[str]:
    guard = micro.get("semantic_guard")
    what = f"`semantic_guard` p50 ≤ {SEMANTIC_P50_MS:g} ms per prompt, one core (bench/micro.py)"
    if not guard:
        why = "; ".join(micro.get("notes") or ()) or "not in this run"
        return [what, why, "—", "not measured", "—"]
    p50 = float(guard["p50_ms"])
    measured = f"p50 {num(p50)} ms, p99 {num(float(guard['p99_ms']))} ms"
    return [what, measured, "—", _verdict(p50, p50 <= SEMANTIC_P50_MS), "—"]


def _report_row(report: dict[str, Any]) -> list[str]:
    seconds = report.get("seconds")
    own = report.get("own_seconds")
    measured = f"{num(seconds)} s (its own work {num(own)} s)"
    variants, size = report.get("variants", "?"), report.get("reservoir_size", "?")
    what = f"`taxmeter report` < {REPORT_S:g} s on a full reservoir ({variants} variants of {size})"
    ok = seconds is not None and seconds < REPORT_S
    return [what, measured, "—", _verdict(seconds, ok), "—"]


def micro_rows(figures: dict[str, Any]) -> list[list[str]]:
    rows = []
    micro = figures.get("micro")
    if micro is not None:
        rows += _pii_rows(micro.get("cases_us") or {})
        rows.append(_semantic_row(micro))
    report = figures.get("report")
    if report is not None:
        rows.append(_report_row(report))
    return rows
