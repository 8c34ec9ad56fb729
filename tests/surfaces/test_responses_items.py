"""Each kind of Responses item is read where its text lies, both ways.

After the reading, every string it left out is judged too, at the end of the
prompt (or as an answer part of its own), so a reader that skipped a field
would still have the text judged. What tells a field read from one swept is
where it stands: the prompt's texts go to the filters in reading order, joined
by a blank line, so each input case puts its item first and a plain message
after it. On the answer, an item's texts are judged together: a text the item's
reading missed is swept into a part of its own, and a block then withholds
that string alone, not the item it belongs to.
"""

from __future__ import annotations

from typing import Any

import openai
import orjson
import pytest
from opentelemetry.trace import SpanKind

from proxy.measure import genai_attrs as A
from tests.judge.sample_filters import Recording
from tests.loopback import ProxyFactory, RunningProxy
from tests.otlp_receiver import Traced
from tests.surfaces.conftest import Scripted
from tests.surfaces.responses_events import function_call, message, response

RECORDING = {"name": "rec", "type": "tests.judge.sample_filters:Recording"}
DENYLIST = {
    "filters": [{"name": "denylist", "type": "denylist", "stages": ["input", "output"],
                 "params": {"words": ["open sesame"]}}]
}  # fmt: skip
TAIL = {"role": "user", "content": "tail"}
ESCAPED = '{"cmd": "\\u0041"}'


def client(proxy: RunningProxy) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{proxy.url}/v1", api_key="sk-test", max_retries=0)


# An input item, and the texts the filters are given for it, in order (before "tail").
INPUT_ITEMS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "easy message": ({"role": "user", "content": "A"}, ["A"]),  # a defined role is no text
    "easy message of parts, no role": (
        {"content": [{"type": "input_text", "text": "A"},
                     {"type": "input_image", "image_url": "https://example.com/a.png"}]},
        ["A", "https://example.com/a.png"],  # a URL is text (a server may write it out)
    ),
    "a role not defined, alone": ({"role": "narrator"}, ["narrator"]),
    "a role not defined": ({"role": "narrator", "content": "A"}, ["narrator", "A"]),
    "typed message, role not defined": (
        {"type": "message", "role": "narrator", "content": "A"}, ["narrator", "A"]),
    "a role on an item not a message": (
        {"type": "function_call_output", "role": "narrator", "call_id": "c", "output": "O"},
        ["O"],
    ),
    "item of no known shape": ({"note": "A", "more": {"deep": "B"}}, ["A", "B"]),
    "unlisted item type": (
        {"type": "local_shell_call", "id": "ls_1", "call_id": "c", "status": "completed",
         "action": {"type": "exec", "command": ["echo", "A"]}},
        ["echo", "A"],
    ),
    "function_call": (
        {"type": "function_call", "call_id": "c", "name": "send", "arguments": '{"to": "A"}'},
        ["send", '{"to": "A"}'],
    ),
    "custom_tool_call input as written": (  # not JSON arguments: its escapes are its text
        {"type": "custom_tool_call", "call_id": "c", "name": "sh", "input": ESCAPED},
        ["sh", ESCAPED],
    ),
    "mcp_call": (
        {"type": "mcp_call", "id": "m", "server_label": "s", "name": "look",
         "arguments": "{}", "output": "O"},
        ["look", "{}", "O"],
    ),
    "function_call_output": ({"type": "function_call_output", "call_id": "c", "output": "O"},
                             ["O"]),
    "reasoning summary and content": (
        {"type": "reasoning", "id": "rs_1",
         "summary": [{"type": "summary_text", "text": "S"}],
         "content": [{"type": "reasoning_text", "text": "C"}]},
        ["S", "C"],
    ),
    "shell_call_output": (
        {"type": "shell_call_output", "call_id": "c", "output": [
            {"stderr": "E", "stdout": "O", "outcome": {"type": "exit", "exit_code": 0}},
            {"stdout": "O2"}]},
        ["O", "E", "O2"],
    ),
}  # fmt: skip
# The item's identifiers, judged by the sweep after the reading (so after "tail"):
# chat templates write ids out, and vLLM turns a call_id into a chat message's;
# and a role not defined, on any item.
INPUT_IDS = {
    "a role on an item not a message": ["narrator", "c"],
    "unlisted item type": ["ls_1", "c"],
    "function_call": ["c"],
    "custom_tool_call input as written": ["c"],
    "mcp_call": ["m", "s"],
    "function_call_output": ["c"],
    "reasoning summary and content": ["rs_1"],
    "shell_call_output": ["c"],
}


@pytest.mark.parametrize("case", INPUT_ITEMS)
async def test_each_input_item_s_texts_are_judged_in_reading_order(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    item, texts = INPUT_ITEMS[case]
    scripted.answer = response("completed", [message("ok")])
    proxy = await start_proxy({"filters": [RECORDING]}, upstream=scripted.url)
    Recording.seen.clear()
    async with client(proxy) as c:
        reply = await c.responses.create(model="m", input=[item, TAIL])  # type: ignore[list-item]
    judged = [ctx.text for ctx in Recording.seen if ctx.stage == "input"]
    Recording.seen.clear()
    assert reply.output_text == "ok"
    assert judged == ["\n\n".join([*texts, "tail", *INPUT_IDS.get(case, [])])]


def text_part(text: str, **more: Any) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], **more}


