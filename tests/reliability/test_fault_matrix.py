"""The fault matrix: every way a model server can fail, one table, one proxy.

Each case gets the right status or stream ending, error code and outcome
label; afterwards the proxy still answers a normal request, holds no request
in flight, and, over the whole matrix, leaks no task or file descriptor.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import orjson
import pytest

from tests.loopback import ProxyFactory, RunningProxy
from tests.reliability.fault_upstream import HUGE_TEXT_BYTES, fault_upstream

PATH = "/v1/chat/completions"
CONFIG = {
    "filters": [{"name": "pii", "type": "pii", "stages": ["input", "output", "stream"]}],
    "upstream": {"read_timeout_s": 0.3, "total_timeout_s": 5},
}


@dataclass(frozen=True)
class Case:
    fault: str
    stream: bool
    status: int
    outcome: str
    code: str | None = None  # the error code, in the body or in the stream's error event


MATRIX = [
    Case("normal", False, 200, "ok"),
    Case("normal", True, 200, "ok"),
    Case("reset_before_headers", False, 502, "upstream_error", "upstream_reset"),
    Case("reset_before_headers", True, 502, "upstream_error", "upstream_reset"),
    Case("reset_mid_body", False, 502, "upstream_error", "upstream_reset"),
    Case("reset_mid_stream", True, 200, "upstream_error", "upstream_reset"),
    Case("server_error", False, 503, "upstream_error", "overloaded"),
    Case("server_error", True, 503, "upstream_error", "overloaded"),
    Case("malformed_json", False, 502, "upstream_error", "upstream_malformed"),
    Case("malformed_sse", True, 200, "upstream_error", "upstream_malformed"),
    Case("silent_stream", True, 200, "timeout", "upstream_timeout"),
    Case("hang", False, 504, "timeout", "upstream_timeout"),
    Case("hang", True, 504, "timeout", "upstream_timeout"),
    Case("slow_trickle", False, 200, "ok"),
    Case("huge", False, 200, "ok"),
]


@dataclass
class Answer:
    status: int
    content: str
    error_codes: list[str]
    done: bool


async def ask(proxy: RunningProxy, fault: str, stream: bool) -> Answer:
    body = {"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{proxy.url}{PATH}", json=body, headers={"x-fault": fault}) as response,
    ):
        raw = await response.read()
    if not response.headers.get("Content-Type", "").startswith("text/event-stream"):
        payload = orjson.loads(raw)
        if "error" in payload:
            return Answer(response.status, "", [payload["error"].get("code")], False)
        return Answer(response.status, payload["choices"][0]["message"]["content"], [], False)
    answer = Answer(response.status, "", [], False)
    for line in raw.split(b"\n"):
        if line == b"data: [DONE]":
            answer.done = True
        elif line.startswith(b"data: "):
            event = orjson.loads(line[6:])
            if "error" in event:
                answer.error_codes.append(event["error"]["code"])
            else:
                answer.content += event["choices"][0]["delta"].get("content") or ""
    return answer


def outcomes(proxy: RunningProxy) -> dict[str, float]:
    labels = ("ok", "blocked", "upstream_error", "timeout", "client_error", "client_disconnect")
    return {
        outcome: proxy.value(
            "taxmeter_requests_total", route="chat_completions", variant="default", outcome=outcome
        )
        for outcome in labels
    }


@pytest.fixture
async def faulty(start_proxy: ProxyFactory) -> AsyncIterator[RunningProxy]:
    async with fault_upstream() as url:
        yield await start_proxy(CONFIG, upstream=url)


async def check_case(proxy: RunningProxy, case: Case) -> None:
    before = outcomes(proxy)
    answer = await ask(proxy, case.fault, case.stream)
    assert answer.status == case.status, answer
    assert answer.error_codes == ([case.code] if case.code else []), answer
    if case.stream and case.status == 200:
        # The stream ends cleanly for the client: [DONE], or an error event and the end.
        assert answer.done == (case.code is None), answer
    after = outcomes(proxy)
    assert {k: after[k] - before[k] for k in after if after[k] != before[k]} == {case.outcome: 1}
    assert proxy.value("taxmeter_inflight_requests") == 0
    normal = await ask(proxy, "normal", case.stream)
    assert (normal.status, normal.error_codes) == (200, [])
    assert normal.content in ("fine", "all is well")


def case_id(case: Case) -> str:
    return f"{case.fault}-{'stream' if case.stream else 'json'}"


@pytest.mark.parametrize("case", MATRIX, ids=case_id)
async def test_each_fault_is_answered_right_and_the_proxy_keeps_serving(
    faulty: RunningProxy, case: Case
) -> None:
    await check_case(faulty, case)


async def test_the_huge_answer_arrives_whole(faulty: RunningProxy) -> None:
    answer = await ask(faulty, "huge", False)
    assert answer.content == "x" * HUGE_TEXT_BYTES


async def test_refused_is_502_every_time(start_proxy: ProxyFactory) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        port = holder.getsockname()[1]
        proxy = await start_proxy(CONFIG, upstream=f"http://127.0.0.1:{port}")
        for stream in (False, True, False):
            answer = await ask(proxy, "normal", stream)
            assert (answer.status, answer.error_codes) == (502, ["upstream_unreachable"])
    assert outcomes(proxy)["upstream_error"] == 3
    assert proxy.value("taxmeter_inflight_requests") == 0


async def test_the_whole_matrix_leaks_no_task_or_descriptor(faulty: RunningProxy) -> None:
    for case in MATRIX:  # warm up: pools, caches, lazily built parts
        await check_case(faulty, case)
    await asyncio.sleep(0.2)
    tasks = len(asyncio.all_tasks())
    fds = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        for case in MATRIX:
            await check_case(faulty, case)
    await asyncio.sleep(0.5)  # the fault server's own handlers wind down
    assert len(asyncio.all_tasks()) <= tasks
    assert len(os.listdir("/proc/self/fd")) <= fds + 2
