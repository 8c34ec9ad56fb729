"""With ``telemetry.trace_content: true``, spans carry only text that passed the filters.

The prompt as it went upstream, the answer as the client got it: a prompt a
filter refused never went upstream, and an answer it withheld never reached
the client, so neither may reach a trace collector (where more people read
than the filters' operator meant).
"""

from __future__ import annotations

from opentelemetry.trace import SpanKind

from proxy.measure import genai_attrs as A
from tests.loopback import ProxyFactory, post_json
from tests.otlp_receiver import Decoded, Traced

SECRET = "open sesame"
CONTENT = {"telemetry": {"trace_content": True}}


def _server_text(spans: list[Decoded]) -> str:
    (server,) = [s for s in spans if s.kind == SpanKind.SERVER]
    contents = (server.attributes.get(A.INPUT_MESSAGES), server.attributes.get(A.OUTPUT_MESSAGES))
    return " ".join(str(c) for c in contents)


async def test_a_blocked_prompt_is_not_traced(start_proxy: ProxyFactory, traced: Traced) -> None:
    config = {
        **CONTENT,
        "filters": [{"name": "deny", "type": "denylist", "params": {"words": [SECRET]}}],
    }
    proxy = await start_proxy(config, tracing=traced.setup)
    body = {"model": "m", "messages": [{"role": "user", "content": f"echo: {SECRET}"}]}
    status, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", body)
    assert status == 400
    assert SECRET not in _server_text(await traced.spans())


async def test_a_withheld_answer_is_not_traced(start_proxy: ProxyFactory, traced: Traced) -> None:
    deny = {"name": "deny", "type": "denylist", "stages": ["output"], "params": {"words": [SECRET]}}
    proxy = await start_proxy({**CONTENT, "filters": [deny]}, tracing=traced.setup)
    body = {"model": "m", "messages": [{"role": "user", "content": f"echo: {SECRET}"}]}
    status, _, answer = await post_json(f"{proxy.url}/v1/chat/completions", body)
    assert status == 200
    assert SECRET.encode() not in answer
    (server,) = [s for s in await traced.spans() if s.kind == SpanKind.SERVER]
    answered = str(server.attributes[A.OUTPUT_MESSAGES])
    assert SECRET not in answered
    assert '"content":null' in answered  # withheld, as the client got it
