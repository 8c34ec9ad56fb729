"""What a client can make tracing hold or write: bounded whatever it sends.

A client chooses the request's model name and body; a collector that is slow
or gone keeps the exporter's queue full. Neither may let the spans carry
unbounded client text or the queue keep unbounded bytes alive, and a
client's sampled flag must not force a trace on an operator who refused it.
"""

from __future__ import annotations

from opentelemetry.trace import SpanKind

from proxy.measure import genai_attrs as A
from proxy.measure.span_attrs import MAX_ATTRIBUTE_CHARS
from tests.loopback import ProxyFactory, post_json
from tests.otlp_receiver import Traced

CHAT = {"model": "m", "messages": [{"role": "user", "content": "echo: hello"}]}
JUDGED = {"filters": [{"name": "denylist", "type": "denylist", "params": {"words": ["sesame"]}}]}


async def test_a_clients_model_name_reaches_spans_bounded(
    start_proxy: ProxyFactory, traced: Traced
) -> None:
    # A judged prompt is parsed: its model is the span's. The mock model echoes it.
    proxy = await start_proxy(JUDGED, tracing=traced.setup)
    huge = "m" * 200_000  # a model name is the client's text, of any length
    await post_json(f"{proxy.url}/v1/chat/completions", {**CHAT, "model": huge})
    spans = await traced.spans()
    (server,) = [s for s in spans if s.kind == SpanKind.SERVER]
    (upstream,) = [s for s in spans if s.kind == SpanKind.CLIENT]
    model = server.attributes[A.REQUEST_MODEL]
    assert model == huge[:MAX_ATTRIBUTE_CHARS]  # cut, as the SDK's length limit cuts
    assert upstream.attributes[A.REQUEST_MODEL] == model
    assert upstream.name == f"chat {model}"
    assert server.attributes[A.RESPONSE_MODEL] == model  # the upstream's, cut alike
    for span in spans:
        for value in span.attributes.values():
            assert not isinstance(value, str) or len(value) <= MAX_ATTRIBUTE_CHARS
