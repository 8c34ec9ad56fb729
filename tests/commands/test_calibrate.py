"""`taxmeter calibrate` as a user runs it: real processes, a short run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from proxy.measure.metrics import OVERHEAD_PARTS


def calibrate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", "calibrate", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_calibrate_compares_the_black_box_with_the_self_report() -> None:
    done = calibrate("--requests", "60", "--json")
    assert done.returncode == 0, done.stderr
    figures = orjson.loads(done.stdout)
    assert figures["requests"] == 60
    assert figures["concurrency"] == 1
    assert 0 < figures["direct_p50_ms"] < figures["proxied_p50_ms"]
    assert figures["added_p50_ms"] <= figures["added_p99_ms"]
    assert figures["reported_overhead_mean_ms"] > 0
    assert figures["reported_requests"] == 60  # the proxy's metrics counted the same requests
    assert figures["warmup_per_client"] > 0
    # Like with like: the self-report is a mean (a histogram's sum over its count).
    residual = figures["added_mean_ms"] - figures["reported_overhead_mean_ms"]
    assert abs(figures["residual_ms"] - residual) < 1e-9
    parts = figures["parts_mean_ms"]
    assert set(parts) == set(OVERHEAD_PARTS)
    assert abs(sum(parts.values()) - figures["reported_overhead_mean_ms"]) < 0.01
    assert 0 < figures["hop_p50_ms"] <= figures["hop_p99_ms"]


def test_calibrate_prints_a_table_and_runs_clients_at_once() -> None:
    done = calibrate("--requests", "64", "--concurrency", "8")
    assert done.returncode == 0, done.stderr
    assert "8 at a time" in done.stdout
    for words in ("added (black box)", "self-reported overhead", "residual", "loopback hop"):
        assert words in done.stdout
    assert "residual (added mean - reported mean)" in done.stdout
    assert "warm-up" in done.stdout  # why more requests were sent than are counted


def test_calibrate_counts_every_request_asked_for_when_clients_do_not_divide_it() -> None:
    done = calibrate("--requests", "10", "--concurrency", "3", "--json")
    assert done.returncode == 0, done.stderr
    figures = orjson.loads(done.stdout)
    assert (figures["requests"], figures["reported_requests"]) == (10, 10)  # not 3 x 3 = 9


def test_calibrate_names_what_is_wrong_with_a_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("filters:\n  - {name: x, type: synthetic, timeout_ms: fast}\n")
    done = calibrate("--config", str(bad), "--requests", "10")
    assert done.returncode == 2
    assert "filters[0].timeout_ms" in done.stderr
    done = calibrate("--config", str(tmp_path / "missing.yaml"), "--requests", "10")
    assert done.returncode == 2
    assert "cannot read config file" in done.stderr


def test_calibrate_refuses_fewer_requests_than_clients() -> None:
    done = calibrate("--requests", "4", "--concurrency", "8")
    assert done.returncode == 2
    assert "--requests" in done.stderr