def cite(title: str) -> dict[str, Any]:
    return {"type": "url_citation", "title": title, "url": "https://example.com/",
            "start_index": 0, "end_index": 1}  # fmt: skip


def item(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "id": f"{kind}_1", "status": "completed", **fields}


# An output item with "open sesame" in one of its texts, and the item as the client
# then receives it: the whole item withheld, not only the string that matched.
BLOCKED_ITEMS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "message, the first of its parts": (
        item("message", role="assistant", note="n",
             content=[text_part("open sesame"), text_part("fine")]),
        item("message", role="assistant", status="incomplete", content=[]),
    ),
    "message, a part's annotation": (
        item("message", role="assistant", content=[
            text_part("fine", annotations=[cite("open sesame"), cite("a page")]),
            text_part("also fine")]),
        item("message", role="assistant", status="incomplete", content=[]),
    ),
    "message, a part's field not heard of": (
        item("message", role="assistant", content=[text_part("fine", note="open sesame")]),
        item("message", role="assistant", status="incomplete", content=[]),
    ),
    "message, a part before one not heard of": (
        item("message", role="assistant", content=[
            text_part("open sesame"),
            {"type": "output_audio", "data": "AAAA", "transcript": "hi"}]),
        item("message", role="assistant", status="incomplete", content=[]),
    ),
    "message, what is nested in a part not heard of": (  # only its own audio is no text
        item("message", role="assistant", content=[
            {"type": "output_audio", "data": "AAAA", "transcript": "hi",
             "meta": {"data": "open sesame"}}]),
        item("message", role="assistant", status="incomplete", content=[]),
    ),
    "message, content as a string": (
        item("message", role="assistant", content="open sesame"),
        item("message", role="assistant", status="incomplete", content=[]),
    ),
    "reasoning, a summary part's field not heard of": (
        item("reasoning", note="n",
             summary=[{"type": "summary_text", "text": "fine", "note": "open sesame"}],
             content=[{"type": "reasoning_text", "text": "fine"}]),
        item("reasoning", status="incomplete", summary=[], content=[]),
    ),
    "reasoning with no content": (
        item("reasoning", summary=[{"type": "summary_text", "text": "open sesame"}]),
        item("reasoning", status="incomplete", summary=[]),
    ),
    "reasoning, a summary that is a string, not a part": (  # only the string is withheld
        item("reasoning", summary=["open sesame"]),
        item("reasoning", summary=[""]),
    ),
    "code interpreter, its logs": (
        item("code_interpreter_call", container_id="c", code="print()",
             outputs=[{"type": "logs", "logs": "open sesame"}]),
        item("code_interpreter_call", status="incomplete", container_id="c", code="",
             outputs=[{"type": "logs", "logs": ""}]),
    ),
    "code interpreter, an output's field not heard of": (
        item("code_interpreter_call", container_id="c", code="print()",
             outputs=[{"type": "logs", "logs": "fine", "note": "open sesame"}]),
        item("code_interpreter_call", status="incomplete", container_id="c", code="",
             outputs=[{"type": "logs", "logs": "", "note": ""}]),
    ),
}  # fmt: skip


async def answer_as_received(proxy: RunningProxy) -> dict[str, Any]:
    async with client(proxy) as c:
        raw = await c.responses.with_raw_response.create(model="m", input="hi")
    document: dict[str, Any] = raw.http_response.json()
    return document


