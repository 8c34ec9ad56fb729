"""Prompt text a model reads that reached it unjudged.

Chat templates render a tool's whole definition (``{{ tools | tojson }}``),
so every string of its schema is text the model reads, at any depth; vLLM
parses an assistant's tool-call ``arguments`` into an object before the
template writes it out again, so a JSON escape in them (``\\u0073``) is the
character it stands for by the time the model reads it.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.loopback import ProxyFactory, post_json
from tests.security.conftest import EMAIL, FILTERS
from tests.surfaces.conftest import Scripted

CHAT = "/v1/chat/completions"
CHAT_ANSWER = {"id": "c", "object": "chat.completion", "model": "m",
               "choices": [{"index": 0, "finish_reason": "stop",
                            "message": {"role": "assistant", "content": "ok"}}]}  # fmt: skip
RESPONSE = {"id": "r", "object": "response", "model": "m", "status": "completed", "output": []}
MESSAGE = {"id": "msg", "type": "message", "role": "assistant", "model": "m",
           "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
           "usage": {"input_tokens": 1, "output_tokens": 1}}  # fmt: skip
USER = [{"role": "user", "content": "hi"}]


def nested(depth: int, innermost: dict[str, Any]) -> dict[str, Any]:
    """An object schema ``depth`` properties deep, ``innermost`` at the bottom."""
    schema = innermost
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


def chat_tool(parameters: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": "f", "parameters": parameters}}


DEEP = nested(20, {"type": "string", "description": f"mail {EMAIL}"})  # 40 levels of nesting
ENUM = {"type": "object", "properties": {"to": {"type": "string", "enum": [EMAIL, "nobody"]}}}
TITLE = {"type": "object", "title": f"Mail {EMAIL}", "properties": {}}
DEFAULT = {"type": "object", "properties": {"to": {"type": "string", "default": EMAIL}}}
NAMED = {"type": "object", "properties": {f"reply to {EMAIL}": {"type": "string"}},
         "required": [f"reply to {EMAIL}"]}  # fmt: skip

# (path, body, answer): an e-mail in a place of the prompt the adapter did not read.
CASES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "chat: a description nested 40 deep": (
        CHAT, {"model": "m", "messages": USER, "tools": [chat_tool(DEEP)]}, CHAT_ANSWER),
    "chat: an enum value of a tool parameter": (
        CHAT, {"model": "m", "messages": USER, "tools": [chat_tool(ENUM)]}, CHAT_ANSWER),
    "chat: a schema title": (
        CHAT, {"model": "m", "messages": USER, "tools": [chat_tool(TITLE)]}, CHAT_ANSWER),
    "chat: a parameter default": (
        CHAT, {"model": "m", "messages": USER, "tools": [chat_tool(DEFAULT)]}, CHAT_ANSWER),
    "responses: a description nested 40 deep": (
        "/v1/responses",
        {"model": "m", "input": "hi",
         "tools": [{"type": "function", "name": "f", "parameters": DEEP}]}, RESPONSE),
    "responses: an enum value of a tool parameter": (
        "/v1/responses",
        {"model": "m", "input": "hi",
         "tools": [{"type": "function", "name": "f", "parameters": ENUM}]}, RESPONSE),
    "responses: an unknown input item nested 40 deep": (
        "/v1/responses",
        {"model": "m", "input": [{"type": "x_call_output", "call_id": "c",
                                  "output": nested(20, {"note": f"mail {EMAIL}"})}]},
        RESPONSE),
    "messages: an enum value of a tool's input_schema": (
        "/v1/messages",
        {"model": "m", "max_tokens": 8, "messages": USER,
         "tools": [{"name": "f", "description": "send", "input_schema": ENUM}]}, MESSAGE),
    # A template writes keys out too: a property's name is free text.
    "chat: a property name": (
        CHAT, {"model": "m", "messages": USER, "tools": [chat_tool(NAMED)]}, CHAT_ANSWER),
    "chat: a property name of a legacy function": (
        CHAT, {"model": "m", "messages": USER,
               "functions": [{"name": "f", "parameters": NAMED}]}, CHAT_ANSWER),
    "responses: a property name": (
        "/v1/responses",
        {"model": "m", "input": "hi",
         "tools": [{"type": "function", "name": "f", "parameters": NAMED}]}, RESPONSE),
    "responses: a property name of the text format": (
        "/v1/responses",
        {"model": "m", "input": "hi",
         "text": {"format": {"type": "json_schema", "name": "o", "schema": NAMED}}}, RESPONSE),
    "messages: a property name": (
        "/v1/messages",
        {"model": "m", "max_tokens": 8, "messages": USER,
         "tools": [{"name": "f", "input_schema": NAMED}]}, MESSAGE),
    "messages: a property name of the output format": (
        "/v1/messages",
        {"model": "m", "max_tokens": 8, "messages": USER,
         "output_config": {"format": {"type": "json_schema", "schema": NAMED}}}, MESSAGE),
    # A definition is written out whole (vLLM keeps a tool's extra fields), so
    # a field the proxy has not heard of is read as well, its key and its value.
    "chat: a function's field not heard of": (
        CHAT, {"model": "m", "messages": USER,
               "tools": [{"type": "function",
                          "function": {"name": "f", "summary": f"mail {EMAIL}"}}]},
        CHAT_ANSWER),
    "chat: a tool's field not heard of, beside its function": (
        CHAT, {"model": "m", "messages": USER,
               "tools": [{"type": "function", "function": {"name": "f"},
                          "notes": [{"text": EMAIL}]}]}, CHAT_ANSWER),
    "chat: a document's key": (
        CHAT, {"model": "m", "messages": USER,
               "documents": [{"title": "t", f"from {EMAIL}": "text"}]}, CHAT_ANSWER),
    "responses: a function's field not heard of": (
        "/v1/responses",
        {"model": "m", "input": "hi",
         "tools": [{"type": "function", "name": "f", "summary": f"mail {EMAIL}"}]}, RESPONSE),
    "responses: a tool of a type not heard of": (
        "/v1/responses",
        {"model": "m", "input": "hi",
         "tools": [{"type": "x_tool", "name": "f", "guide": {"text": EMAIL}}]}, RESPONSE),
    "messages: a key of an assistant's tool input": (
        "/v1/messages",
        {"model": "m", "max_tokens": 8,
         "messages": [*USER, {"role": "assistant", "content": [
             {"type": "tool_use", "id": "t", "name": "f", "input": {f"to {EMAIL}": 1}}]}]},
        MESSAGE),
    # vLLM merges its template variables over tools and documents, and renders them.
    "chat: a tool given as a template variable": (
        CHAT, {"model": "m", "messages": USER, "chat_template_kwargs": {
            "tools": [{"type": "function", "function": {"name": "f",
                                                        "description": f"mail {EMAIL}"}}]}},
        CHAT_ANSWER),
    "responses: a template variable": (
        "/v1/responses",
        {"model": "m", "input": "hi", "chat_template_kwargs": {"date_string": EMAIL}}, RESPONSE),
    "messages: a template variable's name": (
        "/v1/messages",
        {"model": "m", "max_tokens": 8, "messages": USER,
         "chat_template_kwargs": {f"to {EMAIL}": True}}, MESSAGE),
    # A name is text the template writes out: a speaker's, a call's, a tool's.
    "chat: a message's name": (
        CHAT, {"model": "m", "messages": [{"role": "user", "name": f"to {EMAIL}",
                                           "content": "hi"}]}, CHAT_ANSWER),
    "chat: an assistant's tool call name": (
        CHAT, {"model": "m", "messages": [*USER, {"role": "assistant", "tool_calls": [
            {"id": "t", "type": "function",
             "function": {"name": f"mail {EMAIL}", "arguments": "{}"}}]}]}, CHAT_ANSWER),
    "chat: a legacy function_call name": (
        CHAT, {"model": "m", "messages": [*USER, {"role": "assistant", "function_call": {
            "name": f"mail {EMAIL}", "arguments": "{}"}}]}, CHAT_ANSWER),
    "chat: a response_format schema": (
        CHAT, {"model": "m", "messages": USER, "response_format": {
            "type": "json_schema", "json_schema": {"name": "s", "schema": NAMED}}}, CHAT_ANSWER),
    "chat: a tool_choice": (
        CHAT, {"model": "m", "messages": USER,
               "tool_choice": {"type": "function", "function": {"name": f"to {EMAIL}"}}},
        CHAT_ANSWER),
    "chat: a custom tool call's name and input": (
        CHAT, {"model": "m", "messages": [*USER, {"role": "assistant", "tool_calls": [
            {"id": "t", "type": "custom",
             "custom": {"name": "f", "input": f"mail {EMAIL}"}}]}]}, CHAT_ANSWER),
    "responses: a tool_choice": (
        "/v1/responses", {"model": "m", "input": "hi",
                          "tool_choice": {"type": "function", "name": f"to {EMAIL}"}}, RESPONSE),
    "responses: a text format's name": (
        "/v1/responses", {"model": "m", "input": "hi", "text": {"format": {
            "type": "json_schema", "name": f"to {EMAIL}", "schema": {"type": "object"}}}},
        RESPONSE),
    "messages: a tool_choice": (
        "/v1/messages", {"model": "m", "max_tokens": 8, "messages": USER,
                         "tool_choice": {"type": "tool", "name": f"to {EMAIL}"}}, MESSAGE),
    "responses: a function_call item's name": (
        "/v1/responses",
        {"model": "m", "input": [{"type": "function_call", "call_id": "c",
                                  "name": f"mail {EMAIL}", "arguments": "{}"}]}, RESPONSE),
    "responses: the name of an item of a type not heard of": (
        "/v1/responses",
        {"model": "m", "input": [{"type": "x_call", "name": f"mail {EMAIL}"}]}, RESPONSE),
    "messages: a tool_use block's name": (
        "/v1/messages",
        {"model": "m", "max_tokens": 8,
         "messages": [*USER, {"role": "assistant", "content": [
             {"type": "tool_use", "id": "t", "name": f"mail {EMAIL}", "input": {}}]}]},
        MESSAGE),
    "messages: a block not heard of, its name": (
        "/v1/messages",
        {"model": "m", "max_tokens": 8,
         "messages": [*USER, {"role": "assistant", "content": [
             {"type": "mcp_tool_use", "id": "t", "name": f"mail {EMAIL}",
              "server_name": "s", "input": {}}]}]}, MESSAGE),
    "messages: a block not heard of, a key of its input": (
        "/v1/messages",
        {"model": "m", "max_tokens": 8,
         "messages": [*USER, {"role": "assistant", "content": [
             {"type": "mcp_tool_use", "id": "t", "name": "f", "server_name": "s",
              "input": {"type": "image", f"to {EMAIL}": 1}}]}]}, MESSAGE),
    "responses: a hosted tool's setting": (
        "/v1/responses",
        {"model": "m", "input": "hi",
         "tools": [{"type": "mcp", "server_label": "s", "server_url": "https://example.com",
                    "allowed_tools": [f"mail {EMAIL}"]}]}, RESPONSE),
    "responses: vLLM's previous_input_messages": (
        "/v1/responses",
        {"model": "m", "input": "hi", "previous_input_messages": [
            {"author": {"role": "user"}, "content": [{"type": "text", "text": EMAIL}]}]},
        RESPONSE),
    "messages: a tool's field not heard of": (
        "/v1/messages",
        {"model": "m", "max_tokens": 8, "messages": USER,
         "tools": [{"name": "f", "input_schema": {"type": "object"},
                    "usage_notes": f"mail {EMAIL}"}]}, MESSAGE),
    # A template renders more of a message than the API defines (gpt-oss's
    # `message.thinking`), and a later version adds fields: every string of the
    # conversation is read, whatever its key, but identifiers and inline media.
    "chat: a message's field not heard of": (
        CHAT, {"model": "m", "messages": [*USER, {"role": "assistant", "content": "",
                                                  "thinking": f"mail {EMAIL}"}]}, CHAT_ANSWER),
    "chat: a content part's field not heard of": (
        CHAT, {"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "hi", "note": f"mail {EMAIL}"}]}]}, CHAT_ANSWER),
    "chat: a tool call's and its function's fields not heard of": (
        CHAT, {"model": "m", "messages": [*USER, {"role": "assistant", "tool_calls": [
            {"id": "t", "type": "function", "note": EMAIL,
             "function": {"name": "f", "arguments": "{}", "x": EMAIL}}]}]}, CHAT_ANSWER),
    "chat: a tool message's field not heard of": (
        CHAT, {"model": "m", "messages": [*USER, {"role": "tool", "tool_call_id": "t",
                                                  "content": "ok", "note": EMAIL}]}, CHAT_ANSWER),
    "chat: content of no shape the API has, in a list": (
        CHAT, {"model": "m", "messages": [{"role": "user", "content": [[EMAIL]]}]},
        CHAT_ANSWER),
    "responses: a message item's field not heard of": (
        "/v1/responses", {"model": "m", "input": [
            {"type": "message", "role": "user", "content": "hi", "note": EMAIL}]}, RESPONSE),
    "responses: an easy message's field not heard of": (
        "/v1/responses", {"model": "m", "input": [
            {"role": "user", "content": "hi", "note": EMAIL}]}, RESPONSE),
    "responses: an input part's field not heard of": (
        "/v1/responses", {"model": "m", "input": [{"role": "user", "content": [
            {"type": "input_text", "text": "hi", "note": EMAIL}]}]}, RESPONSE),
    "responses: a function_call item's field not heard of": (
        "/v1/responses", {"model": "m", "input": [
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}",
             "note": EMAIL}]}, RESPONSE),
    "responses: a reasoning summary's field not heard of": (
        "/v1/responses", {"model": "m", "input": [{"type": "reasoning", "id": "r", "summary": [
            {"type": "summary_text", "text": "x", "note": EMAIL}]}]}, RESPONSE),
    "messages: a message's field not heard of": (
        "/v1/messages", {"model": "m", "max_tokens": 8, "messages": [
            {"role": "user", "content": "hi", "note": EMAIL}]}, MESSAGE),
    "messages: a text block's field not heard of": (
        "/v1/messages", {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "hi", "note": EMAIL}]}]}, MESSAGE),
    "messages: a system block's field not heard of": (
        "/v1/messages", {"model": "m", "max_tokens": 8, "messages": USER,
                         "system": [{"type": "text", "text": "hi", "note": EMAIL}]}, MESSAGE),
    "messages: a tool result's field not heard of": (
        "/v1/messages", {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t", "content": "ok", "note": EMAIL}]}]},
        MESSAGE),
    "messages: a thinking block's field not heard of": (
        "/v1/messages", {"model": "m", "max_tokens": 8, "messages": [*USER, {
            "role": "assistant", "content": [{"type": "thinking", "thinking": "x",
                                              "signature": "s", "note": EMAIL}]}]}, MESSAGE),
    # Fields beside the conversation that a model server writes into the prompt.
    "chat: TGI's tool_prompt (written before the tools)": (
        CHAT, {"model": "tgi", "messages": USER, "tools": [chat_tool({"type": "object"})],
               "tool_prompt": f"reply to {EMAIL}"}, CHAT_ANSWER),
    "chat: TGI's guideline (a template input)": (
        CHAT, {"model": "tgi", "messages": USER, "guideline": f"mail {EMAIL}"}, CHAT_ANSWER),
    "chat: OpenRouter's web plugin search_prompt (a system message)": (
        "/api/v1/chat/completions",
        {"model": "openai/gpt-4o", "messages": USER,
         "plugins": [{"id": "web", "search_prompt": f"mail {EMAIL}"}]}, CHAT_ANSWER),
    "chat: Azure On Your Data's role_information (the system message)": (
        "/openai/deployments/gpt4o/chat/completions?api-version=2024-02-01",
        {"messages": USER, "data_sources": [{"type": "azure_search", "parameters": {
            "endpoint": "https://s.search.windows.net", "index_name": "i",
            "role_information": f"You answer {EMAIL}"}}]}, CHAT_ANSWER),
    "messages: the beta output_format's schema": (
        "/v1/messages",
        {"model": "m", "max_tokens": 8, "messages": USER,
         "output_format": {"type": "json_schema", "schema": DEEP}}, MESSAGE),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
async def test_an_email_in_a_tool_schema_reaches_the_model_redacted(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    path, body, answer = CASES[case]
    scripted.answer = answer
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, got = await post_json(f"{proxy.url}{path}", body)
    assert status == 200, got
    (sent,) = scripted.bodies
    assert EMAIL.encode() not in sent


def tool_call(arguments: str) -> dict[str, Any]:
    call = {"id": "t1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    return {"role": "assistant", "content": None, "tool_calls": [call]}


# Arguments as sent, each spelling a denylisted phrase once the server parses them.
ESCAPED_PHRASES = {
    "an escape": '{"say": "open \\u0073esame"}',
    # Written out as UTF-8, not escaped again: s\u00e9same is sésame to the model.
    "a character past ascii escaped": '{"say": "ouvre s\\u00e9same"}',
    "a character past ascii as itself, beside an escape": '{"say": "ouvre sésame\\n"}',
}


@pytest.mark.parametrize("arguments", ESCAPED_PHRASES.values(), ids=ESCAPED_PHRASES.keys())
async def test_a_json_escape_in_tool_call_arguments_does_not_hide_a_denylisted_phrase(
    start_proxy: ProxyFactory, scripted: Scripted, arguments: str
) -> None:
    """``open \\u0073esame`` is ``open sesame`` once the server parses the arguments."""
    scripted.answer = CHAT_ANSWER
    words = {"words": ["open sesame", "ouvre sésame"]}
    denylist = {"filters": [{"name": "denylist", "type": "denylist", "params": words}]}
    body = {"model": "m", "messages": [*USER, tool_call(arguments)]}
    proxy = await start_proxy(denylist, upstream=scripted.url)
    status, _, got = await post_json(f"{proxy.url}{CHAT}", body)
    assert status == 400, got
    assert orjson.loads(got)["error"]["code"] == "content_filter"
    assert scripted.bodies == []


async def test_a_json_escape_in_tool_call_arguments_does_not_hide_an_email(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    scripted.answer = CHAT_ANSWER
    escaped = EMAIL.replace("@", "\\u0040")
    body = {"model": "m", "messages": [*USER, tool_call(f'{{"to": "{escaped}"}}')]}
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, got = await post_json(f"{proxy.url}{CHAT}", body)
    assert status == 200, got
    (sent,) = scripted.json_bodies()
    arguments = sent["messages"][1]["tool_calls"][0]["function"]["arguments"]
    assert EMAIL not in str(orjson.loads(arguments))  # as the model server reads it


async def test_a_lone_surrogate_in_arguments_stays_an_escape_and_the_rest_is_written_out(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """UTF-8 cannot hold a lone surrogate: it goes on as the escape it came as."""
    scripted.answer = CHAT_ANSWER
    body = {"model": "m", "messages": [*USER, tool_call('{"say": "\\ud800 h\\u0069"}')]}
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, got = await post_json(f"{proxy.url}{CHAT}", body)
    assert status == 200, got
    (sent,) = scripted.json_bodies()
    assert sent["messages"][1]["tool_calls"][0]["function"]["arguments"] == '{"say": "\\ud800 hi"}'


async def test_a_json_escape_in_answered_tool_call_arguments_does_not_hide_an_email(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """The client parses the arguments too: what it reads must have been judged."""
    escaped = EMAIL.replace("@", "\\u0040")
    message = tool_call(f'{{"to": "{escaped}"}}')
    scripted.answer = {**CHAT_ANSWER, "choices": [{"index": 0, "message": message,
                                                   "finish_reason": "tool_calls"}]}  # fmt: skip
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, got = await post_json(f"{proxy.url}{CHAT}", {"model": "m", "messages": USER})
    assert status == 200, got
    arguments = orjson.loads(got)["choices"][0]["message"]["tool_calls"][0]["function"]
    assert EMAIL not in str(orjson.loads(arguments["arguments"]))


async def test_a_json_escape_in_responses_function_call_arguments_is_judged(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    scripted.answer = RESPONSE
    call = {"type": "function_call", "call_id": "c1", "name": "f",
            "arguments": '{"say": "open \\u0073esame"}'}  # fmt: skip
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, got = await post_json(f"{proxy.url}/v1/responses", {"model": "m", "input": [call]})
    assert status == 400, got
    assert scripted.bodies == []


async def test_a_redacted_property_name_is_renamed_in_place_and_keeps_its_schema(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """The key is renamed where it stood, its value (redacted too) kept; a name
    the redaction makes equal to another's is told apart, so no property is lost."""
    scripted.answer = CHAT_ANSWER
    properties = {
        "first": {"type": "string"},
        f"to {EMAIL}": {"type": "string", "description": f"mail {EMAIL}"},
        "to [EMAIL]": {"type": "integer"},
        f"to {EMAIL.replace('jane', 'john')}": {"type": "boolean"},
        "last": {"type": "string"},
    }
    schema = {"type": "object", "properties": properties, "required": [f"to {EMAIL}"]}
    body = {"model": "m", "messages": USER, "tools": [chat_tool(schema)]}
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, got = await post_json(f"{proxy.url}{CHAT}", body)
    assert status == 200, got
    (sent,) = scripted.bodies
    parameters = orjson.loads(sent)["tools"][0]["function"]["parameters"]
    assert parameters["properties"] == {
        "first": {"type": "string"},
        "to [EMAIL] (2)": {"type": "string", "description": "mail [EMAIL]"},
        "to [EMAIL]": {"type": "integer"},
        "to [EMAIL] (3)": {"type": "boolean"},
        "last": {"type": "string"},
    }
    assert list(parameters["properties"]) == [
        "first",
        "to [EMAIL] (2)",
        "to [EMAIL]",
        "to [EMAIL] (3)",
        "last",
    ]
    assert parameters["required"] == ["to [EMAIL]"]


