"""The access log: one JSON line per request, with the metrics' own figures."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from proxy.config.schema import ConfigError
from tests.loopback import ProxyFactory, post_json

CHAT = {"model": "m", "messages": [{"role": "user", "content": "echo: mail a@example.com"}]}
PII = {"name": "pii", "type": "pii", "stages": ["input", "output"]}
ROUTE = {"route": "chat_completions", "variant": "default"}


def lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_text().splitlines()]


async def test_each_request_is_one_line_with_the_metrics_figures(
    start_proxy: ProxyFactory, tmp_path: Path
) -> None:
    log = tmp_path / "access.jsonl"
    proxy = await start_proxy({"filters": [PII], "telemetry": {"access_log": str(log)}})
    status, _, _ = await post_json(
        f"{proxy.url}/v1/chat/completions", CHAT,
        {"Authorization": "Bearer sk-secret", "X-Request-Id": "req-1"},
    )  # fmt: skip
    assert status == 200
    [line] = lines(log)
    assert line["request_id"] == "req-1"
    assert (line["route"], line["variant"], line["status"], line["outcome"]) == (
        "chat_completions", "default", 200, "ok",
    )  # fmt: skip
    # The same floats the histograms observed (one request: their sums).
    for field, metric in (("total_s", "request_duration_seconds"), ("tax_s", "latency_tax_seconds"),
                          ("upstream_s", "upstream_duration_seconds"),
                          ("overhead_s", "proxy_overhead_seconds")):  # fmt: skip
        assert line[field] == proxy.value(f"taxmeter_{metric}_sum", **ROUTE), field
    for stage in ("input", "output"):
        assert line["filters_s"]["pii"][stage] == proxy.value(
            "taxmeter_filter_duration_seconds_sum", filter="pii", stage=stage, variant="default"
        )
    assert {"filter": "pii", "stage": "input", "mode": "enforce", "action": "redact"} in line[
        "actions"
    ]
    text = log.read_text()
    assert "sk-secret" not in text
    assert "a@example.com" not in text
    assert "request" not in line


async def test_blocked_and_failed_requests_are_logged_too(
    start_proxy: ProxyFactory, tmp_path: Path
) -> None:
    log = tmp_path / "access.jsonl"
    deny = {"name": "deny", "type": "denylist", "stages": ["input"], "params": {"words": ["mail"]}}
    proxy = await start_proxy({"filters": [deny], "telemetry": {"access_log": str(log)}})
    status, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
    assert status == 400
    [line] = lines(log)
    assert (line["status"], line["outcome"], line["upstream_s"]) == (400, "blocked", 0.0)
    assert line["actions"] == [
        {"filter": "deny", "stage": "input", "mode": "enforce", "action": "block"}
    ]


async def test_content_only_when_enabled_and_after_redaction(
    start_proxy: ProxyFactory, tmp_path: Path
) -> None:
    log = tmp_path / "access.jsonl"
    proxy = await start_proxy(
        {"filters": [PII],
         "telemetry": {"access_log": str(log), "access_log_content": True}}
    )  # fmt: skip
    await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
    [line] = lines(log)
    assert line["request"]["messages"][0]["content"] == "echo: mail [EMAIL]"
    assert line["response"]["choices"][0]["message"]["content"] == "mail [EMAIL]"
    assert "a@example.com" not in log.read_text()


async def test_sampling(start_proxy: ProxyFactory, tmp_path: Path) -> None:
    log = tmp_path / "access.jsonl"
    proxy = await start_proxy({"telemetry": {"access_log": str(log), "access_log_sample": 0}})
    for _ in range(5):
        await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
    assert not log.exists() or lines(log) == []

    half = tmp_path / "half.jsonl"
    proxy = await start_proxy({"telemetry": {"access_log": str(half), "access_log_sample": 0.5}})
    for _ in range(60):
        await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
    assert 10 < len(lines(half)) < 50


async def test_stdout(start_proxy: ProxyFactory, capsys: pytest.CaptureFixture[str]) -> None:
    proxy = await start_proxy({"telemetry": {"access_log": "stdout"}})
    await post_json(f"{proxy.url}/v1/models", b"")
    out = capsys.readouterr().out.strip().splitlines()
    assert orjson.loads(out[-1])["route"] == "other"


async def test_an_unwritable_path_is_a_config_error(
    start_proxy: ProxyFactory, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as caught:
        await start_proxy({"telemetry": {"access_log": str(tmp_path / "no" / "such" / "x")}})
    assert caught.value.key == "telemetry.access_log"


async def test_a_full_disk_loses_the_lines_not_the_metrics(
    start_proxy: ProxyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # /dev/full answers every write with ENOSPC, as a full disk does.
    proxy = await start_proxy({"filters": [PII], "telemetry": {"access_log": "/dev/full"}})
    for _ in range(3):
        status, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
        assert status == 200
    await proxy.settle()
    assert proxy.value("taxmeter_requests_total", outcome="ok", **ROUTE) == 3
    said = [r.getMessage() for r in caplog.records if "access log" in r.getMessage()]
    assert said == ["cannot write the access log /dev/full (No space left on device); "
                    "its lines are lost until a write succeeds"]  # fmt: skip


async def test_lines_are_written_again_once_the_log_takes_them(
    start_proxy: ProxyFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A pipe whose reader goes away (EPIPE) and comes back: a log that fails, then recovers.
    fifo = tmp_path / "access.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    proxy = await start_proxy({"telemetry": {"access_log": str(fifo)}})
    url = f"{proxy.url}/v1/chat/completions"
    for request_id, reading in (("one", True), ("two", False), ("three", True)):
        if not reading:
            os.close(reader)
        elif request_id == "three":
            reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        assert (await post_json(url, CHAT, {"X-Request-Id": request_id}))[0] == 200
        await proxy.settle()
        if reading:
            ids = [
                orjson.loads(line)["request_id"] for line in os.read(reader, 1 << 16).splitlines()
            ]
            assert ids[-1] == request_id
    os.close(reader)
    assert proxy.value("taxmeter_requests_total", outcome="ok", **ROUTE) == 3
    said = [r.getMessage() for r in caplog.records if r.name == "taxmeter.access_log"]
    assert said == [
        f"cannot write the access log {fifo} (Broken pipe); its lines are lost until a write"
        " succeeds",
        f"the access log {fifo} is written again",
    ]
