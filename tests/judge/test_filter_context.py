"""What a filter is handed: the same request's context at every stage and in every call."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import orjson
import pytest

from tests.judge.sample_filters import Recording, Unsettled
from tests.loopback import ProxyFactory, RunningProxy

RECORDING = {"name": "rec", "type": "tests.judge.sample_filters:Recording"}
# One variant, so every request is in it and its name is not the default's.
TREATED = {"variants": {"treated": {"weight": 1}}}


@pytest.fixture(autouse=True)
def forget() -> Iterator[None]:
    Recording.seen.clear()
    Unsettled.seen.clear()
    yield
    Recording.seen.clear()
    Unsettled.seen.clear()


async def chat(proxy: RunningProxy, stream: bool, *contents: str) -> tuple[str, str]:
    """(the answer as sent, the request id it was served under)."""
    body = {"model": "m", "stream": stream,
            "messages": [{"role": "user", "content": c} for c in contents]}  # fmt: skip
    async with aiohttp.ClientSession() as session, session.post(
        f"{proxy.url}/v1/chat/completions", data=orjson.dumps(body),
        headers={"Content-Type": "application/json"},
    ) as response:  # fmt: skip
        assert response.status == 200
        return await response.text(), response.headers["X-Request-Id"]


def assert_same_request(request_id: str, prompt_read: bool) -> None:
    """Each call had the request's route, id and variant, and its body when it was read."""
    for ctx in Recording.seen:
        assert (ctx.route, ctx.request_id, ctx.variant) == (
            "chat_completions", request_id, "treated"
        ), ctx.stage  # fmt: skip
        if prompt_read:  # the request's body, never the answer's
            assert ctx.body["model"] == "m", ctx.stage
            assert "messages" in ctx.body, ctx.stage
        else:
            assert ctx.body is None, ctx.stage


async def test_a_redaction_asked_again_per_message_sees_the_request_s_context(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy({"filters": [{**RECORDING, "stages": ["input"]}], **TREATED})
    answer, request_id = await chat(proxy, False, "my secret", "echo: a secret b")
    assert orjson.loads(answer)["choices"][0]["message"]["content"] == "a [S] b"
    # Once on the whole prompt, then once per message to place the redaction.
    texts = [(ctx.stage, ctx.text) for ctx in Recording.seen]
    assert texts == [
        ("input", "my secret\n\necho: a secret b"),
        ("input", "my secret"),
        ("input", "echo: a secret b"),
    ]
    assert_same_request(request_id, prompt_read=True)


async def test_a_stream_redaction_without_edits_is_applied_and_each_window_knows_the_request(
    start_proxy: ProxyFactory,
) -> None:
    config = {**RECORDING, "stages": ["stream"], "stream": {"every_tokens": 1}}
    proxy = await start_proxy({"filters": [config], **TREATED})
    answer, request_id = await chat(proxy, True, "echo: a shh b")
    pieces = [
        orjson.loads(line.removeprefix("data: "))["choices"][0]["delta"].get("content", "")
        for line in answer.splitlines()
        if line.startswith("data: {")
    ]
    assert "".join(pieces) == "a [S] b"
    assert "content_filter" not in answer
    windows = [ctx for ctx in Recording.seen if ctx.stage == "stream"]
    assert len(windows) == len(Recording.seen) >= 2
    assert all(ctx.partial for ctx in windows)  # judged as it came: more could follow
    assert_same_request(request_id, prompt_read=False)


async def test_an_output_filter_at_a_stream_s_end_judges_the_whole_text_as_final(
    start_proxy: ProxyFactory,
) -> None:
    config = {**RECORDING, "stages": ["input", "output"], "at_stream_end": True}
    proxy = await start_proxy({"filters": [config], **TREATED})
    _, request_id = await chat(proxy, True, "echo: a b c")
    assert [(c.stage, c.text, c.partial) for c in Recording.seen] == [
        ("input", "echo: a b c", False), ("output", "a b c", False)
    ]  # fmt: skip
    assert_same_request(request_id, prompt_read=True)


async def test_an_output_filter_on_a_whole_answer_is_handed_the_request_not_the_answer(
    start_proxy: ProxyFactory,
) -> None:
    both = {**RECORDING, "stages": ["input", "output"]}
    proxy = await start_proxy({"filters": [both], **TREATED})
    answer, request_id = await chat(proxy, False, "echo: a shh b")
    assert orjson.loads(answer)["choices"][0]["message"]["content"] == "a [S] b"
    assert [(c.stage, c.text) for c in Recording.seen] == [
        ("input", "echo: a shh b"), ("output", "a shh b")
    ]  # fmt: skip
    assert_same_request(request_id, prompt_read=True)


@pytest.mark.parametrize("mode", ["enforce", "observe"])
async def test_a_tail_said_to_be_unsettled_is_judged_again_at_the_end_in_either_mode(
    start_proxy: ProxyFactory, mode: str
) -> None:
    # An inline observer runs as an enforcing filter would, holdback included,
    # so that what it costs is what enforcing it would cost.
    unsettled = {"name": "u", "type": "tests.judge.sample_filters:Unsettled", "mode": mode,
                 "observe_inline": mode == "observe", "stream": {"every_tokens": 1}}  # fmt: skip
    proxy = await start_proxy({"filters": [unsettled]})
    await chat(proxy, True, "echo: a b c")
    assert [ctx.partial for ctx in Unsettled.seen][-1] is False  # the tail, as final
    assert len(Unsettled.seen) >= 2
