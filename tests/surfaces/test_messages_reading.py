"""The order in which a Messages request's blocks reach the filters, and what is counted unread.

The reader of Anthropic content blocks takes each block's fields in place; a
field it leaves out is still judged, but by the sweep, after every text read
(see ``Surface.read_prompt``). So the block under test comes first and a plain
text after it: the filter must be given the block's texts before that text.
A block nested past any request the API accepts has every string read, keys
too; the depth at which that starts is pinned from both sides.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tests.judge.sample_filters import Recording
from tests.loopback import ProxyFactory, RunningProxy, post_json
from tests.surfaces.conftest import Scripted
from tests.surfaces.messages_shapes import message, text

RECORDING = {"filters": [{"name": "rec", "type": "tests.judge.sample_filters:Recording",
                          "stages": ["input"]}]}  # fmt: skip
AFTER = "after"
# Where a block nested deeper than any real request starts being read string by string.
MAX_DEPTH = 32
# The text block at the bottom of a nesting, as read when it is past MAX_DEPTH: its
# values, then its keys (every string of it, as a tool's input is read).
READ_WHOLE = "text\n\nv\n\ntype\n\ntext"


@pytest.fixture(autouse=True)
def forget() -> Iterator[None]:
    Recording.seen.clear()
    yield
    Recording.seen.clear()


def nest(levels: int, wrap: Any) -> dict[str, Any]:
    """A text block ``v`` at the bottom of ``levels`` blocks made by ``wrap``."""
    block: dict[str, Any] = text("v")
    for _ in range(levels):
        block = wrap(block)
    return block


def tool_result(inner: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_result", "content": [inner]}


def document(inner: dict[str, Any]) -> dict[str, Any]:
    return {"type": "document", "source": {"type": "content", "content": [inner]}}


def search_result(inner: dict[str, Any]) -> dict[str, Any]:
    return {"type": "search_result", "content": [inner]}


def unheard_of(inner: dict[str, Any]) -> dict[str, Any]:
    return {"type": "future_block", "body": inner}


def cited(inner: dict[str, Any]) -> dict[str, Any]:
    return {"type": "text", "text": "c", "citations": [inner]}


# Each wrapper, and the text it holds itself (read before what it nests).
WRAPPERS = {
    "tool_result": (tool_result, ""),
    "document content": (document, ""),
    "search_result": (search_result, ""),
    "a block not heard of": (unheard_of, ""),
    "a citation": (cited, "c\n\n"),
}

# A user message's first block, what the filter is given for the whole prompt (that
# block's texts in reading order, then AFTER), and the kinds counted as unreadable.
BLOCKS: dict[str, tuple[Any, str, list[str]]] = {
    "text with citations": (
        {
            "type": "text",
            "text": "T",
            "citations": [{"type": "char_location", "cited_text": "C", "document_title": "D"}],
        },
        "T\n\nC\n\nD",
        [],
    ),
    "text with one citation, not a list": (
        {"type": "text", "text": "T", "citations": {"type": "char_location", "cited_text": "C"}},
        "T\n\nC",
        [],
    ),
    "thinking": ({"type": "thinking", "thinking": "TH", "signature": "sig"}, "TH", []),
    "tool_use, input an object": (
        {"type": "tool_use", "id": "toolu_1", "name": "NAME", "input": {"k": "V"}},
        "NAME\n\nV\n\nk",
        [],
    ),
    "tool_use, input a string": (
        {"type": "tool_use", "id": "toolu_1", "name": "NAME", "input": "IN"},
        "NAME\n\nIN",
        [],
    ),
    "server_tool_use": (
        {
            "type": "server_tool_use",
            "id": "srvtoolu_1",
            "name": "web_search",
            "input": {"query": "Q"},
        },
        "web_search\n\nQ\n\nquery",
        [],
    ),
    "tool_result string": (
        {"type": "tool_result", "content": "R"},
        "R",
        [],
    ),
    "tool_result blocks": (
        {"type": "tool_result", "content": [text("R1"), "R2"]},
        "R1\n\nR2",
        [],
    ),
    "document, text source": (
        {
            "type": "document",
            "title": "TI",
            "context": "CX",
            "source": {"type": "text", "media_type": "text/plain", "data": "DATA"},
        },
        "TI\n\nCX\n\nDATA",
        [],
    ),
    "document, content source": (
        {
            "type": "document",
            "title": "TI",
            "source": {"type": "content", "content": [text("C1"), text("C2")]},
        },
        "TI\n\nC1\n\nC2",
        [],
    ),
    "document, a PDF's URL": (
        {"type": "document", "title": "TI", "source": {"type": "url", "url": "https://e.x/a"}},
        "TI",
        ["file"],
    ),
    "document, a source that is no object": (
        {"type": "document", "title": "TI", "source": "S"},
        "TI",
        ["file"],
    ),
    "search_result": (
        {"type": "search_result", "title": "TI", "source": "SRC", "content": [text("C")]},
        "TI\n\nSRC\n\nC",
        [],
    ),
    "image": (
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
        },
        "",
        ["image"],
    ),
    "redacted_thinking": ({"type": "redacted_thinking", "data": "EmwKAhgB"}, "", ["encrypted"]),
    "container_upload": ({"type": "container_upload", "file_id": "file_1"}, "", ["file"]),
    "not a block": (5, "", ["other"]),
    "a block not heard of": (
        {
            "type": "future_block",
            "id": "b1",
            "note": "N",
            "input": "IN",
            "body": {"type": "text", "text": "B"},
            "items": ["I", {"type": "text", "text": "J"}],
            "encrypted_content": "sealed",
        },
        "N\n\nIN\n\nB\n\nI\n\nJ",
        ["encrypted"],
    ),
    "a block not heard of, with a tool's input": (
        {"type": "future_tool_use", "name": "NAME", "input": {"k": "V"}},
        "NAME\n\nV\n\nk",
        [],
    ),
    "a block not heard of, its source a file": (
        {
            "type": "future_block",
            "note": "N",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"},
        },
        "N",
        ["file"],
    ),
    "a block not heard of, its type no string": (
        {"type": ["x"], "note": "N", "body": {"type": "text", "text": "B"}},
        "N\n\nB",
        [],
    ),
}
for kind, (wrap, own) in WRAPPERS.items():
    # The deepest nesting still read by type, and the first read whole.
    BLOCKS[f"{kind} nested {MAX_DEPTH} deep"] = (nest(MAX_DEPTH, wrap), own * MAX_DEPTH + "v", [])
    BLOCKS[f"{kind} nested {MAX_DEPTH + 1} deep"] = (
        nest(MAX_DEPTH + 1, wrap),
        own * (MAX_DEPTH + 1) + READ_WHOLE,
        [],
    )
# What the sweep still judges after them: strings no reader takes (a media type, a URL,
# an identifier: chat templates write ids out).
SWEPT = {
    "tool_use, input an object": "toolu_1",
    "tool_use, input a string": "toolu_1",
    "server_tool_use": "srvtoolu_1",
    "container_upload": "file_1",
    # and a kind the API does not define: a server that does not check hands it on
    "a block not heard of": "future_block\n\nb1",
    "a block not heard of, with a tool's input": "future_tool_use",
    "a block not heard of, its source a file": "future_block\n\napplication/pdf",
    "document, text source": "text/plain",
    "document, a PDF's URL": "https://e.x/a",
    "document, a source that is no object": "S",
    "image": "image/png",
    "a block not heard of, its type no string": "x",
}
for depth in (MAX_DEPTH, MAX_DEPTH + 1):  # each level's kind, not one the API defines
    SWEPT[f"a block not heard of nested {depth} deep"] = "\n\n".join(["future_block"] * depth)


def uninspected(proxy: RunningProxy) -> list[str]:
    """The kinds counted as no filter can read, once per part."""
    kinds: list[str] = []
    for metric in proxy.registry.collect():
        for sample in metric.samples:
            if sample.name == "taxmeter_uninspected_parts_total":
                kinds += [sample.labels["kind"]] * int(sample.value)
    return sorted(kinds)


@pytest.mark.parametrize("case", BLOCKS)
async def test_a_block_s_texts_reach_the_filter_in_reading_order(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    block, expected, counted = BLOCKS[case]
    scripted.answer = message(text("ok"))
    proxy = await start_proxy(RECORDING, upstream=scripted.url)
    request = {"model": "m", "max_tokens": 16,
               "messages": [{"role": "user", "content": [block, text(AFTER)]}]}  # fmt: skip
    status, _, body = await post_json(f"{proxy.url}/v1/messages", request)
    assert status == 200, body
    assert orjson.loads(body)["content"] == [text("ok")]
    (seen,) = [ctx.text for ctx in Recording.seen if ctx.stage == "input"]
    texts = [expected, AFTER, SWEPT.get(case, "")]
    assert seen == "\n\n".join(t for t in texts if t)
    assert uninspected(proxy) == counted
