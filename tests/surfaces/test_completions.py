"""Legacy completions and embeddings through the proxy, with the official SDK as the client.

The prompt's shapes (a string, strings, token lists, vLLM's prompt
embeddings), what a span records (usage, finish reasons, the prompt and
answer as they passed), a streamed completion's held-back text released in
a chunk of its own, and the ways an answer is withheld or a stream blocked.
"""

from __future__ import annotations

from typing import Any

import openai
import orjson
import pytest
from opentelemetry.trace import SpanKind

from proxy.measure import genai_attrs as A
from tests.loopback import ProxyFactory, RunningProxy, post_json
from tests.otlp_receiver import Traced
from tests.surfaces.conftest import Scripted, sse

EMAIL = "jane.doe@example.com"
FILTERS = {
    "filters": [
        {"name": "denylist", "type": "denylist", "params": {"words": ["open sesame"]}},
        {"name": "pii", "type": "pii"},
    ]
}
USAGE = {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16}


def client(proxy: RunningProxy) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{proxy.url}/v1", api_key="sk-test", max_retries=0)


def completion(*texts: str, finish: str = "stop", **extra: Any) -> dict[str, Any]:
    choices = [{"index": i, "text": t, "finish_reason": finish, "logprobs": None, **extra}
               for i, t in enumerate(texts)]  # fmt: skip
    return {"id": "c", "object": "text_completion", "created": 1, "model": "m",
            "choices": choices, "usage": USAGE}  # fmt: skip


async def test_usage_finish_reasons_and_both_texts_reach_the_span(
    start_proxy: ProxyFactory, scripted: Scripted, traced: Traced
) -> None:
    scripted.answer = completion("hello", "there")
    config = {**FILTERS, "telemetry": {"trace_content": True}}
    proxy = await start_proxy(config, upstream=scripted.url, tracing=traced.setup)
    async with client(proxy) as c:
        answer = await c.completions.create(model="m", prompt=f"mail {EMAIL}", n=2)
    assert [choice.text for choice in answer.choices] == ["hello", "there"]
    (server,) = [s for s in await traced.spans() if s.kind == SpanKind.SERVER]
    attrs = server.attributes
    assert attrs is not None
    assert (attrs[A.USAGE_INPUT_TOKENS], attrs[A.USAGE_OUTPUT_TOKENS]) == (7, 9)
    assert attrs[A.RESPONSE_FINISH_REASONS] == ("stop", "stop")
    assert orjson.loads(str(attrs[A.INPUT_MESSAGES])) == "mail [EMAIL]"
    assert orjson.loads(str(attrs[A.OUTPUT_MESSAGES])) == ["hello", "there"]


async def test_embeddings_usage_and_input_reach_the_span(
    start_proxy: ProxyFactory, scripted: Scripted, traced: Traced
) -> None:
    usage = {"prompt_tokens": 5, "total_tokens": 5}
    vector = {"object": "embedding", "index": 0, "embedding": [0.5]}
    scripted.answer = {"object": "list", "model": "m", "usage": usage, "data": [vector]}
    config = {**FILTERS, "telemetry": {"trace_content": True}}
    proxy = await start_proxy(config, upstream=scripted.url, tracing=traced.setup)
    async with client(proxy) as c:
        await c.embeddings.create(model="m", input=[f"mail {EMAIL}"], encoding_format="float")
    (server,) = [s for s in await traced.spans() if s.kind == SpanKind.SERVER]
    attrs = server.attributes
    assert attrs is not None
    assert attrs[A.USAGE_INPUT_TOKENS] == 5
    assert orjson.loads(str(attrs[A.INPUT_MESSAGES])) == ["mail [EMAIL]"]


# (the prompt's count, what a span records of it): a count is a whole number, 0 or more.
COUNTS = {
    "a string": ("7", None),
    "true": (True, None),  # JSON true is a Python int: a span would say 1 token
    "a float": (7.0, None),
    "below 0": (-1, None),
    "null": (None, None),
    "zero": (0, 0),  # an empty prompt: its count is known, not unknown
}


@pytest.mark.parametrize(("count", "recorded"), COUNTS.values(), ids=COUNTS.keys())
async def test_only_a_count_that_is_a_whole_number_is_recorded(
    start_proxy: ProxyFactory, scripted: Scripted, traced: Traced, count: Any, recorded: Any
) -> None:
    scripted.answer = {**completion("hello"), "usage": {"prompt_tokens": count,
                                                        "completion_tokens": 0}}  # fmt: skip
    proxy = await start_proxy(FILTERS, upstream=scripted.url, tracing=traced.setup)
    status, _, _ = await post_json(f"{proxy.url}/v1/completions", {"model": "m", "prompt": "hi"})
    assert status == 200
    (server,) = [s for s in await traced.spans() if s.kind == SpanKind.SERVER]
    attrs = server.attributes
    assert attrs is not None
    assert (attrs.get(A.USAGE_INPUT_TOKENS), attrs.get(A.USAGE_OUTPUT_TOKENS)) == (recorded, 0)


