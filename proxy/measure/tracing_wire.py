"""OTLP's protobuf wire format, written directly: spans, their attributes and the export request.

The messages are those of ``opentelemetry.proto`` (``trace/v1/trace.proto``,
``common/v1/common.proto``, ``collector/trace/v1/trace_service.proto``); a
receiver decodes what is written here as it decodes the SDK's output (the
golden test, tests/measure/test_tracing_otlp.py, holds the two equal field
by field). Building upb messages one attribute at a time cost more than the
rest of the proxy; most attributes repeat from request to request (route,
variant, outcome, model, status), so each distinct (key, value) is encoded
once and its bytes reused. Only the exporter thread calls this module.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

_pack_double = struct.Struct("<d").pack
_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack
_INT64 = (1 << 64) - 1


def _varint_slow(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_VARINTS = [_varint_slow(i) for i in range(1 << 14)]  # every length of a span or an attribute


def varint(n: int) -> bytes:
    return _VARINTS[n] if n < 16384 else _varint_slow(n)


def field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its tag byte(s), the length, the bytes."""
    return tag + varint(len(payload)) + payload


# -- AnyValue and KeyValue (common.proto) ------------------------------------
def any_value(value: Any) -> bytes:
    """An AnyValue's fields, as the SDK's encoder maps Python values to them."""
    if value is True:
        return b"\x10\x01"
    if value is False:
        return b"\x10\x00"
    if isinstance(value, str):
        return field(b"\x0a", value.encode())
    if isinstance(value, int):
        return b"\x18" + varint(value & _INT64)
    if isinstance(value, float):
        return b"\x21" + _pack_double(value)
    if isinstance(value, bytes):
        return field(b"\x3a", value)
    if isinstance(value, Sequence):
        return field(b"\x2a", b"".join(field(b"\x0a", any_value(v)) for v in value))
    if isinstance(value, Mapping):
        pairs = b"".join(field(b"\x0a", key_value(str(k), v)) for k, v in value.items())
        return field(b"\x32", pairs)
    raise TypeError(f"no OTLP value for {type(value).__name__}")


def key_value(key: str, value: Any) -> bytes:
    return field(b"\x0a", key.encode()) + field(b"\x12", any_value(value))


# Keys whose values differ on every request: encoded each time, never kept.
_UNIQUE_KEYS = frozenset({"taxmeter.request_id", "gen_ai.input.messages", "gen_ai.output.messages"})
_CACHE_LIMIT = 4096


class Attributes:
    """Encodes attribute maps as the repeated KeyValue field of a message (``tag``)."""

    def __init__(self, tag: bytes) -> None:
        self._tag = tag
        self._encoded: dict[tuple[str, type, Any], bytes] = {}
        self._double_prefix: dict[str, bytes] = {}

    def encode(self, attributes: Mapping[str, Any]) -> bytes:
        out: list[bytes] = []
        append = out.append
        encoded_get = self._encoded.get
        for key, value in attributes.items():
            kind = type(value)
            if kind is float:
                prefix = self._double_prefix.get(key)
                if prefix is None:
                    whole = field(self._tag, key_value(key, 0.0))
                    prefix = self._double_prefix[key] = whole[:-8]
                append(prefix + _pack_double(value))
                continue
            if key in _UNIQUE_KEYS or kind is dict:
                append(field(self._tag, key_value(key, value)))
                continue
            if kind is list:
                value = tuple(value)  # the same AnyValue; a tuple can be a key
            entry = (key, kind, value)
            encoded = encoded_get(entry)
            if encoded is None:
                if len(self._encoded) >= _CACHE_LIMIT:
                    self._encoded.clear()  # a key of many values: start again
                encoded = self._encoded[entry] = field(self._tag, key_value(key, value))
            append(encoded)
        return b"".join(out)


# -- Span (trace.proto) ------------------------------------------------------
KIND_INTERNAL, KIND_SERVER, KIND_CLIENT = 1, 2, 3
STATUS_UNSET, STATUS_ERROR = 0, 2
# Span.flags: the SDK always says whether the parent is remote (bit 8), and
# that it is (bit 9) for a span continuing a client's context.
FLAGS_LOCAL = 0x100
FLAGS_REMOTE_PARENT = 0x300
_STATUS = {STATUS_UNSET: b"\x7a\x00", STATUS_ERROR: b"\x7a\x02\x18\x02"}
_FLAGS = {f: b"\x85\x01" + _pack_fixed32(f) for f in (FLAGS_LOCAL, FLAGS_REMOTE_PARENT)}
_KINDS = {k: b"\x30" + bytes((k,)) for k in (KIND_INTERNAL, KIND_SERVER, KIND_CLIENT)}
SPAN_ATTRIBUTES = Attributes(b"\x4a")  # Span.attributes (field 9)
EVENT_ATTRIBUTES = Attributes(b"\x1a")  # Span.Event.attributes (field 3)


def event(name: bytes, time_ns: int, attributes: bytes = b"") -> bytes:
    """A Span.Event, as the span's ``events`` field (``name`` encoded, as :func:`event_name`
    gives it; ``attributes`` as :data:`EVENT_ATTRIBUTES` encodes them)."""
    return field(b"\x5a", b"\x09" + _pack_fixed64(time_ns) + name + attributes)


def span(
    ids: bytes,
    name: bytes,
    kind: int,
    start_ns: int,
    end_ns: int,
    attributes: bytes,
    events: bytes = b"",
    status: int = STATUS_UNSET,
    flags: int = FLAGS_LOCAL,
) -> bytes:
    """One Span message. ``ids``: its trace id, span id, trace state and parent id fields
    (:func:`span_ids`); ``name``, ``attributes`` and ``events`` encoded, as
    :func:`encoded_name`, :data:`SPAN_ATTRIBUTES` and :func:`event` give them."""
    return b"".join(
        (
            ids,
            name,
            _KINDS[kind],
            b"\x39",
            _pack_fixed64(start_ns),
            b"\x41",
            _pack_fixed64(end_ns),
            attributes,
            events,
            _STATUS[status],
            _FLAGS[flags],
        )
    )


def span_ids(trace_id: bytes, span_id: int, trace_state: bytes, parent_id: int | None) -> bytes:
    """Fields 1-4 of a span; ``trace_id``: the 16 bytes, ``trace_state``: the encoded field."""
    parent = b"" if not parent_id else b"\x22\x08" + parent_id.to_bytes(8, "big")
    return b"\x0a\x10" + trace_id + b"\x12\x08" + span_id.to_bytes(8, "big") + trace_state + parent


def trace_state_field(header: str) -> bytes:
    return field(b"\x1a", header.encode()) if header else b""


def encoded_name(name: str) -> bytes:
    """A span's or an event's name field (field 5 of Span, field 2 of Event)."""
    return field(b"\x2a", name.encode())


def event_name(name: str) -> bytes:
    return field(b"\x12", name.encode())


# -- the export request (trace_service.proto) --------------------------------
def export_request(resource_and_scope: tuple[bytes, bytes], spans: Sequence[bytes]) -> bytes:
    """An ExportTraceServiceRequest of one resource and one scope.

    ``resource_and_scope``: the ResourceSpans' leading fields (resource,
    encoded once) and the ScopeSpans' (scope), as :mod:`proxy.measure.tracing_setup`
    encodes them.
    """
    resource, scope = resource_and_scope
    scope_spans = scope + b"".join([field(b"\x12", s) for s in spans])
    return field(b"\x0a", resource + field(b"\x12", scope_spans))
