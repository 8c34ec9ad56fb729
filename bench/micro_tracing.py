"""The tracing rows of bench/micro.py: a sampled request's cost, on its path and off it.

On the request's path: the trace begun (context, ids, the sampler), the
upstream's ``traceparent`` written, the finished request handed over. On the
exporter thread: its spans written as OTLP protobuf and wrapped in an export
request (the HTTP post, shared by a batch of requests, is not counted). Every
thread's CPU counts, so the figure to hold to 0.1 ms is the sum.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
from multidict import CIMultiDict, CIMultiDictProxy
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

from proxy.exchange.exchange import Exchange
from proxy.measure import tracing_wire as W
from proxy.measure.timeline import Timeline
from proxy.measure.tracing import Tracing
from proxy.measure.tracing_export import Batching, SpanExport
from proxy.measure.tracing_finished import Finished
from proxy.measure.tracing_setup import TracingSetup, resource_and_scope
from proxy.measure.tracing_spans import build_spans
from proxy.surfaces import surface_for

ANSWER = orjson.dumps({
    "id": "chatcmpl-1", "object": "chat.completion", "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
})  # fmt: skip
HEADERS = CIMultiDictProxy(CIMultiDict({"Content-Type": "application/json", "Host": "proxy"}))


class _Discard:
    def send(self, payload: bytes, spans: int) -> bool:
        return True

    def shutdown(self) -> None:
        pass


def _exchange(t: Timeline, tracing: Tracing) -> Exchange:
    ex = Exchange(
        t, "chat_completions", "default", "4c1b9e0a", surface=surface_for("chat_completions")
    )
    ex.method, ex.status, ex.upstream_status = "POST", 200, 200
    ex.body = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    ex.response_body = ANSWER
    ex.trace = tracing.begin(HEADERS, ex.route, "POST")
    return ex


def tracing_cases(t: Timeline) -> dict[str, Callable[[], object]]:
    """``t``: a finished request's timeline (bench/micro.py's)."""
    envelope = resource_and_scope(Resource.create())
    # Never put to: its thread stays idle, the cases call what it would.
    export = SpanExport(_Discard(), envelope, Batching())
    tracing = Tracing(TracingSetup(export, ParentBased(ALWAYS_ON)), "http://127.0.0.1:8000", False)
    server = {"server.address": "127.0.0.1", "server.port": 8000}
    ids = RandomIdGenerator()
    figures = t.breakdown(False)
    ex = _exchange(t, tracing)
    done = Finished(ex, figures, False)

    def on_path() -> None:
        start = tracing.begin(HEADERS, "chat_completions", "POST")
        tracing.inject(start, CIMultiDict())
        Finished(ex, figures, False)

    def off_path() -> bytes:
        return W.export_request(envelope, build_spans(done, server, ids))

    def whole() -> None:
        on_path()
        off_path()

    return {
        "request path: begin, inject traceparent, hand over": on_path,
        "exporter thread: spans written + export request encoded": off_path,
        "both (CPU per traced request, less the batch's HTTP post)": whole,
    }
