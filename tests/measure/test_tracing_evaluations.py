"""Each filter verdict as a ``gen_ai.evaluation.result`` event on the request's span.

Real requests through the proxy; the spans read back by the SDK's
InMemorySpanExporter (tests/in_memory_spans.py).
"""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from proxy.measure import genai_attrs as A
from tests.in_memory_spans import InMemory
from tests.loopback import ProxyFactory, post_json

DENY = {"name": "deny", "type": "denylist", "params": {"words": ["forbidden"]}}
PII = {"name": "pii", "type": "pii", "stages": ["input", "output"]}


def chat(text: str) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": text}]}


def evaluations(server: ReadableSpan) -> list[dict[str, Any]]:
    return [dict(e.attributes or {}) for e in server.events if e.name == A.EVENT_EVALUATION_RESULT]


async def test_each_verdict_is_an_evaluation_event_on_the_request_span(
    start_proxy: ProxyFactory, in_memory: InMemory
) -> None:
    proxy = await start_proxy({"filters": [PII, DENY]}, tracing=in_memory.setup)
    status, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", chat("a forbidden word"))
    assert status == 400
    (server,) = await in_memory.server_spans()
    assert server.name == "chat chat_completions"
    pii, deny = evaluations(server)
    assert pii == {
        A.EVALUATION_NAME: "pii",
        A.EVALUATION_SCORE_LABEL: "allow",
        A.GUARDRAIL_STAGE: "input",
        A.GUARDRAIL_MODE: "enforce",
    }
    assert deny == {
        A.EVALUATION_NAME: "deny",
        A.EVALUATION_SCORE_LABEL: "block",
        A.EVALUATION_EXPLANATION: 'denylist: matched "forbidden"',  # the configured phrase
        A.GUARDRAIL_STAGE: "input",
        A.GUARDRAIL_MODE: "enforce",
    }
    # At the verdict: within the request's span, in the order the filters ran.
    times = [e.timestamp for e in server.events]
    assert server.start_time is not None
    assert server.end_time is not None
    assert server.start_time <= times[0] <= times[1] <= server.end_time


async def test_a_stream_block_is_an_evaluation_event_with_its_reason(
    start_proxy: ProxyFactory, in_memory: InMemory
) -> None:
    deny = {**DENY, "stages": ["stream"], "stream": {"every_tokens": 1}}
    proxy = await start_proxy({"filters": [deny]}, tracing=in_memory.setup)
    body = {**chat("echo: a forbidden word"), "stream": True}
    status, _, answer = await post_json(f"{proxy.url}/v1/chat/completions", body)
    assert status == 200
    assert b"content_filter" in answer
    (server,) = await in_memory.server_spans()
    found = evaluations(server)
    assert found[-1] == {
        A.EVALUATION_NAME: "deny",
        A.EVALUATION_SCORE_LABEL: "block",
        A.EVALUATION_EXPLANATION: 'denylist: matched "forbidden"',
        A.GUARDRAIL_STAGE: "stream",
        A.GUARDRAIL_MODE: "enforce",
    }
    assert {e[A.EVALUATION_SCORE_LABEL] for e in found[:-1]} <= {"allow"}


async def test_a_redaction_names_what_it_found_not_the_text(
    start_proxy: ProxyFactory, in_memory: InMemory
) -> None:
    proxy = await start_proxy({"filters": [PII]}, tracing=in_memory.setup)
    status, _, _ = await post_json(
        f"{proxy.url}/v1/chat/completions", chat("echo: mail bob@example.com")
    )
    assert status == 200
    (server,) = await in_memory.server_spans()
    found = evaluations(server)
    assert [(e[A.GUARDRAIL_STAGE], e[A.EVALUATION_SCORE_LABEL]) for e in found] == [
        ("input", "redact"),
        ("output", "allow"),  # the answer echoes the prompt as it went: already redacted
    ]
    assert found[0][A.EVALUATION_EXPLANATION] == "pii: redacted email"
    assert "bob@" not in repr([dict(e.attributes or {}) for e in server.events])


async def test_a_long_reason_is_cut_and_a_timeout_says_its_error(
    start_proxy: ProxyFactory, in_memory: InMemory
) -> None:
    slow = {"name": "slow", "type": "synthetic", "timeout_ms": 20, "params": {"wall_ms": 2000}}
    long = {
        "name": "long",
        "type": "synthetic",
        "params": {"action": "block", "reason": "x" * 5000},
    }
    config = {"filters": [slow, long]}
    proxy = await start_proxy(config, tracing=in_memory.setup)
    status, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", chat("hi"))
    assert status == 400
    (server,) = await in_memory.server_spans()
    timed_out, blocked = evaluations(server)
    assert timed_out[A.EVALUATION_SCORE_LABEL] == "timeout"
    assert timed_out[A.ERROR_TYPE] == "timeout"
    assert A.EVALUATION_EXPLANATION not in timed_out
    assert blocked[A.EVALUATION_EXPLANATION] == "x" * 256
