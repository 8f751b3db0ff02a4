"""Anthropic Messages requests -> the neutral Conversation: ``clinvk_core.anthropic.translate.to_conversation``."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from clinvk_core.anthropic.schema import MessagesRequest
from clinvk_core.anthropic.translate import to_conversation
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

from .test_translate import PNG, WEATHER, loader

PNG_B64 = base64.b64encode(PNG).decode()
TOOL = {"name": "get_weather", "description": "Weather now", "input_schema": WEATHER}


def convert(*messages: dict[str, Any], **fields: Any) -> Conversation:
    body = MessagesRequest.model_validate({"model": "claude", "max_tokens": 64, "messages": list(messages), **fields})
    return asyncio.run(to_conversation(body, loader()))


def invalid(*messages: dict[str, Any], **fields: Any) -> str:
    with pytest.raises(InvalidRequest) as caught:
        convert(*messages, **fields)
    assert caught.value.status == 400
    return caught.value.message


def user(*content: Any) -> dict[str, Any]:
    """A user message: one string, or the blocks given."""
    return {"role": "user", "content": content[0] if len(content) == 1 and isinstance(content[0], str) else [*content]}


def assistant(*content: Any) -> dict[str, Any]:
    return {**user(*content), "role": "assistant"}


def text(value: str, **extra: Any) -> dict[str, Any]:
    return {"type": "text", "text": value, **extra}


def image(data: str = PNG_B64, media_type: str = "image/png") -> dict[str, Any]:
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def tool_use(call_id: str = "toolu_1", name: str = "get_weather", arguments: Any = None) -> dict[str, Any]:
    return {
        "type": "tool_use",
        "id": call_id,
        "name": name,
        "input": {"city": "Paris"} if arguments is None else arguments,
    }


def tool_result(call_id: str = "toolu_1", content: Any = "22C", **extra: Any) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": call_id, "content": content, **extra}


# --- the system prompt, text and the last turn ----------------------------------------------------


def test_a_string_is_one_user_turn_and_every_other_field_is_default() -> None:
    result = convert(user("hello"))
    assert result == Conversation(turns=(Turn("user", (TextPart("hello"),)),), sampling=Sampling(64))


def test_system_blocks_and_system_turns_become_the_system_prompt_in_order() -> None:
    result = convert(
        user(text("hi", cache_control={"type": "ephemeral"})),
        {"role": "system", "content": [text("Environment: linux")]},
        {"role": "system", "content": "Be brief."},
        system=[text("x-anthropic-billing-header: cc"), text("You are an agent.", cache_control={"type": "ephemeral"})],
    )
    assert result.system == "x-anthropic-billing-header: cc\n\nYou are an agent.\n\nEnvironment: linux\n\nBe brief."
    assert result.turns == (Turn("user", (TextPart("hi"),)),)


def test_a_string_system_prompt_and_an_empty_one() -> None:
    assert convert(user("hi"), system="Answer in French.").system == "Answer in French."
    assert convert(user("hi"), system="").system is None


def test_earlier_turns_keep_their_roles_and_text_blocks() -> None:
    result = convert(user("one"), assistant(text("two"), text("three")), user(text("four"), text("five")))
    assert result.turns == (
        Turn("user", (TextPart("one"),)),
        Turn("assistant", (TextPart("two"), TextPart("three"))),
        Turn("user", (TextPart("four"), TextPart("five"))),
    )


def test_thinking_of_earlier_turns_is_dropped() -> None:
    thinking = {"type": "thinking", "thinking": "let me see", "signature": "sig"}
    redacted = {"type": "redacted_thinking", "data": "opaque"}
    result = convert(user("q"), assistant(thinking, redacted, text("a")), user("next"))
    assert result.turns[1] == Turn("assistant", (TextPart("a"),))


def test_lone_surrogates_and_nul_become_replacement_characters() -> None:
    result = convert(user("a\ud800b\x00c"), system="s\udfffs")
    assert result.turns[0].parts == (TextPart("a\ufffdb\ufffdc"),)
    assert result.system == "s\ufffds"


# --- tools ----------------------------------------------------------------------------------------


def test_tools_and_a_tool_loop() -> None:
    result = convert(
        user("Weather in Paris?"),
        assistant(text("Let me look."), tool_use()),
        user(tool_result(is_error=True), text("and be quick")),
        tools=[TOOL],
    )
    assert result.tools == (ToolSpec("get_weather", "Weather now", WEATHER),)
    assert result.turns[1].parts == (
        TextPart("Let me look."),
        ToolCallPart("toolu_1", "get_weather", '{"city": "Paris"}'),
    )
    assert result.turns[2].parts == (ToolResultPart("toolu_1", "22C", "get_weather", True), TextPart("and be quick"))


def test_parallel_results_and_results_in_blocks() -> None:
    result = convert(
        user("both"),
        assistant(tool_use("toolu_1"), tool_use("toolu_2", arguments={})),
        user(tool_result("toolu_2", [text("a"), text("b")]), tool_result("toolu_1", None)),
        tools=[TOOL],
    )
    assert result.turns[1].parts[1] == ToolCallPart("toolu_2", "get_weather", "{}")
    assert result.turns[2].parts == (
        ToolResultPart("toolu_2", "a\nb", "get_weather"),
        ToolResultPart("toolu_1", "", "get_weather"),
    )


def test_an_image_in_a_tool_result_joins_the_turn() -> None:
    result = convert(user("look"), assistant(tool_use()), user(tool_result(content=[text("the chart:"), image()])))
    assert result.turns[2].parts == (
        ToolResultPart("toolu_1", "the chart:\n[image]", "get_weather"),
        ImagePart("image/png", PNG),
    )


def test_a_result_must_answer_an_earlier_tool_use() -> None:
    assert "answers no tool_use" in invalid(user("q"), assistant(tool_use("toolu_1")), user(tool_result("toolu_2")))
    assert "answers no tool_use" in invalid(user(tool_result("toolu_1")), assistant(tool_use("toolu_1")), user("x"))
    assert "tool_use_id" in invalid(user("q"), assistant(tool_use()), user({"type": "tool_result", "content": "x"}))


def test_tool_choice() -> None:
    assert convert(user("q"), tools=[TOOL]).tool_choice == ToolChoice("auto")
    assert convert(user("q"), tools=[TOOL], tool_choice={"type": "any"}).tool_choice == ToolChoice("required")
    chosen = convert(user("q"), tools=[TOOL], tool_choice={"type": "tool", "name": "get_weather"})
    assert chosen.tool_choice == ToolChoice("function", "get_weather")
    none = convert(user("q"), tools=[TOOL], tool_choice={"type": "none"})
    assert (none.tools, none.tool_choice) == ((), ToolChoice())
    serial = convert(user("q"), tools=[TOOL], tool_choice={"type": "auto", "disable_parallel_tool_use": True})
    assert serial.parallel_tool_calls is False


def test_deferred_tools_are_offered_once_referenced() -> None:
    deferred = {**TOOL, "name": "cron", "defer_loading": True}
    tools = [TOOL, deferred]
    assert [t.name for t in convert(user("q"), tools=tools).tools] == ["get_weather"]
    search = {"type": "tool_use", "id": "toolu_s", "name": "get_weather", "input": {}}
    found = tool_result("toolu_s", [{"type": "tool_reference", "tool_name": "cron"}])
    result = convert(user("q"), assistant(search), user(found), tools=tools)
    assert [t.name for t in result.tools] == ["get_weather", "cron"]
    assert result.turns[2].parts[0] == ToolResultPart("toolu_s", "[tool cron is now available]", "get_weather")


def test_system_turns_add_and_remove_tools() -> None:
    definition = {**TOOL, "name": "late_tool"}
    changes = [
        {"type": "tool_addition", "tool": {"type": "tool_definition", "definition": definition}},
        {"type": "tool_removal", "tool": {"type": "tool_reference", "name": "get_weather"}},
        {"type": "tool_addition", "tool": {"type": "tool_reference", "name": "cron"}},
        text("Tools changed."),
    ]
    tools = [TOOL, {**TOOL, "name": "cron", "defer_loading": True}]
    result = convert(user("q"), {"role": "system", "content": changes}, tools=tools)
    assert [t.name for t in result.tools] == ["late_tool", "cron"]
    assert result.system == "Tools changed."


@pytest.mark.parametrize(
    ("tools", "needle"),
    [
        ([{"type": "web_search_20250305", "name": "web_search"}], "only custom tools"),
        ([{"name": "no_schema"}], "input_schema"),
        ([TOOL, TOOL], "unique"),
        ([{**TOOL, "name": "bad name"}], "Invalid tool name"),
        ([{**TOOL, "input_schema": {"type": "array"}}], "type 'object'"),
        ([{**TOOL, "input_schema": {"type": "objekt"}}], "not a valid JSON Schema"),
    ],
)
def test_bad_tools(tools: list[dict[str, Any]], needle: str) -> None:
    assert needle in invalid(user("q"), tools=tools)


@pytest.mark.parametrize(
    ("choice", "needle"),
    [({"type": "tool", "name": "other"}, "not one of the offered tools"), ({"type": "always"}, "Invalid tool_choice")],
)
def test_bad_tool_choice(choice: dict[str, Any], needle: str) -> None:
    assert needle in invalid(user("q"), tools=[TOOL], tool_choice=choice)


def test_any_tool_without_tools_is_a_400() -> None:
    assert "no tool is offered" in invalid(user("q"), tool_choice={"type": "any"})


def test_references_and_changes_must_name_tools_of_the_request() -> None:
    found = tool_result("toolu_1", [{"type": "tool_reference", "tool_name": "nope"}])
    assert "does not define" in invalid(user("q"), assistant(tool_use()), user(found), tools=[TOOL])
    change = {"type": "tool_addition", "tool": {"type": "mystery"}}
    assert "tool_definition" in invalid(user("q"), {"role": "system", "content": [change]}, tools=[TOOL])
    bad_definition = {"type": "tool_addition", "tool": {"type": "tool_definition", "definition": {"x": 1}}}
    assert "must be a tool" in invalid(user("q"), {"role": "system", "content": [bad_definition]})


# --- images ---------------------------------------------------------------------------------------


def test_base64_images_in_place() -> None:
    result = convert(user(text("what is"), image(), text("this?")))
    assert result.turns[0].parts == (TextPart("what is"), ImagePart("image/png", PNG), TextPart("this?"))


@pytest.mark.parametrize(
    ("block", "needle"),
    [
        (image(media_type="image/bmp"), "Unsupported image type"),
        (image(data="%%%"), "not valid base64"),
        (image(data=base64.b64encode(b"not a png").decode()), "is not a"),
        ({"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}, "does not fetch"),
        ({"type": "image", "source": {"type": "file", "file_id": "file_1"}}, "must be"),
        ({"type": "image"}, "without a 'source'"),
    ],
)
def test_bad_images(block: dict[str, Any], needle: str) -> None:
    assert needle in invalid(user(block))


def test_images_count_against_the_limit_wherever_they_are() -> None:
    assert "Too many images" in invalid(
        user(image(), image()), assistant(tool_use()), user(tool_result(content=[image(), image()]))
    )


# --- what is not supported, and what the last turn must be ----------------------------------------


@pytest.mark.parametrize(
    ("messages", "needle"),
    [
        ([user({"type": "document", "source": {"type": "text", "data": "x"}})], "'document' are not supported"),
        ([user(tool_use())], "'tool_use' are not supported"),
        ([user("q"), assistant(image()), user("x")], "'image' are not supported"),
        ([user("q"), assistant(tool_result()), user("x")], "'tool_result' are not supported"),
        ([user({"type": "text"})], "without 'text'"),
        ([user("q"), assistant({"type": "tool_use", "id": "t", "name": "n"}), user("x")], "without its 'id'"),
        ([{"role": "system", "content": [image()]}, user("q")], "'image' are not supported"),
        ([user("q"), assistant("prefill")], "last message must be a user message"),
        ([{"role": "system", "content": "only a system turn"}], "last message must be a user message"),
        ([user("q"), {"role": "user", "content": []}], "must not be empty"),
        (
            [user("q"), assistant(tool_use()), user(tool_result(content=[{"type": "search_result", "source": "s"}]))],
            "'search_result' are not supported",
        ),
    ],
)
def test_unsupported_or_misplaced_blocks(messages: list[dict[str, Any]], needle: str) -> None:
    assert needle in invalid(*messages)


def test_system_blocks_other_than_text_are_a_400() -> None:
    assert "system[0]" in invalid(user("q"), system=[image()])


def test_remote_mcp_servers_are_a_400() -> None:
    assert "mcp_servers" in invalid(user("q"), mcp_servers=[{"type": "url", "url": "https://x", "name": "x"}])


# --- sampling, effort and output format -----------------------------------------------------------


def test_sampling_and_effort() -> None:
    result = convert(user("q"), temperature=0.5, top_p=0.9, top_k=40, output_config={"effort": "max"})
    assert result.sampling == Sampling(64, 0.5, 0.9)
    assert result.reasoning_effort == "max"


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": 1.5}, "temperature"),
        ({"top_p": -0.1}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"output_config": {"effort": "extreme"}}, "effort"),
        ({"output_config": {"format": {"type": "xml"}}}, "json_schema"),
        (
            {"output_config": {"format": {"type": "json_schema", "schema": {"type": "objekt"}}}},
            "not a valid JSON Schema",
        ),
    ],
)
def test_bad_sampling_and_output(fields: dict[str, Any], needle: str) -> None:
    assert needle in invalid(user("q"), **fields)


def test_output_format() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    result = convert(user("q"), output_config={"format": {"type": "json_schema", "schema": schema}})
    assert result.output == OutputFormat(schema)  # not OpenAI-strict: codex narrows what it cannot hold
