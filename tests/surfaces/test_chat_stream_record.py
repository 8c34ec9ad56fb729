"""What a chat stream's record says (its usage, its finish reasons), judged or not.

A stream no filter judges is relayed unparsed once its first content is out,
but for the events that matter to the record: each is still read, so the
span says what the client got. Each event here comes in a write of its own,
so that the relay sees it alone.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from opentelemetry.trace import SpanKind

from proxy.measure import genai_attrs as A
from tests.loopback import ProxyFactory
from tests.otlp_receiver import Traced
from tests.surfaces.conftest import Scripted, sse

CHAT = "/v1/chat/completions"
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
JUDGED = {"filters": [{"name": "pii", "type": "pii", "stages": ["stream"]}]}
CONFIGS = {"judged": JUDGED, "judged by nothing": {}}


def chunk(choices: list[Any], **extra: Any) -> bytes:
    return sse({"id": "c", "object": "chat.completion.chunk", "model": "m",
                "choices": choices, **extra})  # fmt: skip


PAUSE = 0.02  # each event its own write


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
async def test_a_stream_s_usage_and_finish_reasons_are_recorded_as_sent(
    start_proxy: ProxyFactory, scripted: Scripted, traced: Traced, config: dict[str, Any]
) -> None:
    """Two choices, one ending while the other goes on (``n=2``); the usage in a
    chunk of its own, as ``include_usage`` sends it."""
    usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    scripted.script = [
        chunk(
            [{"index": 0, "delta": {"role": "assistant", "content": "hel"}, "finish_reason": None}]
        ),
        PAUSE,
        chunk([{"index": 0, "delta": {"content": "lo"}, "finish_reason": None}]),
        PAUSE,
        chunk(
            [
                {"index": 0, "delta": {}, "finish_reason": "stop"},
                {"index": 1, "delta": {"content": "more"}, "finish_reason": None},
            ]
        ),
        PAUSE,
        chunk([{"index": 1, "delta": {}, "finish_reason": "length"}]),
        PAUSE,
        chunk([], usage=usage),
        PAUSE,
        b"data: [DONE]\n\n",
    ]
    proxy = await start_proxy(config, upstream=scripted.url, tracing=traced.setup)
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{proxy.url}{CHAT}", json=BODY) as response,
    ):
        streamed = await response.read()
    assert streamed.endswith(b"data: [DONE]\n\n")
    (server,) = [s for s in await traced.spans() if s.kind == SpanKind.SERVER]
    assert server.attributes is not None
    assert server.attributes[A.RESPONSE_FINISH_REASONS] == ("stop", "length")
    assert server.attributes[A.USAGE_INPUT_TOKENS] == 7
    assert server.attributes[A.USAGE_OUTPUT_TOKENS] == 3


async def test_a_stream_nothing_judges_relays_an_event_of_no_known_shape_as_it_came(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """An array that names a finish reason is no chunk: nothing reads it as one."""
    odd = b'data: [{"finish_reason":"stop"}]\n\n'
    scripted.script = [
        chunk([{"index": 0, "delta": {"content": "hello"}, "finish_reason": None}]),
        PAUSE,
        odd,
        PAUSE,
        chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]),
        b"data: [DONE]\n\n",
    ]
    proxy = await start_proxy({}, upstream=scripted.url)
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{proxy.url}{CHAT}", json=BODY) as response,
    ):
        streamed = await response.read()
    assert odd in streamed
    assert streamed.endswith(b"data: [DONE]\n\n")
