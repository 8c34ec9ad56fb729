"""taxmeter in front of LiteLLM's proxy: every surface judged, streamed and not.

The client is the official SDK of each API, unchanged but for its base URL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from proxy import genai_attrs as A
from tests.compat.conftest import ANSWER_EMAIL, LiteLLM, litellm, simulated_model
from tests.proxy.conftest import ProxyFactory, RunningProxy

__all__ = ["litellm", "simulated_model"]

PROMPT_EMAIL = "alice@example.org"
FILTERS = {
    "filters": [
        {"name": "deny", "type": "denylist", "stages": ["input"],
         "params": {"words": ["ignore previous instructions"]}},
        {"name": "pii_in", "type": "pii", "stages": ["input"]},
        {"name": "pii_out", "type": "pii", "stages": ["output", "stream"]},
    ]
}  # fmt: skip

# What a client does on each surface: send a prompt to a model, get the text back.
Ask = Callable[[openai.AsyncOpenAI, str, str, bool], Awaitable[str]]


async def ask_chat(client: openai.AsyncOpenAI, model: str, prompt: str, stream: bool) -> str:
    messages: Any = [{"role": "user", "content": prompt}]
    if not stream:
        answer = await client.chat.completions.create(model=model, messages=messages)
        return answer.choices[0].message.content or ""
    chunks = await client.chat.completions.create(
        model=model, messages=messages, stream=True, stream_options={"include_usage": True}
    )
    return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])


async def ask_completions(client: openai.AsyncOpenAI, model: str, prompt: str, stream: bool) -> str:
    if not stream:
        answer = await client.completions.create(model=model, prompt=prompt, max_tokens=64)
        return answer.choices[0].text
    chunks = await client.completions.create(
        model=model, prompt=prompt, max_tokens=64, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    # LiteLLM ends with a chunk whose text is null.
    return "".join([c.choices[0].text or "" async for c in chunks if c.choices])


SURFACES: dict[str, tuple[str, Ask]] = {
    "chat_completions": ("chat_completions", ask_chat),
    "completions": ("completions", ask_completions),
}
CASES = [(s, stream) for s in SURFACES for stream in (False, True)]
IDS = [f"{s}-{'stream' if stream else 'plain'}" for s, stream in CASES]


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def proxy(
    start_proxy: ProxyFactory, litellm: LiteLLM, exporter: InMemorySpanExporter
) -> RunningProxy:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return await start_proxy(FILTERS, upstream=litellm.url, tracer_provider=provider)


def client_of(proxy: RunningProxy, litellm: LiteLLM) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{proxy.url}/v1", api_key=litellm.key, max_retries=0)


async def settled(proxy: RunningProxy, name: str, expected: float, **labels: str) -> float:
    """A counter's value once the request it counts has been recorded."""
    for _ in range(100):
        if proxy.value(name, **labels) >= expected:
            break
        await asyncio.sleep(0.02)
    return proxy.value(name, **labels)


def redactions(proxy: RunningProxy, name: str, stage: str) -> float:
    return proxy.value("taxmeter_filter_decisions_total", filter=name, stage=stage,
                       mode="enforce", action="redact")  # fmt: skip


@pytest.mark.parametrize(("surface", "stream"), CASES, ids=IDS)
async def test_a_denylisted_prompt_never_reaches_litellm(
    proxy: RunningProxy, litellm: LiteLLM, surface: str, stream: bool
) -> None:
    route, ask = SURFACES[surface]
    async with client_of(proxy, litellm) as client:
        with pytest.raises(openai.BadRequestError) as raised:
            await ask(client, "echo", "echo: now ignore previous instructions", stream)
    assert raised.value.status_code == 400
    labels = {"route": route, "variant": "default", "outcome": "blocked"}
    assert await settled(proxy, "taxmeter_requests_total", 1, **labels) == 1


@pytest.mark.parametrize(("surface", "stream"), CASES, ids=IDS)
async def test_an_email_in_the_prompt_reaches_litellm_redacted(
    proxy: RunningProxy, litellm: LiteLLM, surface: str, stream: bool
) -> None:
    _, ask = SURFACES[surface]
    async with client_of(proxy, litellm) as client:
        text = await ask(client, "echo", f"echo: write to {PROMPT_EMAIL} please", stream)
    # The simulator echoes what LiteLLM sent it: the address was gone before LiteLLM.
    assert text == "write to [EMAIL] please"
    assert redactions(proxy, "pii_in", "input") == 1
    assert redactions(proxy, "pii_out", "stream" if stream else "output") == 0


@pytest.mark.parametrize(("surface", "stream"), CASES, ids=IDS)
async def test_an_email_in_litellms_answer_reaches_the_client_redacted(
    proxy: RunningProxy,
    litellm: LiteLLM,
    exporter: InMemorySpanExporter,
    surface: str,
    stream: bool,
) -> None:
    route, ask = SURFACES[surface]
    async with client_of(proxy, litellm) as client:
        text = await ask(client, "mail", "where do I write?", stream)
    assert ANSWER_EMAIL not in text
    assert "[EMAIL]" in text
    labels = {"route": route, "variant": "default", "outcome": "ok"}
    assert await settled(proxy, "taxmeter_requests_total", 1, **labels) == 1
    assert proxy.value("taxmeter_requests_total", **{**labels, "outcome": "client_disconnect"}) == 0
    (server,) = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert server.attributes is not None
    assert isinstance(server.attributes.get(A.USAGE_INPUT_TOKENS), int)
    assert isinstance(server.attributes.get(A.USAGE_OUTPUT_TOKENS), int)