async def test_a_string_under_a_redacted_key_is_redacted_and_the_old_key_does_not_come_back(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """A value is written back before its key is renamed: the other order would
    write the redacted value under the old name, and the name would reach the model."""
    scripted.answer = CHAT_ANSWER
    document = {f"from {EMAIL}": f"reply to {EMAIL}"}
    body = {"model": "m", "messages": USER, "documents": [document]}
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, got = await post_json(f"{proxy.url}{CHAT}", body)
    assert status == 200, got
    (sent,) = scripted.bodies
    assert orjson.loads(sent)["documents"] == [{"from [EMAIL]": "reply to [EMAIL]"}]


async def test_a_denylisted_phrase_in_a_property_name_blocks_the_request(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    scripted.answer = CHAT_ANSWER
    schema = {"type": "object", "properties": {"say open sesame": {"type": "string"}}}
    body = {"model": "m", "messages": USER, "tools": [chat_tool(schema)]}
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, got = await post_json(f"{proxy.url}{CHAT}", body)
    assert status == 400, got
    assert scripted.bodies == []


async def test_inline_media_in_the_conversation_is_not_judged(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    # Words the denylist refuses, where no text is: the request goes on as it came.
    denied = "open sesame"
    scripted.answer = CHAT_ANSWER
    messages = [
        {"role": "user", "content": [
            {"type": "text", "text": "hi"},
            # base64 of the words: what TGI would write out is not them
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,b3BlbiBzZXNhbWU="}},
            {"type": "input_audio", "input_audio": {"data": denied, "format": "wav"}},
            {"type": "file", "file": {"file_data": denied, "file_id": denied}},
        ]},
    ]  # fmt: skip
    proxy = await start_proxy(
        {"filters": [{"name": "d", "type": "denylist", "params": {"words": [denied]}}],
         "uninspected": "allow"}, upstream=scripted.url)  # fmt: skip
    status, _, got = await post_json(f"{proxy.url}{CHAT}", {"model": "m", "messages": messages})
    assert status == 200, got
    (sent,) = scripted.json_bodies()
    assert sent["messages"] == messages


DENIED = "open sesame"
CALL = {"type": "function", "function": {"name": "f", "arguments": "{}"}}

# (path, body): words the denylist refuses in an identifier of the conversation.
# Chat templates write ids out as they are (Kimi K2's: ``<|tool_call_begin|>{{
# id }}`` and ``## Return of {{ tool_call_id }}``), and vLLM turns a Responses
# call's call_id and a Messages tool_use's id into those of a chat message.
IDENTIFIERS: dict[str, tuple[str, dict[str, Any]]] = {
    "chat: a tool call's id": (CHAT, {"model": "m", "messages": [
        *USER, {"role": "assistant", "content": None, "tool_calls": [{"id": DENIED, **CALL}]}]}),
    "chat: a tool message's tool_call_id": (CHAT, {"model": "m", "messages": [
        *USER, {"role": "tool", "tool_call_id": DENIED, "content": "ok"}]}),
    "chat: a message's id not heard of": (CHAT, {"model": "m", "messages": [
        {"role": "user", "content": "hi", "id": DENIED}]}),
    "responses: a function_call's call_id": ("/v1/responses", {"model": "m", "input": [
        {"type": "function_call", "call_id": DENIED, "name": "f", "arguments": "{}"}]}),
    "responses: a function_call's id": ("/v1/responses", {"model": "m", "input": [
        {"type": "function_call", "id": DENIED, "call_id": "c", "name": "f",
         "arguments": "{}"}]}),
    "responses: a function_call_output's call_id": ("/v1/responses", {"model": "m", "input": [
        {"type": "function_call_output", "call_id": DENIED, "output": "ok"}]}),
    "responses: an MCP approval's approval_request_id": ("/v1/responses", {"model": "m", "input": [
        {"type": "mcp_approval_response", "approval_request_id": DENIED, "approve": True}]}),
    "responses: an item of a type not heard of": ("/v1/responses", {"model": "m", "input": [
        {"type": "future_call", "id": DENIED}]}),
    "messages: a tool_use's id": ("/v1/messages", {"model": "m", "max_tokens": 8, "messages": [
        *USER, {"role": "assistant", "content": [
            {"type": "tool_use", "id": DENIED, "name": "f", "input": {}}]}]}),
    "messages: a tool_result's tool_use_id": ("/v1/messages", {"model": "m", "max_tokens": 8,
        "messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": DENIED, "content": "ok"}]}]}),
    "messages: a block of a type not heard of": ("/v1/messages", {"model": "m",
        "max_tokens": 8, "messages": [{"role": "user", "content": [
            {"type": "future_block", "id": DENIED}]}]}),
}  # fmt: skip

