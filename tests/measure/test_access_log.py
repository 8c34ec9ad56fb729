"""The access log: one JSON line per request, with the metrics' own figures."""

from __future__ import annotations

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