@pytest.mark.parametrize("case", BLOCKED_ITEMS)
async def test_a_blocked_output_item_is_withheld_whole(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    sent, received = BLOCKED_ITEMS[case]
    scripted.answer = response("completed", [sent, message("kept", item_id="msg_2")])
    proxy = await start_proxy(DENYLIST, upstream=scripted.url)
    answer = await answer_as_received(proxy)
    assert answer["output"] == [received, message("kept", item_id="msg_2")]
    if received.get("status") == "incomplete":
        assert answer["status"] == "incomplete"
        assert answer["incomplete_details"] == {"reason": "content_filter"}


# Strings no filter reads as text, "open sesame" in them: the answer passes as sent.
NO_TEXT_ITEMS: dict[str, dict[str, Any]] = {
    "a generated image": item("image_generation_call", result="open sesame"),
    "the audio of a part not heard of": item("message", role="assistant", content=[
        {"type": "output_audio", "data": "open sesame", "transcript": "hi"}]),
}  # fmt: skip


@pytest.mark.parametrize("case", NO_TEXT_ITEMS)
async def test_base64_data_in_an_output_item_is_no_text(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    scripted.answer = response("completed", [NO_TEXT_ITEMS[case]])
    proxy = await start_proxy(DENYLIST, upstream=scripted.url)
    answer = await answer_as_received(proxy)
    assert answer["output"] == [NO_TEXT_ITEMS[case]]
    assert answer["status"] == "completed"


async def test_a_blocked_answer_written_out_again_loses_the_copy(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """vLLM's output_messages repeat the answer as the model wrote it: blocked there,
    the copy is dropped (null, as when not asked for), the items as they were."""
    scripted.answer = {
        **response("completed", [message("fine")]),
        "output_messages": [{"role": "assistant", "content": "open sesame"}],
    }
    proxy = await start_proxy(DENYLIST, upstream=scripted.url)
    answer = await answer_as_received(proxy)
    assert answer["output_messages"] is None
    assert answer["output"] == [message("fine")]


async def test_a_redacted_message_loses_its_tokens_and_its_written_copy(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    tokens = [{"token": "shh", "logprob": -0.1, "top_logprobs": []}]
    scripted.answer = {
        **response("completed", [message("a shh", logprobs=tokens)]),
        "output_messages": [{"role": "assistant", "content": "said"}],
    }
    proxy = await start_proxy({"filters": [RECORDING]}, upstream=scripted.url)
    answer = await answer_as_received(proxy)
    Recording.seen.clear()
    (part,) = answer["output"][0]["content"]
    assert (part["text"], part["logprobs"]) == ("a [S]", [])
    assert answer["output_messages"] is None


async def test_a_call_s_arguments_are_judged_with_their_escapes_written_out(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """As the client parses them: ``\\u0041`` is judged as the letter it stands for."""
    scripted.answer = response("completed", [function_call(ESCAPED)])
    proxy = await start_proxy({"filters": [RECORDING]}, upstream=scripted.url)
    Recording.seen.clear()
    answer = await answer_as_received(proxy)
    judged = [ctx.text for ctx in Recording.seen if ctx.stage == "output"]
    Recording.seen.clear()
    assert judged == ['send\n\n{"cmd": "A"}']
    assert answer["output"] == [function_call(ESCAPED)]  # passed as sent


# A request and how its Response ended; the conversation (instructions first) and the
# finish reasons its traced span gives.
SPAN_CASES: dict[str, tuple[dict[str, Any], dict[str, Any], list[Any], tuple[str, ...] | None]] = {
    "cut by a limit": (
        {"instructions": "be brief", "input": "hi"},
        {"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}},
        [{"role": "developer", "content": "be brief"}, {"role": "user", "content": "hi"}],
        ("max_output_tokens",),
    ),
    "no status": (
        {"instructions": "be brief", "input": [TAIL]},
        {"status": None},
        [{"role": "developer", "content": "be brief"}, TAIL],
        None,
    ),
    "a status that is not a word": ({"input": "hi"}, {"status": 7},
                                    [{"role": "user", "content": "hi"}], None),
}  # fmt: skip


@pytest.mark.parametrize("case", SPAN_CASES)
async def test_the_span_gives_the_conversation_and_why_the_response_ended(
    start_proxy: ProxyFactory, scripted: Scripted, traced: Traced, case: str
) -> None:
    request, ending, conversation, reasons = SPAN_CASES[case]
    scripted.answer = {**response("completed", [message("ok")]), **ending}
    config = {"filters": [RECORDING], "telemetry": {"trace_content": True}}
    proxy = await start_proxy(config, upstream=scripted.url, tracing=traced.setup)
    async with client(proxy) as c:
        await c.responses.with_raw_response.create(model="m", **request)
    Recording.seen.clear()
    (server,) = [s for s in await traced.spans() if s.kind == SpanKind.SERVER]
    attrs = server.attributes
    assert attrs is not None
    assert orjson.loads(str(attrs[A.INPUT_MESSAGES])) == conversation
    assert attrs.get(A.RESPONSE_FINISH_REASONS) == reasons


async def test_an_answer_that_is_a_json_list_is_a_502_not_a_crash(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    scripted.answer = [{"output": [message("hi")]}]
    proxy = await start_proxy(DENYLIST, upstream=scripted.url)
    async with client(proxy) as c:
        with pytest.raises(openai.APIStatusError) as caught:
            await c.responses.create(model="m", input="hi")
    assert caught.value.status_code == 502


async def test_each_string_of_an_answer_s_parts_is_judged_once(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """A text part's annotations are read as its notes; a part with no text (audio) is
    read whole, its annotations with it, and not a second time as notes."""
    audio = {"type": "output_audio", "data": "QUJD", "transcript": "audio transcript",
             "annotations": [cite("audio title")]}  # fmt: skip
    sent = item("message", role="assistant",
                content=[text_part("hello", annotations=[cite("page title")]), audio])  # fmt: skip
    scripted.answer = response("completed", [sent])
    proxy = await start_proxy({"filters": [RECORDING]}, upstream=scripted.url)
    Recording.seen.clear()
    answer = await answer_as_received(proxy)
    judged = [ctx.text for ctx in Recording.seen if ctx.stage == "output"]
    Recording.seen.clear()
    assert answer["output"] == [sent]
    url = "https://example.com/"
    assert judged == ["\n\n".join(["hello", "audio transcript", "audio title", url,
                                   "page title", url])]  # fmt: skip
