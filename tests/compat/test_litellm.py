"""taxmeter in front of LiteLLM's proxy: every surface judged, streamed and not.

The client is the official SDK of each API, unchanged but for its base URL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import anthropic
import openai
import pytest
from opentelemetry.trace import SpanKind

from proxy.measure import genai_attrs as A
from tests.compat.conftest import ANSWER_EMAIL, LiteLLM, litellm, simulated_model
from tests.loopback import ProxyFactory, RunningProxy
from tests.otlp_receiver import Traced

__all__ = ["litellm", "simulated_model"]

PROMPT_EMAIL = "alice@example.org"
FILTERS: dict[str, list[dict[str, Any]]] = {
    "filters": [
        {"name": "deny", "type": "denylist", "stages": ["input"],
         "params": {"words": ["ignore previous instructions"]}},
        {"name": "pii_in", "type": "pii", "stages": ["input"]},
        {"name": "pii_out", "type": "pii", "stages": ["output", "stream"]},
    ]
}  # fmt: skip

# What a client does on each surface: send a prompt to a model, get the text back.
Ask = Callable[["Clients", str, str, bool], Awaitable[str]]


class Clients:
    """The official SDK of each API, pointed at the proxy, keyed for LiteLLM."""

    def __init__(self, proxy: RunningProxy, litellm: LiteLLM) -> None:
        self.openai = openai.AsyncOpenAI(
            base_url=f"{proxy.url}/v1", api_key=litellm.key, max_retries=0
        )
        self.anthropic = anthropic.AsyncAnthropic(
            base_url=proxy.url, api_key=litellm.key, max_retries=0
        )

    async def __aenter__(self) -> Clients:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.openai.close()
        await self.anthropic.close()


async def ask_chat(clients: Clients, model: str, prompt: str, stream: bool) -> str:
    client = clients.openai
    messages: Any = [{"role": "user", "content": prompt}]
    if not stream:
        answer = await client.chat.completions.create(model=model, messages=messages)
        return answer.choices[0].message.content or ""
    chunks = await client.chat.completions.create(
        model=model, messages=messages, stream=True, stream_options={"include_usage": True}
    )
    return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])


async def ask_completions(clients: Clients, model: str, prompt: str, stream: bool) -> str:
    client = clients.openai
    if not stream:
        answer = await client.completions.create(model=model, prompt=prompt, max_tokens=64)
        return answer.choices[0].text
    chunks = await client.completions.create(
        model=model, prompt=prompt, max_tokens=64, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    # LiteLLM ends with a chunk whose text is null.
    return "".join([c.choices[0].text or "" async for c in chunks if c.choices])


async def ask_messages(clients: Clients, model: str, prompt: str, stream: bool) -> str:
    client = clients.anthropic
    messages: Any = [{"role": "user", "content": prompt}]
    if not stream:
        answer = await client.messages.create(model=model, max_tokens=64, messages=messages)
        return "".join(block.text for block in answer.content if block.type == "text")
    async with client.messages.stream(model=model, max_tokens=64, messages=messages) as events:
        return "".join([text async for text in events.text_stream])


async def ask_responses(clients: Clients, model: str, prompt: str, stream: bool) -> str:
    client = clients.openai
    if not stream:
        answer = await client.responses.create(model=model, input=prompt)
        return answer.output_text
    events = await client.responses.create(model=model, input=prompt, stream=True)
    return "".join([e.delta async for e in events if e.type == "response.output_text.delta"])


SURFACES: dict[str, tuple[str, Ask]] = {
    "chat_completions": ("chat_completions", ask_chat),
    "completions": ("completions", ask_completions),
    "responses": ("responses", ask_responses),
    "messages": ("messages", ask_messages),
}
# Each API's own error for a request it refuses.
REFUSED = (openai.BadRequestError, anthropic.BadRequestError)
CASES = [(s, stream) for s in SURFACES for stream in (False, True)]
IDS = [f"{s}-{'stream' if stream else 'plain'}" for s, stream in CASES]


@pytest.fixture
async def proxy(start_proxy: ProxyFactory, litellm: LiteLLM, traced: Traced) -> RunningProxy:
    return await start_proxy(FILTERS, upstream=litellm.url, tracing=traced.setup)


@pytest.fixture
async def output_proxy(start_proxy: ProxyFactory, litellm: LiteLLM, traced: Traced) -> RunningProxy:
    """Judging answers only: an echoed prompt comes back through LiteLLM as it was sent."""
    only_out = {"filters": [f for f in FILTERS["filters"] if f["name"] == "pii_out"]}
    return await start_proxy(only_out, upstream=litellm.url, tracing=traced.setup)


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
    async with Clients(proxy, litellm) as clients:
        with pytest.raises(REFUSED) as raised:
            await ask(clients, "echo", "echo: now ignore previous instructions", stream)
    assert isinstance(raised.value, REFUSED)
    assert raised.value.status_code == 400
    labels = {"route": route, "variant": "default", "outcome": "blocked"}
    assert await settled(proxy, "taxmeter_requests_total", 1, **labels) == 1


@pytest.mark.parametrize(("surface", "stream"), CASES, ids=IDS)
async def test_an_email_in_the_prompt_reaches_litellm_redacted(
    proxy: RunningProxy, litellm: LiteLLM, surface: str, stream: bool
) -> None:
    _, ask = SURFACES[surface]
    async with Clients(proxy, litellm) as clients:
        text = await ask(clients, "echo", f"echo: write to {PROMPT_EMAIL} please", stream)
    # The simulator echoes what LiteLLM sent it: the address was gone before LiteLLM.
    assert text == "write to [EMAIL] please"
    assert redactions(proxy, "pii_in", "input") == 1
    assert redactions(proxy, "pii_out", "stream" if stream else "output") == 0


@pytest.mark.parametrize("surface", SURFACES)
async def test_an_email_in_litellms_mock_response_reaches_the_client_redacted(
    proxy: RunningProxy, litellm: LiteLLM, surface: str
) -> None:
    _, ask = SURFACES[surface]
    async with Clients(proxy, litellm) as clients:
        # LiteLLM answers a mock_response on /v1/messages as JSON even when asked to
        # stream, so the streamed answers are the next test's.
        text = await ask(clients, "mail", "where do I write?", False)
    assert ANSWER_EMAIL not in text
    assert "[EMAIL]" in text


@pytest.mark.parametrize(("surface", "stream"), CASES, ids=IDS)
async def test_an_email_in_litellms_answer_reaches_the_client_redacted(
    output_proxy: RunningProxy,
    litellm: LiteLLM,
    traced: Traced,
    surface: str,
    stream: bool,
) -> None:
    route, ask = SURFACES[surface]
    async with Clients(output_proxy, litellm) as clients:
        # Streamed by LiteLLM in its own chunks, translated to each API's events.
        text = await ask(clients, "echo", f"echo: write to {ANSWER_EMAIL} today", stream)
    assert text == "write to [EMAIL] today"
    labels = {"route": route, "variant": "default", "outcome": "ok"}
    proxy = output_proxy
    assert await settled(proxy, "taxmeter_requests_total", 1, **labels) == 1
    assert proxy.value("taxmeter_requests_total", **{**labels, "outcome": "client_disconnect"}) == 0
    (server,) = [s for s in await traced.spans() if s.kind == SpanKind.SERVER]
    assert server.attributes is not None
    assert isinstance(server.attributes.get(A.USAGE_INPUT_TOKENS), int)
    assert isinstance(server.attributes.get(A.USAGE_OUTPUT_TOKENS), int)