# (prompt fields, what the model gets, the kinds counted as uninspected)
PROMPTS: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, float]]] = {
    "a string": ({"prompt": f"to {EMAIL}"}, {"prompt": "to [EMAIL]"}, {}),
    "strings": ({"prompt": ["hi", f"to {EMAIL}"]}, {"prompt": ["hi", "to [EMAIL]"]}, {}),
    "strings and token ids": (
        {"prompt": [f"to {EMAIL}", [1, 2]]}, {"prompt": ["to [EMAIL]", [1, 2]]}, {"tokens": 1}),
    "a suffix": ({"prompt": "a", "suffix": f"to {EMAIL}"}, {"suffix": "to [EMAIL]"}, {}),
    "vectors alone": ({"prompt_embeds": "AAAA"}, {"prompt_embeds": "AAAA"}, {"embeddings": 1}),
    "vectors and a string": (
        {"prompt": f"to {EMAIL}", "prompt_embeds": "AAAA"}, {"prompt": "to [EMAIL]"},
        {"embeddings": 1}),
}  # fmt: skip


@pytest.mark.parametrize("case", PROMPTS)
async def test_each_shape_of_prompt_is_judged_and_what_cannot_be_is_counted(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    fields, sent, counted = PROMPTS[case]
    scripted.answer = completion("ok")
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, _ = await post_json(f"{proxy.url}/v1/completions", {"model": "m", **fields})
    assert status == 200
    (body,) = scripted.json_bodies()
    assert {key: body[key] for key in sent} == sent
    for kind in ("tokens", "embeddings"):
        got = proxy.value("taxmeter_uninspected_parts_total", route="completions", kind=kind)
        assert got == counted.get(kind, 0), kind


@pytest.mark.parametrize(
    ("path", "fields"),
    [("/v1/completions", {"prompt": 3}), ("/v1/completions", {"prompt": ["a", {"x": 1}]}),
     ("/v1/embeddings", {"input": {"text": "a"}}), ("/v1/embeddings", {"input": [None]})],
)  # fmt: skip
async def test_a_prompt_of_no_shape_the_api_has_is_refused_before_the_model(
    start_proxy: ProxyFactory, scripted: Scripted, path: str, fields: dict[str, Any]
) -> None:
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, answer = await post_json(f"{proxy.url}{path}", {"model": "m", **fields})
    assert status == 400
    assert orjson.loads(answer)["error"]["code"] == "invalid_body"
    assert scripted.bodies == []


@pytest.mark.parametrize(
    ("path", "answer"),
    [("/v1/completions", []), ("/v1/completions", {"choices": [{"index": 0}]}),
     ("/v1/embeddings", {"object": "list"})],
)  # fmt: skip
async def test_an_answer_of_no_shape_the_api_has_is_a_502(
    start_proxy: ProxyFactory, scripted: Scripted, path: str, answer: Any
) -> None:
    scripted.answer = answer
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    body = (
        {"model": "m", "prompt": "hi"}
        if path == "/v1/completions"
        else {"model": "m", "input": "hi"}
    )
    status, _, got = await post_json(f"{proxy.url}{path}", body)
    assert status == 502
    assert orjson.loads(got)["error"]["code"] == "upstream_malformed"


async def test_a_withheld_completion_is_empty_filtered_and_loses_its_logprobs(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    scripted.answer = completion("say open sesame", logprobs={"tokens": ["open", " sesame"]})
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, answer = await post_json(
        f"{proxy.url}/v1/completions", {"model": "m", "prompt": "x"}
    )
    assert status == 200
    (choice,) = orjson.loads(answer)["choices"]
    assert choice == {"index": 0, "text": "", "finish_reason": "content_filter", "logprobs": None}


def chunk(text: str, finish: str | None = None) -> bytes:
    choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
    return sse({"id": "c", "object": "text_completion", "created": 1, "model": "m",
                "choices": [choice]})  # fmt: skip


def chunks(raw: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line[6:]) for line in raw.split(b"\n\n") if line.startswith(b"data: {")]


async def test_text_held_back_goes_out_in_order_in_the_chunk_that_ends_it(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """The held rest went out in a chunk of its own before the end's chunk, whose
    own text then followed it: "a" before "The end. Mail: "."""
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    for pieces, whole in (
        (["Hello there. ", "The end. Mail: a"], "Hello there. The end. Mail: a"),
        (["mail jane", ".doe@exam", "ple.com"], "mail [EMAIL]"),
    ):
        scripted.script = [*(chunk(p) for p in pieces[:-1]), chunk(pieces[-1], "stop"),
                           b"data: [DONE]\n\n"]  # fmt: skip
        async with client(proxy) as c:
            stream = await c.completions.create(model="m", prompt="x", stream=True)
            texts = [piece.choices[0].text async for piece in stream]
        assert "".join(texts) == whole
    _, _, raw = await post_json(
        f"{proxy.url}/v1/completions", {"model": "m", "prompt": "x", "stream": True}
    )
    choices = [event["choices"] for event in chunks(raw)]
    assert all(len(c) == 1 for c in choices)  # a chunk whose text is all held back is dropped
    assert choices[-1] == [{"index": 0, "text": "[EMAIL]", "finish_reason": "stop",
                            "logprobs": None}]  # fmt: skip


async def test_text_held_back_when_a_stream_has_no_end_goes_out_in_a_chunk_of_its_own(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    scripted.script = [chunk("mail jane"), chunk(".doe@exam"), chunk("ple.com"),
                       b"data: [DONE]\n\n"]  # fmt: skip
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    _, _, raw = await post_json(
        f"{proxy.url}/v1/completions", {"model": "m", "prompt": "x", "stream": True}
    )
    choices = [event["choices"] for event in chunks(raw)]
    assert all(c[0]["text"] for c in choices)  # a chunk whose text is all held back is dropped
    assert choices[-1] == [{"index": 0, "text": "[EMAIL]", "finish_reason": None}]
    assert raw.endswith(b"data: [DONE]\n\n")


async def test_a_blocked_stream_ends_with_a_filtered_choice(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    scripted.script = [
        chunk("say open "),
        chunk("sesame now"),
        chunk("", "stop"),
        b"data: [DONE]\n\n",
    ]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, raw = await post_json(
        f"{proxy.url}/v1/completions", {"model": "m", "prompt": "x", "stream": True}
    )
    assert status == 200
    assert b"sesame" not in raw
    assert raw.endswith(b"data: [DONE]\n\n")
    last = chunks(raw)[-1]["choices"]
    assert last == [{"index": 0, "text": "", "finish_reason": "content_filter"}]


async def test_a_choices_end_beside_another_choices_held_text_goes_out(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """One chunk, two choices: the first's text held back (the chunk is written anew),
    the second's end with no text: that end is no empty choice to drop."""

    def both(*choices: dict[str, Any]) -> bytes:
        return sse({"id": "c", "object": "text_completion", "created": 1, "model": "m",
                    "choices": list(choices)})  # fmt: skip

    scripted.script = [
        both({"index": 0, "text": "mail jane", "finish_reason": None},
             {"index": 1, "text": "", "finish_reason": "stop"}),
        both({"index": 0, "text": ".doe@example.com", "finish_reason": "stop"}),
        b"data: [DONE]\n\n",
    ]  # fmt: skip
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    _, _, raw = await post_json(
        f"{proxy.url}/v1/completions", {"model": "m", "prompt": "x", "stream": True, "n": 2}
    )
    ends = {c["index"]: c["finish_reason"] for e in chunks(raw) for c in e["choices"]
            if c["finish_reason"] is not None}  # fmt: skip
    assert ends == {0: "stop", 1: "stop"}
    assert b"jane" not in raw


@pytest.mark.parametrize(
    "content",
    [5, True, [5], {"type": "x_part", "data": "AAAA"}, {"data": "AAAA"}, {"type": 5}, {"type": []}],
)
async def test_content_of_no_shape_a_text_filter_reads_is_counted_and_may_be_refused(
    start_proxy: ProxyFactory, scripted: Scripted, content: Any
) -> None:
    """A message's content that is no string, list or text part: counted as ``other``."""
    said = {"role": "assistant", "content": "ok"}
    choice = {"index": 0, "finish_reason": "stop", "message": said}
    scripted.answer = {"id": "c", "object": "chat.completion", "model": "m", "choices": [choice]}
    body = {"model": "m", "messages": [{"role": "user", "content": content}]}
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, _ = await post_json(f"{proxy.url}/v1/chat/completions", body)
    assert status == 200
    counted = "taxmeter_uninspected_parts_total"
    assert proxy.value(counted, route="chat_completions", kind="other") == 1
    strict = await start_proxy({**FILTERS, "uninspected": "block"}, upstream=scripted.url)
    status, _, answer = await post_json(f"{strict.url}/v1/chat/completions", body)
    assert status == 400
    assert orjson.loads(answer)["error"]["code"] == "uninspected_content"
