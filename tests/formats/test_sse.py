"""The incremental SSE parser: table-driven, each input fed whole, in two
chunks split at every byte, and one byte at a time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.formats.sse import DONE_DATA, SseError, SseEvent, SseParser, encode_event

# (data, event, id, comment_only) of one event.
Fields = tuple[str | None, str | None, str | None, bool]
Chunkings = Callable[[bytes], Iterator[list[bytes]]]

OPENAI_1 = (
    b'{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1718000000,'
    b'"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},'
    b'"logprobs":null,"finish_reason":null}]}'
)
OPENAI_2 = (
    b'{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1718000000,'
    b'"model":"m","choices":[{"index":0,"delta":{"content":"h\\u00e9llo"},'
    b'"logprobs":null,"finish_reason":null}]}'
)


def data(value: str) -> Fields:
    return (value, None, None, False)


COMMENT: Fields = (None, None, None, True)
NO_DATA: Fields = (None, None, None, False)

# (stream, expected events, bytes no event returns)
CASES = [
    pytest.param(
        b"data: " + OPENAI_1 + b"\n\ndata: " + OPENAI_2 + b"\n\ndata: [DONE]\n\n",
        [data(OPENAI_1.decode()), data(OPENAI_2.decode()), data(DONE_DATA)],
        b"",
        id="openai-chunks",
    ),
    pytest.param(b"data: [DONE]\n\n", [data("[DONE]")], b"", id="done"),
    pytest.param(b"data: a\r\n\r\ndata: b\r\n\r\n", [data("a"), data("b")], b"", id="crlf"),
    pytest.param(b"data: a\r\ndata: b\r\n\r\n", [data("a\nb")], b"", id="crlf-multiline"),
    pytest.param(b"data: a\r\rdata: b\rdata: c\r\r", [data("a"), data("b\nc")], b"", id="lone-cr"),
    pytest.param(
        b"data: a\r\ndata: b\n\rdata: c\r\r\nevent: e\r\n\n",
        [data("a\nb"), data("c"), (None, "e", None, False)],
        b"",
        id="mixed-endings",
    ),
    pytest.param(
        b"data: a\ndata: b\ndata:\ndata: c\n\n", [data("a\nb\n\nc")], b"", id="multiline-data"
    ),
    pytest.param(b": keep-alive\n\n: x\ndata: y\n\n", [COMMENT, data("y")], b"", id="comments"),
    pytest.param(
        b"event: delta\nid: 7\ndata: x\n\nevent: a\nevent: b\nid: 1\nid: 2\ndata: y\n\n",
        [("x", "delta", "7", False), ("y", "b", "2", False)],
        b"",
        id="event-id-last-wins",
    ),
    pytest.param(
        b"data:x\n\ndata:  two\n\n", [data("x"), data(" two")], b"", id="one-space-stripped"
    ),
    pytest.param(
        b"data\n\nevent\ndata: x\n\nid\n\n",
        [data(""), ("x", "", None, False), (None, None, "", False)],
        b"",
        id="field-without-colon",
    ),
    pytest.param(b'data: {"a": 1}\n\n', [data('{"a": 1}')], b"", id="colon-in-value"),
    pytest.param(b"\xef\xbb\xbfdata: a\n\n", [data("a")], b"", id="bom"),
    pytest.param(b"\xef\xbb\xbf\n\r\ndata: a\n\n", [data("a")], b"", id="bom-blank-lines"),
    pytest.param(
        b"data: a\n\n\xef\xbb\xbfdata: b\n\n", [data("a"), NO_DATA], b"", id="bom-only-at-start"
    ),
    pytest.param(b"data: a\n\ndata: b", [data("a"), data("b")], b"", id="flush-unterminated"),
    pytest.param(
        b"data: a\n\nevent: x\r\ndata: b\r\n",
        [data("a"), ("b", "x", None, False)],
        b"",
        id="flush-unterminated-line",
    ),
    pytest.param(b"data: a\n\n: ping", [data("a")], b": ping", id="flush-drops-comment"),
    pytest.param(b"data: a\n\n\n\r\n", [data("a")], b"\n\r\n", id="flush-drops-blank-lines"),
    pytest.param(b"data:\n\ndata: \n\n", [data(""), data("")], b"", id="empty-data"),
    pytest.param(
        b"\n\ndata: a\n\n\r\n\n\r\r\ndata: b\n\n\n",
        [data("a"), data("b")],
        b"\n",
        id="blank-lines-between",
    ),
    pytest.param(
        b"retry: 1000\nfoo: bar\ndata: x\n\nretry: 5\n\n",
        [data("x"), NO_DATA],
        b"",
        id="retry-and-unknown-ignored",
    ),
    pytest.param(b"id: a\0b\ndata: x\n\n", [data("x")], b"", id="id-with-nul-ignored"),
    pytest.param(
        b"data: \xff\xfe\nevent: \xc3\n\n",
        [("\ufffd\ufffd", "\ufffd", None, False)],
        b"",
        id="invalid-utf8",
    ),
    pytest.param(
        "data: h\u00e9llo \U0001f642\n\n".encode(), [data("h\u00e9llo \U0001f642")], b"", id="utf8"
    ),
]


def whole(stream: bytes) -> Iterator[list[bytes]]:
    yield [stream]


def halves(stream: bytes) -> Iterator[list[bytes]]:
    for cut in range(len(stream) + 1):
        yield [stream[:cut], stream[cut:]]


def bytewise(stream: bytes) -> Iterator[list[bytes]]:
    yield [stream[i : i + 1] for i in range(len(stream))]


CHUNKINGS = [pytest.param(f, id=f.__name__) for f in (whole, halves, bytewise)]


def assert_raw_reproduces(events: list[SseEvent], stream: bytes, leftover: bytes) -> None:
    joined = b"".join(event.raw for event in events)
    assert stream.startswith(joined)
    rest = stream[len(joined) :]
    # An event whose chunk ended in "\r" went out at once; when the stream's last
    # byte is the "\n" that followed, that no-op blank line is left over too.
    assert rest == leftover or (rest == b"\n" + leftover and joined.endswith(b"\r"))


def fields(event: SseEvent) -> Fields:
    return (event.data, event.event, event.id, event.comment_only)


def parse(chunks: list[bytes], max_event_bytes: int = 1 << 20) -> list[SseEvent]:
    parser = SseParser(max_event_bytes)
    events: list[SseEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    fed = sum(len(chunk) for chunk in chunks)
    assert parser.buffered == fed - sum(len(event.raw) for event in events)
    events += parser.flush()
    assert parser.buffered == 0
    return events


@pytest.mark.parametrize("chunkings", CHUNKINGS)
@pytest.mark.parametrize(("stream", "expected", "leftover"), CASES)
def test_parse(
    stream: bytes, expected: list[Fields], leftover: bytes, chunkings: Chunkings
) -> None:
    for chunks in chunkings(stream):
        events = parse(chunks)
        assert [fields(event) for event in events] == expected, chunks
        assert_raw_reproduces(events, stream, leftover)


# Fed whole: each event's raw is its block, blank lines before it included.
@pytest.mark.parametrize(
    ("stream", "raws"),
    [
        (b"data: a\r\n\r\n: c\n\ndata: b", [b"data: a\r\n\r\n", b": c\n\n", b"data: b"]),
        (b"\n\r\ndata: a\r\r\n", [b"\n\r\ndata: a\r\r\n"]),
        (b"\xef\xbb\xbfdata: a\n\n", [b"\xef\xbb\xbfdata: a\n\n"]),
    ],
)
def test_raw_is_the_block(stream: bytes, raws: list[bytes]) -> None:
    assert [event.raw for event in parse([stream])] == raws


def test_event_is_emitted_when_its_blank_line_arrives() -> None:
    parser = SseParser()
    assert parser.feed(b"data: a\n") == []
    assert parser.buffered == 8
    assert [e.data for e in parser.feed(b"\ndata: b")] == ["a"]
    assert parser.buffered == 7


def test_final_cr_ends_the_event_without_waiting() -> None:
    # Whether a "\n" follows is unknown until the next read; the event is
    # complete either way, and the "\n" then prefixes the next block.
    parser = SseParser()
    assert [e.raw for e in parser.feed(b"data: a\r\n\r")] == [b"data: a\r\n\r"]
    assert [e.raw for e in parser.feed(b"\ndata: b\r\n\r\n")] == [b"\ndata: b\r\n\r\n"]


def feed_all(parser: SseParser, chunks: list[bytes], events: list[SseEvent]) -> None:
    for chunk in chunks:
        events += parser.feed(chunk)


@pytest.mark.parametrize("chunkings", CHUNKINGS)
@pytest.mark.parametrize(
    ("stream", "delivered"),
    [
        pytest.param(b"data: " + b"x" * 11, [], id="incomplete-over"),
        pytest.param(b"data: " + b"x" * 11 + b"\n\n", [], id="complete-over"),
        pytest.param(b"data: a\n\n" + b"data: " + b"x" * 11, ["a"], id="after-an-event"),
    ],
)
def test_max_event_bytes(stream: bytes, delivered: list[str], chunkings: Chunkings) -> None:
    for chunks in chunkings(stream):
        parser = SseParser(max_event_bytes=16)
        events: list[SseEvent] = []
        with pytest.raises(SseError, match=r"max_event_bytes \(16 bytes\)"):
            feed_all(parser, chunks, events)
        # One chunk holding both events loses the first to the exception.
        assert [e.data for e in events] == delivered[: len(events)]


def test_max_event_bytes_is_inclusive() -> None:
    assert [e.data for e in parse([b"data: " + b"x" * 8 + b"\n\n"], 16)] == ["x" * 8]


def test_sse_error_is_a_value_error() -> None:
    assert issubclass(SseError, ValueError)
    with pytest.raises(ValueError, match="positive"):
        SseParser(max_event_bytes=0)


def test_flush_resets_for_a_new_stream() -> None:
    parser = SseParser()
    parser.feed(b"data: a\n\ndata: b")
    assert [e.data for e in parser.flush()] == ["b"]
    assert parser.flush() == []
    assert [e.data for e in parser.feed(b"\xef\xbb\xbfdata: c\n\n")] == ["c"]


@pytest.mark.parametrize(
    ("value", "encoded", "parsed"),
    [
        ("x", b"data: x\n\n", "x"),
        (b"x", b"data: x\n\n", "x"),
        ("", b"data: \n\n", ""),
        (DONE_DATA, b"data: [DONE]\n\n", DONE_DATA),
        ("a\nb", b"data: a\ndata: b\n\n", "a\nb"),
        ("a\n", b"data: a\ndata: \n\n", "a\n"),
        ("\n", b"data: \ndata: \n\n", "\n"),
        (b"a\r\nb\rc", b"data: a\ndata: b\ndata: c\n\n", "a\nb\nc"),
        ("h\u00e9", "data: h\u00e9\n\n".encode(), "h\u00e9"),
    ],
)
def test_encode_event(value: str | bytes, encoded: bytes, parsed: str) -> None:
    assert encode_event(value) == encoded
    for chunkings in (whole, halves, bytewise):
        for chunks in chunkings(encoded):
            assert [fields(e) for e in parse(chunks)] == [data(parsed)]


@given(
    values=st.lists(st.text(max_size=20), max_size=8),
    line_end=st.sampled_from([b"\n", b"\r\n", b"\r"]),
    cuts=st.lists(st.integers(min_value=0), max_size=6),
)
def test_encoded_events_round_trip(values: list[str], line_end: bytes, cuts: list[int]) -> None:
    stream = b"".join(encode_event(v) for v in values).replace(b"\n", line_end)
    points = sorted({cut % (len(stream) + 1) for cut in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    expected = [v.replace("\r\n", "\n").replace("\r", "\n") for v in values]
    events = parse(chunks)
    assert [e.data for e in events] == expected
    assert_raw_reproduces(events, stream, b"")
