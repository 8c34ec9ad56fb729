"""What a request's spans say: GenAI and taxmeter attributes, from its record and figures.

Only called for sampled requests, after their end, on the exporter thread
(see :mod:`proxy.measure.tracing_spans`).
"""

from __future__ import annotations

from typing import Any

import orjson

from proxy.measure import genai_attrs as A
from proxy.measure.capability import answer_of
from proxy.measure.served import Served
from proxy.measure.timeline import Breakdown
from proxy.measure.trace_start import TraceStart

# Client-chosen (a model name) or upstream-chosen text in an attribute or a span
# name is cut to this many characters, as the SDK's OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT
# cuts: a client could otherwise write megabytes into every span (a collector
# refuses such a batch, losing every other request's spans with it) and into the
# exporter's caches of encoded attributes and names, which keep thousands.
MAX_ATTRIBUTE_CHARS = 256
_ERROR_OUTCOMES = frozenset({"upstream_error", "timeout", "client_error", "client_disconnect"})


def parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def request_facts(body: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    if isinstance(body, dict):
        model = body.get("model")
        if isinstance(model, str):
            facts[A.REQUEST_MODEL] = model[:MAX_ATTRIBUTE_CHARS]
        facts[A.REQUEST_STREAM] = body.get("stream") is True
    return facts


def response_facts(ex: Served) -> dict[str, Any]:
    """Finish reasons and usage of what the client received, when it was read."""
    answer = answer_of(ex)
    body, reasons, usage = answer.body, answer.finish_reasons, answer.usage
    model = ex.surface.model(body) if isinstance(body, dict) and ex.surface is not None else None
    facts: dict[str, Any] = {"_body": body}
    if reasons:
        facts[A.RESPONSE_FINISH_REASONS] = [r[:MAX_ATTRIBUTE_CHARS] for r in reasons]
    if isinstance(model, str):
        facts[A.RESPONSE_MODEL] = model[:MAX_ATTRIBUTE_CHARS]
    if usage is not None:
        if usage.input_tokens is not None:
            facts[A.USAGE_INPUT_TOKENS] = usage.input_tokens
        if usage.output_tokens is not None:
            facts[A.USAGE_OUTPUT_TOKENS] = usage.output_tokens
    return facts


def server_attributes(
    ex: Served,
    figures: Breakdown,
    start: TraceStart,
    request: dict[str, Any],
    response: dict[str, Any],
) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        **request,
        **{k: v for k, v in response.items() if k != "_body"},
        A.HTTP_METHOD: start.method,
        A.ROUTE: ex.route,
        A.VARIANT: ex.variant,
        A.OUTCOME: ex.outcome,
        A.REQUEST_ID: ex.request_id,
        A.TOTAL_S: figures.total,
        A.UPSTREAM_S: figures.upstream,
        A.TAX_S: figures.tax,
        A.TAX_RATIO: figures.tax_ratio,
        A.FILTER_CRITICAL_S: figures.filter_critical,
        A.OVERHEAD_S: figures.overhead,
    }
    operation = A.OPERATIONS.get(ex.route)
    if operation:
        attributes[A.OPERATION_NAME] = operation
    if ex.status:
        attributes[A.HTTP_STATUS] = ex.status
    if ex.outcome in _ERROR_OUTCOMES:
        attributes[A.ERROR_TYPE] = ex.outcome
    if figures.ttft is not None and figures.upstream_ttft is not None:
        attributes[A.TTFT_S] = figures.ttft
        attributes[A.UPSTREAM_TTFT_S] = figures.upstream_ttft
        attributes[A.TTFT_TAX_S] = figures.ttft - figures.upstream_ttft
    return attributes


def content_attributes(ex: Served, response: dict[str, Any]) -> dict[str, str]:
    """The prompt as it went upstream and the answer as it went to the client:
    both after the filters' redactions (``telemetry.trace_content: true`` only).
    A prompt that never went upstream (a filter refused it) is not recorded."""
    surface = ex.surface
    attributes: dict[str, str] = {}
    if surface is None:
        return attributes
    sent = ex.timeline.upstream_sent_ns is not None
    prompt = surface.input_messages(ex.body) if sent else None
    if prompt is not None:
        attributes[A.INPUT_MESSAGES] = orjson.dumps(prompt).decode()
    answer = surface.output_messages(response.get("_body"))
    if answer is not None:
        attributes[A.OUTPUT_MESSAGES] = orjson.dumps(answer).decode()
    return attributes