# (path, body): the words in a place the reading does not take as text, that a
# model server writes out all the same.
WRITTEN_OUT: dict[str, tuple[str, dict[str, Any]]] = {
    # TGI takes any tool call type, and writes a message of tool calls out as JSON.
    "chat: a tool call's type not defined (TGI)": (CHAT, {"model": "m", "messages": [
        *USER, {"role": "assistant", "tool_calls": [
            {"id": "c", "type": DENIED, "function": {"name": "f", "arguments": "{}"}}]}]}),
    "chat: a message's status not defined": (CHAT, {"model": "m", "messages": [
        {"role": "user", "content": "hi", "status": DENIED}]}),
    "responses: an item's type not defined": ("/v1/responses", {"model": "m", "input": [
        {"type": DENIED, "note": "x"}]}),
    "messages: a block's type not defined": ("/v1/messages", {"model": "m", "max_tokens": 8,
        "messages": [{"role": "user", "content": [{"type": DENIED}]}]}),
    # TGI takes a call's arguments as "parameters" too.
    "chat: a key of a tool call's parameters (TGI)": (CHAT, {"model": "m", "messages": [
        *USER, {"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function",
             "function": {"name": "f", "parameters": {DENIED: 1}}}]}]}),
    "chat: a tool call's parameters as JSON, escaped (TGI)": (CHAT, {"model": "m", "messages": [
        *USER, {"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function",
             "function": {"name": "f", "parameters": '{"a": "open \\u0073esame"}'}}]}]}),
    # vLLM keeps a developer message's own tools; DeepSeek V3.2's encoder writes them out.
    "chat: a property of a developer message's own tool": (CHAT, {"model": "m", "messages": [
        {"role": "developer", "content": "hi", "tools": [chat_tool(
            {"type": "object", "properties": {DENIED: {"type": "string"}}})]}]}),
    "chat: a type in a developer message's own tool's schema": (CHAT, {"model": "m",
        "messages": [{"role": "developer", "content": "hi", "tools": [chat_tool(
            {"type": "object", "properties": {"a": {"type": DENIED}}})]}]}),
    # TGI gives a model that reads no images the URL as text: "![](url)".
    "chat: an image's URL": (CHAT, {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"https://example.com/{DENIED}"}}]}]}),
    "chat: an image's data URL, not base64": (CHAT, {"model": "m", "messages": [
        {"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": f"data:{DENIED}"}}]}]}),
    "chat: an image's data URL with more in its header": (CHAT, {"model": "m", "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {
            "url": f"data:image/png;note={DENIED};base64,AAAA"}}]}]}),
    "chat: an image's data URL, a letter past ASCII in its type": (CHAT, {"model": "m",
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
            "url": "data:text/open\u3164sesame;base64,AA"}}]}]}),  # a filler the denylist spaces
    "chat: a key not heard of in a tool call (templates write calls out as JSON)": (CHAT, {
        "model": "m", "messages": [*USER, {"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", DENIED: {"x": 1},
             "function": {"name": "f", "arguments": "{}"}}]}]}),
    "chat: a key not heard of in a tool call's function": (CHAT, {"model": "m", "messages": [
        *USER, {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
            "function": {"name": "f", "arguments": "{}", DENIED: 1}}]}]}),
    "responses: an input image's URL (LiteLLM makes it a chat image)": ("/v1/responses", {
        "model": "m", "input": [{"role": "user", "content": [
            {"type": "input_image", "image_url": f"https://example.com/{DENIED}"}]}]}),
    "responses: an input file's URL": ("/v1/responses", {"model": "m", "input": [
        {"role": "user", "content": [
            {"type": "input_file", "file_url": f"https://example.com/{DENIED}"}]}]}),
    "responses: an image in a function_call_output": ("/v1/responses", {"model": "m",
        "input": [{"type": "function_call_output", "call_id": "c", "output": [
            {"type": "input_image", "image_url": f"https://example.com/{DENIED}"}]}]}),
    "embeddings: vLLM's chat_template for messages": ("/v1/embeddings", {"model": "m",
        "input": "hi", "messages": [{"role": "user", "content": "hi"}],
        "chat_template": f"{DENIED} {{{{ messages }}}}"}),
    "chat: an image's URL, content given as one part": (CHAT, {"model": "m", "messages": [
        {"role": "user", "content": {"type": "image_url",
                                     "image_url": {"url": f"https://example.com/{DENIED}"}}}]}),
    "responses: an input image's URL, content given as one part": ("/v1/responses", {
        "model": "m", "input": [{"role": "user", "content": {
            "type": "input_image", "image_url": f"https://example.com/{DENIED}"}}]}),
    "chat: a key not heard of in a custom tool call": (CHAT, {"model": "m", "messages": [
        *USER, {"role": "assistant", "tool_calls": [{"id": "c", "type": "custom",
            "custom": {"name": "n", "input": "i", DENIED: 1}}]}]}),
    "chat: a key not heard of in a legacy function_call": (CHAT, {"model": "m", "messages": [
        *USER, {"role": "assistant", "function_call": {"name": "f", "arguments": "{}",
                                                       DENIED: 1}}]}),
    "chat: a key in a tool call's type given as an object": (CHAT, {"model": "m", "messages": [
        *USER, {"role": "assistant", "tool_calls": [{"id": "c", "type": {DENIED: 1},
            "function": {"name": "f", "arguments": "{}"}}]}]}),
    "embeddings: vLLM's messages alone": ("/v1/embeddings", {"model": "m",
        "messages": [{"role": "user", "content": DENIED}]}),
    "chat: a file's name": (CHAT, {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "file", "file": {"filename": DENIED, "file_data": "eA=="}}]}]}),
    # llama.cpp tokenizes strings in nested lists; vLLM embeds chat messages.
    "embeddings: a string in a nested list": ("/v1/embeddings", {"model": "m",
        "input": [[1, DENIED]]}),
    "embeddings: vLLM's messages": ("/v1/embeddings", {"model": "m", "input": "hi",
        "messages": [{"role": "user", "content": DENIED}]}),
}  # fmt: skip


