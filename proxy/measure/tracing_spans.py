"""One finished request's span tree, written as OTLP Span messages from its timeline.

Runs on the exporter thread (:mod:`proxy.measure.tracing_export`), from
what the request's path took when it was recorded
(:mod:`proxy.measure.tracing_finished`). Tree (names, kinds and attributes as the OpenTelemetry
SDK made them before; ids as :meth:`proxy.measure.tracing.Tracing.begin`
chose them, the upstream span's being the one sent in ``traceparent``)::

    SERVER   "chat chat_completions"      received .. client last byte; an event
                                          gen_ai.evaluation.result per filter verdict
    ├── INTERNAL "apply_guardrail NAME"   each filter call (start .. end)
    ├── CLIENT   "chat MODEL"             upstream sent .. upstream last byte
    └── INTERNAL "stream holdback"        upstream first content .. client first content

Spans are listed in the order the SDK ended them: filter calls, the
upstream call, the holdback, the server span last.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace.id_generator import IdGenerator

from proxy.measure import genai_attrs as A
from proxy.measure import tracing_wire as W
from proxy.measure.marks import FilterCall
from proxy.measure.span_attrs import (
    MAX_ATTRIBUTE_CHARS,
    parse_json,
    request_facts,
    response_facts,
    server_attributes,
)
from proxy.measure.timeline import Breakdown, Timeline
from proxy.measure.tracing_finished import Finished

# Outcomes that are the server's failure (5xx): the span's status is ERROR.
_SERVER_FAILURES = frozenset({"upstream_error", "timeout"})
_GUARDRAIL_FAILURES = frozenset({"error", "timeout"})
_NAMES: dict[str, bytes] = {}  # span names, encoded once each (bounded by routes and models)


def _name(text: str) -> bytes:
    encoded = _NAMES.get(text)
    if encoded is None:
        if len(_NAMES) > 1024:
            _NAMES.clear()
        encoded = _NAMES[text] = W.encoded_name(text)
    return encoded


_EVENT_HEADERS = W.event_name(A.EVENT_UPSTREAM_HEADERS)
_EVENT_FIRST_TOKEN = W.event_name(A.EVENT_FIRST_TOKEN)
_EVENT_CLIENT_FIRST_TOKEN = W.event_name(A.EVENT_CLIENT_FIRST_TOKEN)
_EVENT_EVALUATION = W.event_name(A.EVENT_EVALUATION_RESULT)


_GUARDRAILS: dict[tuple[str, str, str, str, bool], tuple[bytes, bytes]] = {}


def _guardrail(
    filter_name: str, stage: str, mode: str, action: str, critical: bool
) -> tuple[bytes, bytes]:
    """A filter call's span name and attributes, encoded once per distinct call."""
    key = (filter_name, stage, mode, action, critical)
    encoded = _GUARDRAILS.get(key)
    if encoded is None:
        attributes: dict[str, Any] = {
            A.OPERATION_NAME: A.GUARDRAIL_OPERATION,
            A.GUARDRAIL_NAME: filter_name,
            A.GUARDRAIL_STAGE: stage,
            A.GUARDRAIL_MODE: mode,
            A.GUARDRAIL_ACTION: action,
            A.FILTER_CRITICAL: critical,
        }
        if action in _GUARDRAIL_FAILURES:
            attributes[A.ERROR_TYPE] = action
        if len(_GUARDRAILS) > 1024:
            _GUARDRAILS.clear()
        name = W.encoded_name(f"{A.GUARDRAIL_OPERATION} {filter_name}")
        encoded = _GUARDRAILS[key] = (name, W.SPAN_ATTRIBUTES.encode(attributes))
    return encoded


_EVALUATIONS: dict[tuple[str, str, str, str, str | None], bytes] = {}


def _evaluation(call: FilterCall, offset: int) -> bytes:
    """A verdict as a gen_ai.evaluation.result event: the filter, its action and reason.

    The reason is the filter's own text, the one a blocked client is shown: the
    built-in filters name what they found (a kind, a configured label, a score),
    never the text judged. It is cut as a model name is (a plugin could write
    anything there), and its encoded attributes are kept once per distinct verdict.
    """
    reason = call.reason[:MAX_ATTRIBUTE_CHARS] if call.reason else None
    key = (call.filter, call.stage, call.mode, call.action, reason)
    attributes = _EVALUATIONS.get(key)
    if attributes is None:
        values: dict[str, Any] = {
            A.EVALUATION_NAME: call.filter,
            A.EVALUATION_SCORE_LABEL: call.action,
        }
        if reason:
            values[A.EVALUATION_EXPLANATION] = reason
        if call.action in _GUARDRAIL_FAILURES:
            values[A.ERROR_TYPE] = call.action
        # Which verdict of the filter, and whether it was enforced (observe: it was not).
        values[A.GUARDRAIL_STAGE] = call.stage
        values[A.GUARDRAIL_MODE] = call.mode
        if len(_EVALUATIONS) > 1024:
            _EVALUATIONS.clear()
        attributes = _EVALUATIONS[key] = W.EVENT_ATTRIBUTES.encode(values)
    return W.event(_EVENT_EVALUATION, call.end_ns + offset, attributes)


