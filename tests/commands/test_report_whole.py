"""`taxmeter report`'s marginal and capability tables against a real proxy.

An ablation run: a filter that sleeps 20 ms beside ``pii``, each with its
``without_`` variant; the marginal tax of the sleeping filter is its 20 ms,
pii's is next to nothing. A capability run: filters that block prompts,
withhold answers and redact, each variant's shares and tokens per request
known exactly from the traffic sent. Both from /stats; the capability run
also from a real Prometheus.

The ablation test writes the report it rendered to the pytest tmp dir and
checks that docs/whole-tax.md quotes tables of the same shape (its
headers and rows' names), so the worked example cannot drift from the code.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.commands.test_report import Prometheus, report, start_prometheus
from tests.loopback import CHOOSABLE, ProxyFactory, RunningProxy, post_json, variant_headers

__all__ = ["start_prometheus"]  # the fixture, used by name

DOC = Path(__file__).resolve().parents[2] / "docs" / "whole-tax.md"
ABLATION = {
    **CHOOSABLE,
    "filters": [
        {"name": "slow", "type": "synthetic", "stages": ["input"], "params": {"wall_ms": 20}},
        {"name": "pii", "type": "pii", "stages": ["input", "output"]},
    ],
    # The ablation weight is the larger: the baseline is still the configured variant.
    "variants": {"all": {"weight": 50}},
    "ablation": {"weight": 100},
}
CAPABILITY = {
    **CHOOSABLE,
    "filters": [
        {"name": "gate", "type": "denylist", "stages": ["input"],
         "params": {"patterns": ["forbidden"]}},
        {"name": "censor", "type": "denylist", "stages": ["output"],
         "params": {"patterns": ["secretword"]}},
        {"name": "pii", "type": "pii", "stages": ["input"]},
    ],
    "variants": {"all": {"weight": 100}},
    "ablation": {"weight": 1},
}  # fmt: skip
# Of each variant's traffic, a quarter of each kind of prompt. The model (16
# tokens an answer, or the echoed words) makes the tokens known exactly.
PROMPTS = {
    "plain": "hello there",  # 16 tokens
    "blocked": "something forbidden",  # refused by gate: 0 tokens, never sent
    "redacted": "mail me at someone@example.org",  # pii: 16 tokens
    "withheld": "echo: secretword now",  # censor withholds the answer: 2 tokens
}


async def drive_variants(
    proxy: RunningProxy, per_variant: dict[str, list[str]], concurrency: int = 4
) -> None:
    """Each variant's prompts, chosen by header, ``concurrency`` at a time, the variants
    taking turns (as weighted assignment mixes them), so that a busy moment of a
    shared host slows them all alike instead of the variant whose turn it was."""
    turns = zip(*([(v, p) for p in prompts] for v, prompts in per_variant.items()), strict=True)
    jobs = iter([job for turn in turns for job in turn])

    async def worker(session: aiohttp.ClientSession) -> None:
        for variant, prompt in jobs:
            body = {"model": "m", "messages": [{"role": "user", "content": prompt}]}
            async with session.post(
                f"{proxy.url}/v1/chat/completions", json=body, headers=variant_headers(variant)
            ) as response:
                assert response.status in (200, 400), await response.text()
                await response.read()

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    await proxy.settle()


def marginal(document: dict[str, Any], filter_name: str, metric: str, stat: str) -> Any:
    [found] = [
        m
        for m in document["marginal"]
        if (m["filter"], m["metric"], m["statistic"]) == (filter_name, metric, stat)
    ]
    return found


def difference(document: dict[str, Any], variant: str, metric: str) -> Any:
    [found] = [
        d
        for d in document["capability"]["differences"]
        if (d["variant"], d["metric"]) == (variant, metric)
    ]
    return found


def table_shape(text: str) -> list[tuple[str, ...]]:
    """A report's section titles, table headers and the names its rows start with
    (as a set: which request finishes first decides the order of the filters)."""
    shape: list[tuple[str, ...]] = []
    for line in text.splitlines():
        if line and not line.startswith(" "):
            shape.append(("title", re.sub(r"\d+", "N", re.sub(r"\(.*?\)", "()", line))))
        elif line.startswith("  ") and not line.startswith("   "):
            words = line.split()
            shape.append(tuple(words[:2]) if words[0] in ("filter", "variant") else (words[0],))
    return sorted(set(shape))


async def test_ablation_finds_the_marginal_tax_of_a_20ms_filter_beside_pii(
    start_proxy: ProxyFactory, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    proxy = await start_proxy(ABLATION)
    variants = ("all", "without_slow", "without_pii")
    await drive_variants(proxy, {v: ["hi, write to a@b.org"] * 60 for v in variants})

    status, out, err = await report(capsys, "--proxy", proxy.metrics_url, "--json", "--seed", "3")
    assert status == 0, err
    document = json.loads(out)
    assert document["baseline"] == "all"  # not an ablation variant, whatever its weight
    assert {name: v["requests"] for name, v in document["variants"].items()} == dict.fromkeys(
        variants, 60
    )
    entry = marginal(document, "slow", "latency_tax_seconds", "mean")
    assert set(entry) == {"filter", "variant", "metric", "statistic", "difference", "ci95"}
    assert entry["variant"] == "without_slow"
    lo, hi = entry["ci95"]
    assert 0.017 <= entry["difference"] <= 0.023, entry
    assert 0 < lo <= entry["difference"] <= hi, entry
    # pii on a short prompt costs well under a millisecond, its marginal as much (with
    # the answer parsed for its output stage, and a loaded host): near 0 beside 20 ms.
    assert abs(marginal(document, "pii", "latency_tax_seconds", "mean")["difference"]) < 0.003
    # Neither uses more than a fraction of a millisecond of CPU: the sleeping filter
    # only in its last yields to the loop (how many depends on the load), pii on a
    # short prompt; which is why neither's marginal CPU can be told apart reliably.
    for name in ("slow", "pii"):
        cpu = marginal(document, name, "filter_cpu_seconds", "mean")
        assert abs(cpu["difference"]) < 0.001, cpu
    # Tax and filter CPU at four statistics for each filter; no stream, no TTFT.
    assert len(document["marginal"]) == 2 * 2 * 4

    status, table, err = await report(capsys, "--proxy", proxy.metrics_url, "--seed", "3")
    assert status == 0, err
    (tmp_path / "whole-tax-report.txt").write_text(table)  # the example docs quote
    print(table)
    [row] = [line for line in table.splitlines() if line.split()[:5] == [
        "slow", "without_slow", "latency", "tax", "mean"]]  # fmt: skip
    assert row.rstrip().endswith("*"), row
    # The page's one quoted report: the text block that starts as a report does.
    [quoted] = [block.split("```")[0] for block in DOC.read_text().split("```text\n")[1:]
                if block.startswith("taxmeter report:")]  # fmt: skip
    assert table_shape(quoted) == table_shape(table), "docs/whole-tax.md has drifted"


async def test_capability_shares_and_tokens_per_variant(
    start_proxy: ProxyFactory,
    start_prometheus: Callable[[str], Awaitable[Prometheus]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    proxy = await start_proxy(CAPABILITY)
    variants = ("all", "without_gate", "without_censor", "without_pii")
    traffic = {v: [p for p in PROMPTS.values() for _ in range(15)] for v in variants}
    # increase() counts from the first scrape that saw a series, and a filter's series
    # is born with its first call: one text completion per variant comes first, on a
    # route the report leaves out (--route chat_completions).
    for variant in variants:
        status, _, _ = await post_json(
            f"{proxy.url}/v1/completions", {"model": "m", "prompt": "hi"}, variant_headers(variant)
        )
        assert status == 200
    prometheus = await start_prometheus(proxy.metrics_url)
    await prometheus.wait_for("count(taxmeter_filter_duration_seconds_count)", 3 + 2 + 2 + 2)
    await drive_variants(proxy, traffic)
    await prometheus.wait_for("sum(taxmeter_requests_total)", 240 + 4)

    expected = {
        # blocked: gate's refusals and censor's withheld answers; tokens: 0/16/16/2.
        "all": (0.5, 0.25, 0.25, 8.5),
        "without_gate": (0.25, 0.25, 0.25, 12.5),
        "without_censor": (0.25, 0.25, 0.0, 8.5),
        "without_pii": (0.5, 0.0, 0.25, 8.5),
    }
    for source in ("--proxy", "--prometheus"):
        url = proxy.metrics_url if source == "--proxy" else prometheus.url
        argv = [source, url, "--json", "--seed", "5", "--route", "chat_completions"] + (
            ["--window", "5m"] if source == "--prometheus" else []
        )
        status, out, err = await report(capsys, *argv)
        assert status == 0, err
        document = json.loads(out)
        assert document["baseline"] == "all"
        rows = document["capability"]["variants"]
        got = {
            name: (
                row["blocked_share"],
                row["redacted_share"],
                row["content_filter_share"],
                row["completion_tokens_per_request"],
            )
            for name, row in rows.items()
        }
        assert got == expected, source
        # A prompt blocked before the model counts 0 tokens: every request's are known.
        assert {row["requests_with_tokens"] for row in rows.values()} == {60}
        for variant, metric, sign in [
            ("without_gate", "blocked_share", -1),
            ("without_censor", "content_filter_share", -1),
            ("without_pii", "redacted_share", -1),
            ("without_gate", "completion_tokens_per_request", +1),
        ]:
            d = difference(document, variant, metric)
            lo, hi = d["ci95"]  # none for tokens from Prometheus: it holds no spread
            assert d["difference"] * sign > 0, d
            if lo is not None:
                assert min(lo * sign, hi * sign) > 0, d  # the interval excludes 0
        # A filter that did not matter for a share shows no difference in it.
        assert difference(document, "without_pii", "blocked_share")["difference"] == 0
        if source == "--prometheus":
            cpu = [m for m in document["marginal"] if m["metric"] == "filter_cpu_seconds"]
            assert {m["statistic"] for m in cpu} == {"mean"}
            assert all(m["ci95"] == [None, None] for m in cpu)

    status, table, err = await report(
        capsys, "--proxy", proxy.metrics_url, "--seed", "5", "--route", "chat_completions"
    )
    assert status == 0, err
    print(table)
    [row] = [line.split() for line in table.splitlines() if line.split()[:2] == ["all", "60"]]
    assert row == ["all", "60", "50.0%", "25.0%", "25.0%", "8.50", "60"]