SERVERS_WRITE_OUT: dict[str, tuple[str, dict[str, Any]]] = {**IDENTIFIERS, **WRITTEN_OUT}


@pytest.mark.parametrize("case", SERVERS_WRITE_OUT)
async def test_a_string_a_server_writes_out_is_judged(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    path, body = SERVERS_WRITE_OUT[case]
    proxy = await start_proxy(
        {"filters": [{"name": "d", "type": "denylist", "params": {"words": [DENIED]}}]},
        upstream=scripted.url,
    )
    status, _, got = await post_json(f"{proxy.url}{path}", body)
    assert status == 400, got
    assert scripted.bodies == []


def calling(kind: str) -> dict[str, Any]:
    call = {"id": "c", "type": kind, "function": {"name": "f", "arguments": "{}"}}
    return {"model": "m", "messages": [*USER, {"role": "assistant", "tool_calls": [call]}]}


@pytest.mark.parametrize(("kind", "status"), [("unrestricted", 400), ("function", 200)])
async def test_a_tool_call_s_type_is_judged_unless_a_call_s_own(
    start_proxy: ProxyFactory, scripted: Scripted, kind: str, status: int
) -> None:
    # A kind the APIs define, but not a call's (TGI writes any type out as it came).
    scripted.answer = CHAT_ANSWER
    proxy = await start_proxy(
        {"filters": [{"name": "d", "type": "denylist", "params": {"words": [kind]}}]},
        upstream=scripted.url,
    )
    got = await post_json(f"{proxy.url}{CHAT}", calling(kind))
    assert got[0] == status, got
    assert len(scripted.bodies) == (status == 200)


# A data URL's header is text (a type, parameters: TGI writes the URL out); its
# base64 data is not, whatever it spells, so an image is never rewritten.
DATA_URLS = {
    "a parameter of the header": (f"data:image/png;name={EMAIL};base64,QUJD",
                                  "data:image/png;name=[EMAIL];base64,QUJD"),
    "a type in capitals, data that spells a number": (
        "data:image/PNG;base64,QUJD/+12025550123/QUJD",
        "data:image/PNG;base64,QUJD/+12025550123/QUJD"),
    "data that is not base64": (f"data:image/png;base64,{EMAIL}",
                                "data:image/png;base64,[EMAIL]"),
}  # fmt: skip


@pytest.mark.parametrize("case", DATA_URLS)
async def test_a_data_url_s_header_is_judged_and_its_base64_is_not(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    url, sent_url = DATA_URLS[case]
    scripted.answer = CHAT_ANSWER
    part = {"type": "image_url", "image_url": {"url": url}}
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    body = {"model": "m", "messages": [{"role": "user", "content": [part]}]}
    status, _, got = await post_json(f"{proxy.url}{CHAT}", body)
    assert status == 200, got
    (sent,) = scripted.json_bodies()
    assert sent["messages"][0]["content"][0]["image_url"]["url"] == sent_url


@pytest.mark.parametrize(
    "body",
    [{"model": "m", "input": "hi", "messages": None},  # none
     {"model": "m", "messages": [{"role": "user", "content": "hi"}]}],  # vLLM's chat form
    ids=["messages of null", "messages alone"],
)  # fmt: skip
async def test_embeddings_of_input_or_of_messages_are_served(
    start_proxy: ProxyFactory, scripted: Scripted, body: dict[str, Any]
) -> None:
    scripted.answer = {"object": "list", "data": [], "model": "m"}
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, got = await post_json(f"{proxy.url}/v1/embeddings", body)
    assert status == 200, got
    assert scripted.json_bodies() == [body]