def build_spans(
    done: Finished, server_address: dict[str, Any], id_source: IdGenerator
) -> list[bytes]:
    """The request's spans, encoded; ``server_address``: the upstream's host and port;
    ``id_source``: where the spans that have no id yet get theirs (the exporter's)."""
    ex, figures = done, done.figures
    start = ex.trace
    assert start is not None
    tl = ex.timeline
    offset = tl.epoch_offset_ns
    trace_id = start.trace_id.to_bytes(16, "big")
    state = W.trace_state_field(start.trace_state)
    server_id = start.server_span_id
    child_ids = W.span_ids  # each child: its own id, the server span as parent
    spans: list[bytes] = []
    evaluations: list[bytes] = []  # the server span's events, a verdict each
    for call in tl.filter_calls:
        evaluations.append(_evaluation(call, offset))
        name, attributes = _guardrail(
            call.filter, call.stage, call.mode, call.action, call.critical
        )
        spans.append(
            W.span(
                child_ids(trace_id, id_source.generate_span_id(), state, server_id),
                name,
                W.KIND_INTERNAL,
                call.start_ns + offset,
                call.end_ns + offset,
                attributes,
                status=W.STATUS_ERROR if call.action in _GUARDRAIL_FAILURES else W.STATUS_UNSET,
            )
        )
    request = done.request
    if request is None:
        request = request_facts(parse_json(done.request_raw or b""))
    if done.interval is not None:
        upstream_ids = child_ids(trace_id, start.upstream_span_id, state, server_id)
        spans.append(_upstream_span(done, request, upstream_ids, server_address))
    holdback = _holdback_span(tl, figures)
    if holdback is not None:
        ids = child_ids(trace_id, id_source.generate_span_id(), state, server_id)
        spans.append(ids + holdback)
    response = done.response if done.response is not None else response_facts(ex)
    server_attrs = {
        **start.sampler_attributes,
        **server_attributes(ex, figures, start, request, response),
        **done.content,
    }
    spans.append(
        W.span(
            W.span_ids(trace_id, server_id, state, start.parent_span_id),
            _name(start.name),
            W.KIND_SERVER,
            tl.received_ns + offset,
            done.end_ns + offset,
            W.SPAN_ATTRIBUTES.encode(server_attrs),
            b"".join(evaluations),
            status=W.STATUS_ERROR if ex.outcome in _SERVER_FAILURES else W.STATUS_UNSET,
            flags=W.FLAGS_REMOTE_PARENT if start.parent_is_remote else W.FLAGS_LOCAL,
        )
    )
    return spans


def _upstream_span(
    done: Finished, request: dict[str, Any], ids: bytes, server_address: dict[str, Any]
) -> bytes:
    ex, figures = done, done.figures
    assert done.interval is not None
    assert ex.trace is not None
    tl = ex.timeline
    operation = A.OPERATIONS.get(ex.route)
    model = request.get(A.REQUEST_MODEL)
    name = f"{operation} {model}" if operation and model else operation or ex.trace.method
    attributes: dict[str, Any] = {**request, **server_address}
    if operation:
        attributes[A.OPERATION_NAME] = operation
    if ex.upstream_status:
        attributes[A.HTTP_STATUS] = ex.upstream_status
    if figures.upstream_ttft is not None:
        attributes[A.UPSTREAM_TTFT_S] = figures.upstream_ttft
    events = b""
    if tl.upstream_headers_ns is not None:
        events = W.event(_EVENT_HEADERS, tl.epoch_ns(tl.upstream_headers_ns))
    first = tl.upstream_first_content_ns or tl.upstream_first_byte_ns
    if ex.streamed and first is not None:
        events += W.event(_EVENT_FIRST_TOKEN, tl.epoch_ns(first))
    status = W.STATUS_UNSET
    if ex.outcome in _SERVER_FAILURES:
        attributes[A.ERROR_TYPE] = ex.outcome
        status = W.STATUS_ERROR
    start_ns, end_ns = done.interval
    return W.span(
        ids,
        _name(name),
        W.KIND_CLIENT,
        tl.epoch_ns(start_ns),
        tl.epoch_ns(end_ns),
        W.SPAN_ATTRIBUTES.encode(attributes),
        events,
        status,
    )


def _holdback_span(tl: Timeline, figures: Breakdown) -> bytes | None:
    """The holdback span less its ids (the caller's, once it is known there is one)."""
    first_in = tl.upstream_first_content_ns or tl.upstream_first_byte_ns
    first_out = tl.client_first_content_ns or tl.client_first_byte_ns
    if not figures.holdback or first_in is None or first_out is None or first_out < first_in:
        return None
    attributes = {A.HOLDBACK_PREFIX + name: s for name, s in figures.holdback.items()}
    first_token = W.event(_EVENT_CLIENT_FIRST_TOKEN, tl.epoch_ns(first_out))
    return W.span(
        b"",
        _name(A.HOLDBACK_SPAN),
        W.KIND_INTERNAL,
        tl.epoch_ns(first_in),
        tl.epoch_ns(first_out),
        W.SPAN_ATTRIBUTES.encode(attributes),
        first_token,
    )
