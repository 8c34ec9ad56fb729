"""The exporter thread: finished requests in, OTLP export requests out, off the event loop.

The request's path only appends what it finished (:class:`Finished`) to a
bounded queue, counted in spans (``OTEL_BSP_MAX_QUEUE_SIZE``) and in the
bytes its requests keep for the thread to parse (:data:`MAX_QUEUE_BYTES`);
when it is full the request's spans are dropped and counted, as the SDK's
batch processor does. One thread writes the spans (:mod:`proxy.measure.tracing_spans`)
and sends them in export requests of ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` spans:
when a batch is full, and everything every ``OTEL_BSP_SCHEDULE_DELAY``, on
:meth:`SpanExport.flush` and at shutdown (SIGTERM). Sending is the SDK's
exporters' (:mod:`proxy.measure.tracing_senders`): their endpoints, headers,
TLS, compression, timeouts and retries.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from dataclasses import dataclass
from time import perf_counter_ns
from typing import Any, Protocol

from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

from proxy.measure import tracing_wire as W
from proxy.measure.tracing_finished import Finished
from proxy.measure.tracing_spans import build_spans

LOG = logging.getLogger("taxmeter.tracing")
# Writing spans holds the GIL; the event loop, when it wants it meanwhile, would
# wait up to the switch interval (5 ms). Letting go every millisecond of work
# bounds that wait, for a system call's cost. Not after every request: a busy
# loop gives the GIL back only when the interpreter forces it (5 ms), so a
# thread that let go that often would write a few hundred requests a second
# and its queue would overflow.
_LET_GO = getattr(os, "sched_yield", lambda: None)
_SLICE_NS = 1_000_000
# Raw bodies queued requests keep (a forwarded prompt's, a relayed answer's copy,
# up to about 1 MiB each): while a collector is slow or gone the queue stays full,
# and 2048 spans' worth of them could hold gigabytes.
MAX_QUEUE_BYTES = 64 * 1024 * 1024


class Sender(Protocol):
    """Sends one encoded ExportTraceServiceRequest; True when it was accepted."""

    def send(self, payload: bytes, spans: int) -> bool: ...

    def shutdown(self) -> None: ...


@dataclass(frozen=True)
class Batching:
    """The batch processor's settings (the OTEL_BSP_* variables)."""

    max_export_batch_size: int = 512
    max_queue_size: int = 2048
    schedule_delay_s: float = 5.0
    export_timeout_s: float = 30.0
    max_queue_bytes: int = MAX_QUEUE_BYTES


class SpanExport:
    """Where finished requests' traces go: a bounded queue and the one thread that exports."""

    def __init__(
        self,
        sender: Sender,
        resource_and_scope: tuple[bytes, bytes],
        batching: Batching,
    ) -> None:
        self._sender = sender
        self._envelope = resource_and_scope
        self._ids = RandomIdGenerator()  # the child spans' own ids (the SDK's, thread-safe)
        self._batching = batching
        self._queue: deque[tuple[Finished, dict[str, Any]]] = deque()
        # Spans put on the queue (written by the loop only) and taken (by the thread
        # only): each side counts its own, so neither needs a lock.
        self._put = 0
        self._taken = 0
        self._put_bytes = 0  # the same, of the bytes the requests keep
        self._taken_bytes = 0
        self.dropped_spans = 0
        self.sent_spans = 0
        self.failed_exports = 0
        self._wake = threading.Event()
        self._flushes: deque[threading.Event] = deque()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="taxmeter-otlp", daemon=True)
        self._thread.start()

    def put(self, done: Finished, server_address: dict[str, Any]) -> None:
        """On the request's path: one request's trace to export (its spans written later)."""
        pending = self._put - self._taken
        pending_bytes = self._put_bytes - self._taken_bytes
        if (
            pending + done.spans > self._batching.max_queue_size
            or pending_bytes + done.kept_bytes > self._batching.max_queue_bytes
            or self._stopping
        ):
            if not self.dropped_spans:
                LOG.warning("span queue full (OTEL_BSP_MAX_QUEUE_SIZE or bytes): dropping spans")
            self.dropped_spans += done.spans
            return
        self._queue.append((done, server_address))
        self._put += done.spans
        self._put_bytes += done.kept_bytes
        full = pending + done.spans >= self._batching.max_export_batch_size
        if full and not self._wake.is_set():
            self._wake.set()

    def flush(self, timeout_s: float | None = None) -> bool:
        """Export everything queued so far; False when it took longer than ``timeout_s``."""
        done = threading.Event()
        self._flushes.append(done)
        self._wake.set()
        return done.wait(self._batching.export_timeout_s if timeout_s is None else timeout_s)

    def shutdown(self) -> None:
        """Flush what is queued, stop the thread and the sender (at SIGTERM)."""
        if self._stopping:
            return
        self._stopping = True
        self.flush()
        self._wake.set()
        self._thread.join(self._batching.export_timeout_s)
        self._sender.shutdown()

    # -- the exporter thread -------------------------------------------------
    def _run(self) -> None:
        carried: list[bytes] = []  # written, waiting for their batch to fill
        batch = self._batching.max_export_batch_size
        while True:
            woken = self._wake.wait(self._batching.schedule_delay_s)
            self._wake.clear()
            flushes = [self._flushes.popleft() for _ in range(len(self._flushes))]
            everything = not woken or bool(flushes) or self._stopping
            carried = self._drain(carried, batch)
            if everything:
                while carried:
                    self._send(carried[:batch])
                    carried = carried[batch:]
            for flushed in flushes:
                flushed.set()
            if self._stopping and not self._flushes:
                return

    def _drain(self, carried: list[bytes], batch: int) -> list[bytes]:
        """Write every queued request's spans; send each full batch; the rest carried."""
        slice_start = perf_counter_ns()
        while self._queue:
            done, server_address = self._queue.popleft()
            try:
                carried += build_spans(done, server_address, self._ids)
            except Exception:  # a bug of ours: that trace is lost, never the thread
                LOG.exception("could not write a request's spans")
            self._taken += done.spans
            self._taken_bytes += done.kept_bytes
            if perf_counter_ns() - slice_start > _SLICE_NS:
                _LET_GO()
                slice_start = perf_counter_ns()
            while len(carried) >= batch:
                self._send(carried[:batch])
                carried = carried[batch:]
        return carried

    def _send(self, spans: list[bytes]) -> None:
        try:
            accepted = self._sender.send(W.export_request(self._envelope, spans), len(spans))
        except Exception:  # the exporters log their own failures; anything else, here
            LOG.exception("could not export spans")
            accepted = False
        if accepted:
            self.sent_spans += len(spans)
        else:
            self.failed_exports += 1
