"""OpenAI messages -> (system prompt, prompt): ``clinvk_core.openai.prompt.build_conversation``."""

from __future__ import annotations

from typing import Any

import pytest

from clinvk_core.errors import InvalidRequest
from clinvk_core.openai.prompt import Conversation, build_conversation
from clinvk_core.openai.schema import ChatMessage


def conversation(*messages: dict[str, Any]) -> Conversation:
    return build_conversation([ChatMessage.model_validate(message) for message in messages])


def invalid(*messages: dict[str, Any]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        conversation(*messages)
    assert caught.value.status == 400
    assert caught.value.type == "invalid_request_error"
    return caught.value


def test_single_user_message_is_the_prompt_unchanged() -> None:
    text = "  What is 2+2?\n\nAnswer briefly.  "
    assert conversation({"role": "user", "content": text}) == Conversation(system_prompt=None, prompt=text)


def test_system_and_developer_messages_become_the_system_prompt() -> None:
    result = conversation(
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": "hello"},
    )
    assert result.prompt == "hello"
    assert result.system_prompt is not None
    assert result.system_prompt.index("You are terse.") < result.system_prompt.index("Answer in French.")
    assert result.system_prompt == "You are terse.\n\nAnswer in French."


def test_system_message_after_the_user_still_counts() -> None:
    result = conversation({"role": "user", "content": "hi"}, {"role": "system", "content": "Be brief."})
    assert result == Conversation("Be brief.", "hi")


def test_empty_system_messages_give_no_system_prompt() -> None:
    assert conversation({"role": "system", "content": ""}, {"role": "user", "content": "hi"}).system_prompt is None


def test_multi_turn_becomes_a_delimited_transcript_ending_with_the_request() -> None:
    result = conversation(
        {"role": "system", "content": "SYS"},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "second question"},
        {"role": "assistant", "content": "second answer"},
        {"role": "user", "content": "the latest request"},
    )
    prompt = result.prompt
    assert result.system_prompt == "SYS"
    assert "SYS" not in prompt
    turns = ["first question", "first answer", "second question", "second answer"]
    positions = [prompt.index(turn) for turn in turns]
    assert positions == sorted(positions)
    assert prompt.endswith("the latest request")
    assert prompt.count("the latest request") == 1
    # Each earlier turn is delimited and labelled with its speaker.
    assert "<user>\nfirst question\n</user>" in prompt
    assert "<assistant>\nfirst answer\n</assistant>" in prompt
    assert prompt.index("</assistant>", prompt.index("second answer")) < prompt.index("the latest request")


def test_tool_turns_are_labelled_as_tool_results() -> None:
    prompt = conversation(
        {"role": "user", "content": "q"},
        {"role": "tool", "content": "42", "tool_call_id": "call_1"},
        {"role": "user", "content": "and now?"},
    ).prompt
    assert "<tool_result>\n42\n</tool_result>" in prompt
    assert prompt.endswith("and now?")


def test_text_parts_are_joined() -> None:
    result = conversation(
        {"role": "user", "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": "part two"}]}
    )
    assert result.prompt == "part one\npart two"


def test_non_text_part_is_a_helpful_400() -> None:
    error = invalid(
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        }
    )
    assert "image_url" in error.message
    assert "text" in error.message
    assert "messages[0].content[1]" in error.message
    assert error.param == "messages[0].content"


def test_text_part_without_text_is_a_400() -> None:
    assert invalid({"role": "user", "content": [{"type": "text"}]}).param == "messages[0].content"


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "system", "content": "only a system prompt"}],
        [{"role": "assistant", "content": "an answer"}],
        [{"role": "developer", "content": "d"}, {"role": "assistant", "content": "a"}],
    ],
)
def test_no_user_message_is_a_400(messages: list[dict[str, Any]]) -> None:
    error = invalid(*messages)
    assert error.param == "messages"
    assert "user" in error.message


def test_null_content_on_user_is_a_400() -> None:
    error = invalid({"role": "system", "content": "s"}, {"role": "user", "content": None})
    assert error.param == "messages[1].content"


def test_null_content_on_assistant_is_fine() -> None:
    result = conversation(
        {"role": "user", "content": "call a tool"},
        {"role": "assistant", "content": None},
        {"role": "user", "content": "go on"},
    )
    assert result.prompt.endswith("go on")
    assert "call a tool" in result.prompt


def test_lone_surrogate_becomes_replacement_character() -> None:
    result = conversation({"role": "system", "content": "s\udfff"}, {"role": "user", "content": "a\ud800b"})
    assert result.prompt == "a\ufffdb"
    assert result.system_prompt == "s\ufffd"
    result.prompt.encode("utf-8")  # what the runner does with it: must not raise


def test_valid_astral_characters_are_kept() -> None:
    assert conversation({"role": "user", "content": "rocket 🚀 漢字"}).prompt == "rocket 🚀 漢字"
