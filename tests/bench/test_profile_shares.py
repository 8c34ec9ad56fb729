"""The table of CPU shares bench/profile_proxy.py prints, from a small py-spy raw sample."""

from __future__ import annotations

from profile_shares import OTHER, PARTS, by_file, charge, part_of, shares, shares_table

LINE = "_run: commit 8c18b4954424, 2026-12-04, AMD EPYC (2 cores), bench/profile_proxy.py_"
LOOP = "<module> (proxy/__main__.py:4);main (proxy/cli.py:60);run (uvloop/__init__.py:105)"
HANDLE = (
    f"{LOOP};_handle_request (aiohttp/web_protocol.py:480);handle (proxy/exchange/handler.py:90)"
)
# py-spy's -f raw: a stack per line, outermost frame first, then its samples.
RAW = "\n".join([
    f"{LOOP} 20",
    f"{LOOP};data_received (aiohttp/web_protocol.py:380) 25",
    f"{HANDLE};_writelines (aiohttp/http_writer.py:120) 15",
    f"{HANDLE};send (proxy/upstream/call.py:70) 12",
    f"{HANDLE};send (proxy/upstream/call.py:70);write (proxy/upstream/connection.py:88) 8",
    f"{HANDLE} 5",
    f"{HANDLE};mark (proxy/measure/timeline.py:50) 4",
    f"{HANDLE};record (proxy/measure/metrics.py:200);inc (prometheus_client/metrics.py:300) 6",
    f"{HANDLE};record (proxy/measure/stats.py:80) 2",
    f"{HANDLE};__init__ (yarl/_url.py:170) 3",
    "",
    "not a stack line",
])  # fmt: skip


def test_each_sample_is_charged_to_the_part_of_its_innermost_file() -> None:
    inner, ours, total = charge(RAW)
    assert total == 100
    found = {part: (share, top, top_share) for part, share, top, top_share in shares(inner)}
    assert [part for part, _ in PARTS] + [OTHER] == list(found)
    aiohttp, upstream, handler, loop, metrics, timeline = (p for p, _ in PARTS)
    assert found[aiohttp] == (0.40, "data_received (aiohttp/web_protocol.py)", 0.25)
    assert found[upstream][:2] == (0.20, "send (proxy/upstream/call.py)")
    assert found[metrics][0] == 0.08  # prometheus_client's own frames included
    assert found[timeline][0] == 0.04
    assert found[handler] == (0.05, "handle (proxy/exchange/handler.py)", 0.05)
    assert found[loop] == (0.20, "run (uvloop/__init__.py)", 0.20)
    assert found[OTHER][:2] == (0.03, "__init__ (yarl/_url.py)")
    # what of ours asked: the innermost frame of taxmeter's code, the entry point excluded
    assert ours["(no taxmeter frame: the loop, aiohttp)"] == 45
    assert ours["handle (proxy/exchange/handler.py)"] == 5 + 15 + 3
    assert by_file(inner)["proxy/upstream/call.py"] == 12


def test_the_parts_are_matched_by_file_prefix() -> None:
    assert part_of("proxy/measure/stats.py") == part_of("proxy/measure/metrics.py")
    assert part_of("proxy/measure/tracing.py") == OTHER
    assert part_of("proxy/server/wire.py") == part_of("proxy/exchange/respond.py")
    assert part_of("asyncio/events.py") == part_of("uvloop/__init__.py")
    # no file can match two parts: the order of PARTS decides nothing
    prefixes = [(part, prefix) for part, held in PARTS for prefix in held]
    assert not [(a, b) for pa, a in prefixes for pb, b in prefixes if pa != pb and b.startswith(a)]


def test_the_table_is_markdown_with_the_runs_line_under_it() -> None:
    inner, _, _ = charge(RAW)
    lines = shares_table(inner, LINE).split("\n")
    assert lines[:2] == [
        "| where | share of the proxy's samples | its largest function |",
        "|---|---|---|",
    ]
    assert len(lines) == 2 + len(PARTS) + 1 + 2
    assert lines[2].endswith("| 40.0% | `data_received (aiohttp/web_protocol.py)`, 25.0% |")
    assert lines[-2:] == ["", LINE]
