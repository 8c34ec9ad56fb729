"""The moderation filter in the proxy, judged by the simulated model server it forwards to."""

from __future__ import annotations

import socket
import time
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestServer

from proxy.sim.moderation import BASE_S, CATEGORIES, PER_CHAR_S
from tests.loopback import ProxyFactory, RunningProxy, post_json

# About 1 KB of ordinary prose: nothing the mock's keyword rules flag.
BENIGN = " ".join(["The quiet harbour light settles over the green garden road."] * 17)


def base_url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


def moderation(url: str, **fields: Any) -> dict[str, Any]:
    params = fields.pop("params", {})
    spec = {"name": "moderation", "type": "moderation", "stages": ["input"], "timeout_ms": 2000}
    return {"filters": [{**spec, **fields, "params": {"url": url, **params}}]}


async def chat(proxy: RunningProxy, text: str) -> tuple[int, dict[str, Any]]:
    body = {"model": "m", "messages": [{"role": "user", "content": text}]}
    status, _, raw = await post_json(f"{proxy.url}/v1/chat/completions", body)
    return status, orjson.loads(raw)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_a_flagged_prompt_is_blocked_and_a_benign_one_passes(
    start_proxy: ProxyFactory, model: TestServer
) -> None:
    proxy = await start_proxy(moderation(base_url(model)))
    status, payload = await chat(proxy, "echo: how do I build a bomb")
    assert status == 400
    assert payload["error"]["code"] == "content_filter"
    assert payload["error"]["message"].endswith("moderation: illicit/violent, violence")
    status, payload = await chat(proxy, "echo: hello there")
    assert status == 200
    assert payload["choices"][0]["message"]["content"] == "hello there"


async def test_the_filter_time_is_the_moderation_round_trip(
    start_proxy: ProxyFactory, model: TestServer
) -> None:
    proxy = await start_proxy(moderation(base_url(model)))
    n = 5
    for _ in range(n):
        status, _ = await chat(proxy, BENIGN)
        assert status == 200
    labels = {"filter": "moderation", "stage": "input", "variant": "default"}
    count = proxy.value("taxmeter_filter_duration_seconds_count", **labels)
    mean = proxy.value("taxmeter_filter_duration_seconds_sum", **labels) / count
    assert count == n
    expected = BASE_S + len(BENIGN) * PER_CHAR_S
    # The mock's timers may fire a tick early; loopback HTTP adds 1-2 ms, more on a busy host.
    assert expected - 0.002 < mean < expected + 0.015, (mean, expected)


@pytest.mark.parametrize(("on_error", "status"), [("open", 200), ("closed", 400)])
async def test_an_unreachable_service_follows_on_error(
    start_proxy: ProxyFactory, on_error: str, status: int
) -> None:
    proxy = await start_proxy(moderation(closed_port_url(), on_error=on_error))
    got, payload = await chat(proxy, "echo: hello")
    assert got == status
    if status == 400:
        assert payload["error"]["code"] == "content_filter"
        assert "moderation: filter error (on_error: closed)" in payload["error"]["message"]
    errors = proxy.value(
        "taxmeter_filter_decisions_total",
        filter="moderation", stage="input", mode="enforce", action="error",
    )  # fmt: skip
    assert errors == 1


async def test_a_judge_on_the_output_withholds_an_unsafe_completion(
    start_proxy: ProxyFactory, model: TestServer
) -> None:
    proxy = await start_proxy(
        moderation(base_url(model), stages=["output"], params={"style": "judge"})
    )
    status, payload = await chat(proxy, "echo: First, steal the car.")
    assert status == 200
    choice = payload["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    assert choice["message"]["content"] is None
    status, payload = await chat(proxy, "echo: Tea is ready.")
    assert payload["choices"][0]["message"]["content"] == "Tea is ready."


# -- the simulated server's moderation endpoints ------------------------------------


async def moderate(model: TestServer, body: object, **headers: str) -> tuple[int, Any]:
    status, _, raw = await post_json(f"{base_url(model)}/v1/moderations", orjson.dumps(body),
                                     headers)  # fmt: skip
    return status, orjson.loads(raw)


async def test_mock_moderations_answer_one_result_per_input(model: TestServer) -> None:
    status, payload = await moderate(model, {"input": ["nice tea", "you idiot", "a fight"]})
    assert status == 200
    assert payload["model"] == "omni-moderation-latest"
    assert payload["id"].startswith("modr-")
    tea, insult, fight = payload["results"]
    for result in (tea, insult, fight):
        assert list(result["categories"]) == list(CATEGORIES)
        assert list(result["category_scores"]) == list(CATEGORIES)
    assert not tea["flagged"]
    assert insult["flagged"]
    assert [c for c, on in insult["categories"].items() if on] == ["harassment"]
    assert not fight["flagged"]
    assert 0.2 < fight["category_scores"]["violence"] < 0.5


@pytest.mark.parametrize(
    ("body", "code"),
    [({}, "missing_required_parameter"), ({"input": [1, 2]}, "invalid_value")],
)
async def test_mock_moderations_reject_a_bad_input(
    model: TestServer, body: dict[str, Any], code: str
) -> None:
    status, payload = await moderate(model, body)
    assert status == 400
    assert payload["error"]["code"] == code
    assert payload["error"]["param"] == "input"


async def test_mock_moderations_latency_header_overrides_the_latency(model: TestServer) -> None:
    started = time.perf_counter()
    status, _ = await moderate(model, {"input": "hi"}, **{"x-mock-ttft-ms": "120"})
    assert status == 200
    assert time.perf_counter() - started > 0.115  # a timer may fire a tick early


@pytest.mark.parametrize(
    ("body", "reply", "finish"),
    [
        ({"model": "llama-guard-3-8b", "messages": [{"role": "user", "content": "kill"}]},
         "unsafe\nS1", "stop"),
        ({"model": "meta-llama/Llama-Guard-3-1B",
          "messages": [{"role": "user", "content": "tea?"}]}, "safe", "stop"),
        ({"model": "llama-guard", "max_tokens": 1,
          "messages": [{"role": "user", "content": "steal a bomb"}]}, "unsafe", "length"),
        ({"model": "any", "messages": [{"role": "user", "content":
          "<BEGIN UNSAFE CONTENT CATEGORIES>\nS1: Violent Crimes.\nS11: Suicide & Self-Harm.\n"
          "<END UNSAFE CONTENT CATEGORIES>\n<BEGIN CONVERSATION>\n\nUser: a bomb\n\n"
          "<END CONVERSATION>"}]}, "unsafe\nS9", "stop"),
    ],
)  # fmt: skip
async def test_mock_judge_answers_like_llama_guard(
    model: TestServer, body: dict[str, Any], reply: str, finish: str
) -> None:
    status, _, raw = await post_json(f"{base_url(model)}/v1/chat/completions", body)
    assert status == 200
    choice = orjson.loads(raw)["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"]) == (reply, finish)
