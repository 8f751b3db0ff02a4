"""OpenAI chat requests -> the neutral Conversation: ``clinvk_core.openai.translate.to_conversation``."""

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
from clinvk_core.openai.schema import ChatCompletionRequest
from clinvk_core.openai.translate import to_conversation

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather now", "parameters": WEATHER}}


def loader(**limits: Any) -> ImageLoader:
    options: dict[str, Any] = {"max_bytes": 1024, "max_images": 3, "policy": "off", "timeout": 1.0} | limits
    return ImageLoader(**options)


def convert(*messages: dict[str, Any], **fields: Any) -> Conversation:
    body = ChatCompletionRequest.model_validate({"model": "claude", "messages": list(messages), **fields})
    return asyncio.run(to_conversation(body, loader()))


def invalid(*messages: dict[str, Any], **fields: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        convert(*messages, **fields)
    assert caught.value.status == 400
    return caught.value


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def test_system_and_developer_messages_become_the_system_prompt() -> None:
    result = convert(
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
        user("hello"),
        {"role": "system", "content": ""},
    )
    assert result.system == "You are terse.\n\nAnswer in French."
    assert result.turns == (Turn("user", (TextPart("hello"),)),)


def test_no_system_message_gives_no_system_prompt() -> None:
    assert convert(user("hi")).system is None


@pytest.mark.parametrize(
    "messages",
    [[{"role": "system", "content": "s"}], [{"role": "assistant", "content": "a"}]],
)
def test_no_user_message_is_a_400(messages: list[dict[str, Any]]) -> None:
    error = invalid(*messages)
    assert (error.param, "user" in error.message) == ("messages", True)


def test_missing_or_null_content_on_user_is_a_400() -> None:
    assert invalid({"role": "user"}).param == "messages[0].content"
    assert invalid({"role": "system", "content": "s"}, {"role": "user", "content": None}).param == "messages[1].content"


def test_null_content_on_assistant_is_fine() -> None:
    result = convert(user("a"), {"role": "assistant", "content": None}, user("b"))
    assert result.turns[1] == Turn("assistant", ())


def test_unsupported_part_type_is_a_400_naming_the_part() -> None:
    error = invalid({"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]})
    assert "input_audio" in error.message
    assert "messages[0].content[0]" in error.message
    assert error.param == "messages[0].content"


def test_lone_surrogates_and_nul_become_replacement_characters() -> None:
    result = convert({"role": "system", "content": "s\udfff"}, user("a\ud800b\x00"))
    assert result.system == "s\ufffd"
    assert result.turns[0].text == "a\ufffdb\ufffd"


# ---- tools ---------------------------------------------------------------------------------------


def test_tools_become_tool_specs_with_the_schema_unchanged() -> None:
    result = convert(user("q"), tools=[TOOL, {"type": "function", "function": {"name": "now"}}])
    assert result.tools == (ToolSpec("get_weather", "Weather now", WEATHER), ToolSpec("now"))
    assert result.tool_choice == ToolChoice()
    assert result.parallel_tool_calls is True


def test_a_tool_carries_only_text_a_cli_can_take() -> None:
    # JSON may escape a lone surrogate; UTF-8 (and so every CLI's input) cannot hold one.
    lone = "\ud800"
    schema = {"type": "object", "properties": {"city" + lone: {"type": "string", "description": lone}}}
    tool = {"type": "function", "function": {"name": "f", "description": "a" + lone, "parameters": schema}}
    [spec] = convert(user("q"), tools=[tool]).tools
    assert spec.description == "a\ufffd"
    assert spec.parameters["properties"] == {"city\ufffd": {"type": "string", "description": "\ufffd"}}


def test_legacy_functions_are_tools_too() -> None:
    result = convert(user("q"), functions=[TOOL["function"]], function_call={"name": "get_weather"})
    assert result.tools == (ToolSpec("get_weather", "Weather now", WEATHER),)
    assert result.tool_choice == ToolChoice("function", "get_weather")


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", ToolChoice()),
        ("required", ToolChoice("required")),
        ({"type": "function", "function": {"name": "get_weather"}}, ToolChoice("function", "get_weather")),
    ],
)
def test_tool_choice(choice: Any, expected: ToolChoice) -> None:
    assert convert(user("q"), tools=[TOOL], tool_choice=choice).tool_choice == expected


def test_tool_choice_none_offers_no_tool() -> None:
    assert convert(user("q"), tools=[TOOL], tool_choice="none").tools == ()


def test_parallel_tool_calls_false_is_kept() -> None:
    assert convert(user("q"), tools=[TOOL], parallel_tool_calls=False).parallel_tool_calls is False


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools[0].function.name", "name"),
        ({"tools": [{"type": "function", "function": {"name": "x" * 65}}]}, "tools[0].function.name", "64"),
        ({"tools": [TOOL, TOOL]}, "tools", "unique"),
        ({"tools": [TOOL] * 129}, "tools", "128"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]},
         "tools[0].function.parameters", "object"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 12}}}]},
         "tools[0].function.parameters", "JSON Schema"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type", "web_search"),
        ({"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice", "nope"),
        ({"tools": [TOOL], "tool_choice": "sometimes"}, "tool_choice", "auto"),
        ({"tool_choice": "required"}, "tool_choice", "no tool"),
        ({"functions": [TOOL["function"]], "function_call": {"name": "other"}}, "function_call", "other"),
    ],
)  # fmt: skip
def test_bad_tools_are_clear_400s(fields: dict[str, Any], param: str, words: str) -> None:
    error = invalid(user("q"), **fields)
    assert error.param == param
    assert words in error.message


