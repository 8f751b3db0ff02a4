"""A Responses API request -> the neutral Conversation: items to turns, tools, tool choice, format, settings."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from clinvk_core.conversation import (
    Conversation,
    ImagePart,
    OutputFormat,
    Sampling,
    TextPart,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
    ToolSpec,
    Turn,
)
from clinvk_core.errors import InvalidRequest
from clinvk_core.images import ImageLoader
from clinvk_core.openai.responses.items import parse, stored
from clinvk_core.openai.responses.schema import ResponseCreateRequest
from clinvk_core.openai.responses.translate import offered_tools, to_conversation

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8
CITY: dict[str, Any] = {"type": "object", "properties": {"city": {"type": "string"}}}
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather.", "parameters": CITY, "strict": True}
CALL = {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'}


def convert(**fields: Any) -> Conversation:
    body = ResponseCreateRequest.model_validate({"model": "claude"} | fields)
    items = parse(body.input, param="input")
    loader = ImageLoader(max_bytes=1024 * 1024, max_images=4, policy="off", timeout=1)
    return asyncio.run(to_conversation(body, items, offered_tools(body.tools), loader))


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def test_a_string_is_one_user_message() -> None:
    assert convert(input="say pong") == Conversation.of("say pong")


def test_instructions_then_system_and_developer_messages_make_the_system_prompt() -> None:
    conversation = convert(
        instructions="INSTRUCTIONS",
        input=[{"role": "developer", "content": "DEV"}, {"type": "message", "role": "system",
               "content": [{"type": "input_text", "text": "SYS"}]}, user("hi")],
    )  # fmt: skip
    assert conversation.system == "INSTRUCTIONS\n\nDEV\n\nSYS"
    assert conversation.turns == (Turn("user", (TextPart("hi"),)),)


def test_calls_and_their_outputs_become_tool_turns() -> None:
    conversation = convert(
        tools=[WEATHER],
        input=[
            user("weather?"),
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking.",
             "annotations": []}], "id": "msg_1", "status": "completed"},
            CALL | {"id": "fc_1", "status": "completed"},
            CALL | {"call_id": "call_2", "arguments": '{"city": "Rome"}'},
            {"type": "reasoning", "id": "rs_1", "summary": []},  # sent back by clients; dropped
            {"type": "function_call_output", "call_id": "call_1", "output": "22C"},
            {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "25C"}]},
        ],
    )  # fmt: skip
    assert conversation.turns == (
        Turn("user", (TextPart("weather?"),)),
        Turn("assistant", (TextPart("Checking."), ToolCallPart("call_1", "get_weather", '{"city": "Paris"}'),
                           ToolCallPart("call_2", "get_weather", '{"city": "Rome"}'))),
        Turn("user", (ToolResultPart("call_1", "22C", "get_weather"), ToolResultPart("call_2", "25C", "get_weather"))),
    )  # fmt: skip


def test_images_in_user_messages() -> None:
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    parts = [{"type": "input_text", "text": "what is it?"}, {"type": "input_image", "image_url": url, "detail": "low"}]
    conversation = convert(input=[{"role": "user", "content": parts}])
    assert conversation.turns[0].parts == (TextPart("what is it?"), ImagePart("image/png", PNG))


def test_settings_reach_the_conversation() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    conversation = convert(
        input="n?",
        text={"format": {"type": "json_schema", "name": "number", "schema": schema, "strict": True}},
        reasoning={"effort": "high", "summary": "auto"},
        max_output_tokens=300,
        temperature=0.5,
        top_p=0.9,
        parallel_tool_calls=False,
        tools=[WEATHER],
    )
    assert conversation.output == OutputFormat(schema, "number", True)
    assert conversation.reasoning_effort == "high"
    assert conversation.sampling == Sampling(300, 0.5, 0.9)
    assert conversation.parallel_tool_calls is False
    json_object = OutputFormat({"type": "object"}, "json_object")
    assert convert(input="x", text={"format": {"type": "json_object"}}).output == json_object
    assert convert(input="x", text={"format": {"type": "text"}}).output is None


def test_function_tools_and_namespaces_are_offered_and_listed() -> None:
    spawn = {"type": "function", "name": "spawn_agent", "parameters": {"type": "object", "properties": {}}}
    tools = offered_tools([
        WEATHER,
        {"type": "namespace", "name": "multi_agent_v1", "description": "Agents.", "tools": [spawn]},
        {"type": "web_search", "external_web_access": False},  # what the codex CLI sends on every turn: dropped
    ])  # fmt: skip
    assert tools.specs == (
        ToolSpec("get_weather", "The weather.", CITY),
        ToolSpec("spawn_agent", "", {"type": "object", "properties": {}}),
    )
    assert tools.namespaces == {"spawn_agent": "multi_agent_v1"}
    assert [tool["type"] for tool in tools.listed] == ["function", "namespace"]
    assert tools.listed[0] == WEATHER
    assert tools.listed[1]["tools"][0]["name"] == "spawn_agent"


@pytest.mark.parametrize(
    ("choice", "mode", "name", "offered"),
    [
        (None, "auto", None, ["get_weather", "get_time"]),
        ("auto", "auto", None, ["get_weather", "get_time"]),
        ("required", "required", None, ["get_weather", "get_time"]),
        ({"type": "function", "name": "get_time"}, "function", "get_time", ["get_weather", "get_time"]),
        ({"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "get_time"}]},
         "required", None, ["get_time"]),
        ({"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "get_weather"}]},
         "auto", None, ["get_weather"]),
    ],
)  # fmt: skip
def test_tool_choice(choice: Any, mode: str, name: str | None, offered: list[str]) -> None:
    tools = [WEATHER, WEATHER | {"name": "get_time"}]
    conversation = convert(input="x", tools=tools, **({"tool_choice": choice} if choice else {}))
    assert conversation.tool_choice == ToolChoice(mode, name)  # type: ignore[arg-type]
    assert [tool.name for tool in conversation.tools] == offered


def test_tool_choice_none_offers_no_tool() -> None:
    assert convert(input="x", tools=[WEATHER], tool_choice="none").tools == ()


def test_stored_items_have_ids_and_the_shapes_input_items_lists() -> None:
    items = parse(
        [user("hi"), {"role": "assistant", "content": "pong"}, CALL,
         {"type": "function_call_output", "call_id": "call_1", "output": "22C", "id": "fco_mine"}],
        param="input",
    )  # fmt: skip
    message, answer, call, output = (stored(item) for _, item in items)
    assert message["id"].startswith("msg_")
    assert message["content"] == [{"type": "input_text", "text": "hi"}]
    assert answer["content"] == [{"type": "output_text", "text": "pong", "annotations": []}]
    assert (call["id"][:3], call["call_id"], call["status"]) == ("fc_", "call_1", "completed")
    assert output["id"] == "fco_mine"
    # Stored items make the same conversation again: what previous_response_id rebuilds it from.
    again = [stored(item) for _, item in parse([message, answer, call, output], param="previous_response_id")]
    assert convert(input=again, tools=[WEATHER]).turns == convert(input=[message, answer, call, output],
                                                                  tools=[WEATHER]).turns  # fmt: skip
    assert [item["id"] for item in again] == [message["id"], answer["id"], call["id"], "fco_mine"]


def test_a_bad_item_names_its_place_in_the_input() -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse([user("hi"), {"type": "function_call", "name": "f", "arguments": "{}"}], param="input")
    assert caught.value.param == "input[1].call_id"