def test_a_tool_round_trip_becomes_call_and_result_parts() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    result = convert(
        user("weather?"),
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "22C"}]},
        tools=[TOOL],
    )
    assert result.turns[1] == Turn("assistant", (ToolCallPart("call_1", "get_weather", '{"city":"Paris"}'),))
    assert result.turns[2] == Turn("user", (ToolResultPart("call_1", "22C", "get_weather"),))


def test_parallel_results_are_one_turn() -> None:
    calls = [
        {"id": f"c{i}", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}} for i in (1, 2)
    ]
    result = convert(
        user("q"),
        {"role": "assistant", "content": "Looking.", "tool_calls": calls},
        {"role": "tool", "tool_call_id": "c1", "content": "a"},
        {"role": "tool", "tool_call_id": "c2", "content": "b"},
    )
    assert result.turns[1].parts[0] == TextPart("Looking.")
    assert [p.call_id for p in result.turns[2].parts if isinstance(p, ToolResultPart)] == ["c1", "c2"]
    assert len(result.turns) == 3


def test_a_result_that_answers_no_call_is_a_400() -> None:
    error = invalid(user("q"), {"role": "tool", "tool_call_id": "call_x", "content": "42"})
    assert error.param == "messages[1].tool_call_id"
    assert "call_x" in error.message
    assert invalid(user("q"), {"role": "tool", "content": "42"}).param == "messages[1].tool_call_id"


def test_legacy_function_messages_answer_the_latest_call_of_that_name() -> None:
    result = convert(
        user("q"),
        {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": "{}"}},
        {"role": "function", "name": "get_weather", "content": "22C"},
    )
    call = result.turns[1].parts[0]
    assert isinstance(call, ToolCallPart)
    assert result.turns[2].parts == (ToolResultPart(call.id, "22C", "get_weather"),)
    error = invalid(user("q"), {"role": "function", "name": "get_weather", "content": "22C"})
    assert error.param == "messages[1].name"


# ---- images --------------------------------------------------------------------------------------


def image_message(url: str) -> dict[str, Any]:
    part = {"type": "image_url", "image_url": {"url": url, "detail": "high"}}
    return {"role": "user", "content": [{"type": "text", "text": "look"}, part]}


def test_a_data_url_image_becomes_an_image_part_with_its_bytes() -> None:
    result = convert(image_message(PNG_URL))
    assert result.turns[0].parts == (TextPart("look"), ImagePart("image/png", PNG))


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("data:image/png;base64,@@@@", "base64"),
        ("data:image/bmp;base64," + base64.b64encode(b"BM").decode(), "image/bmp"),
        ("data:image/png;base64," + base64.b64encode(b"not a png").decode(), "not a"),
        ("data:image/png," + "abc", "base64"),
        ("https://example.com/cat.png", "CLINVK_IMAGE_URLS"),
        ("ftp://example.com/cat.png", "data:"),
        ("data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 2000).decode(), "larger"),
    ],
)
def test_bad_images_are_clear_400s(url: str, words: str) -> None:
    error = invalid(image_message(url))
    assert error.param == "messages[0].content[1].image_url"
    assert words in error.message


def test_too_many_images_is_a_400() -> None:
    content = [{"type": "image_url", "image_url": {"url": PNG_URL}}] * 4
    assert "Too many images" in invalid({"role": "user", "content": content}).message


# ---- output, sampling, reasoning -------------------------------------------------------------------


def test_response_formats() -> None:
    assert convert(user("q"), response_format={"type": "text"}).output is None
    assert convert(user("q"), response_format={"type": "json_object"}).output == OutputFormat(
        {"type": "object"}, "json_object"
    )
    spec = {"name": "weather", "schema": WEATHER, "strict": True}
    output = convert(user("q"), response_format={"type": "json_schema", "json_schema": spec}).output
    assert output == OutputFormat(WEATHER, "weather", True)


@pytest.mark.parametrize(
    ("response_format", "param"),
    [
        ({"type": "xml"}, "response_format.type"),
        ({"type": "json_schema"}, "response_format.json_schema"),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}},
         "response_format.json_schema.schema"),
    ],
)  # fmt: skip
def test_bad_response_formats_are_400s(response_format: dict[str, Any], param: str) -> None:
    assert invalid(user("q"), response_format=response_format).param == param


def test_sampling_and_reasoning() -> None:
    result = convert(user("q"), max_tokens=10, max_completion_tokens=20, temperature=0.2, top_p=0.5,
                     reasoning_effort="high")  # fmt: skip
    assert result.sampling == Sampling(20, 0.2, 0.5)
    assert result.reasoning_effort == "high"


@pytest.mark.parametrize(
    ("fields", "param"),
    [({"max_tokens": 0}, "max_tokens"), ({"temperature": 3}, "temperature"), ({"top_p": -1}, "top_p"),
     ({"reasoning_effort": "extreme"}, "reasoning_effort")],
)  # fmt: skip
def test_out_of_range_settings_are_400s(fields: dict[str, Any], param: str) -> None:
    assert invalid(user("q"), **fields).param == param
