"""A Conversation -> the one prompt a CLI reads: ``clinvk_core.transcript.render_prompt``."""

from __future__ import annotations

from clinvk_core.conversation import (
    Conversation,
    ImagePart,
    TextPart,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
    ToolSpec,
    Turn,
)
from clinvk_core.transcript import CONTINUE, render_prompt

PNG = ImagePart("image/png", b"\x89PNG\r\n\x1a\n")


def user(*parts: str | ImagePart) -> Turn:
    return Turn("user", tuple(TextPart(p) if isinstance(p, str) else p for p in parts))


def assistant(text: str) -> Turn:
    return Turn("assistant", (TextPart(text),))


def test_a_lone_user_turn_is_the_prompt_unchanged() -> None:
    text = "  What is 2+2?\n\nAnswer briefly.  "
    assert render_prompt(Conversation((user(text),))) == text


def test_text_parts_of_a_turn_are_joined_by_newlines() -> None:
    assert render_prompt(Conversation((user("part one", "part two"),))) == "part one\npart two"


def test_earlier_turns_become_a_delimited_transcript_ending_with_the_request() -> None:
    turns = (user("first question"), assistant("first answer"), user("second question"),
             assistant("second answer"), user("the latest request"))  # fmt: skip
    prompt = render_prompt(Conversation(turns))
    positions = [prompt.index(t) for t in ("first question", "first answer", "second question", "second answer")]
    assert positions == sorted(positions)
    assert prompt.endswith("Reply to the user's latest message:\n\nthe latest request")
    assert prompt.count("the latest request") == 1
    assert "<user>\nfirst question\n</user>" in prompt
    assert "<assistant>\nfirst answer\n</assistant>" in prompt


def test_tool_calls_and_results_carry_id_name_and_arguments() -> None:
    call = ToolCallPart("call_1", "get_weather", '{"city": "Paris"}')
    turns = (
        user("weather?"),
        Turn("assistant", (TextPart("Let me look."), call)),
        Turn("user", (ToolResultPart("call_1", "22C, sunny", "get_weather"),)),
    )
    prompt = render_prompt(Conversation(turns))
    assert '<tool_call call_id="call_1" name="get_weather">{"city": "Paris"}</tool_call>' in prompt
    assert '<tool_result call_id="call_1" name="get_weather">\n22C, sunny\n</tool_result>' in prompt
    assert prompt.index("Let me look.") < prompt.index("<tool_call")
    assert prompt.endswith(CONTINUE)  # the conversation ends with results: go on from them


def test_a_failed_tool_result_says_so() -> None:
    turns = (
        user("q"),
        Turn("assistant", (ToolCallPart("c", "f", "{}"),)),
        Turn("user", (ToolResultPart("c", "boom", "f", True),)),
    )
    assert '<tool_result call_id="c" name="f" is_error="true">\nboom\n</tool_result>' in render_prompt(
        Conversation(turns)
    )


def test_markup_in_ids_and_names_is_escaped() -> None:
    turns = (user("q"), Turn("assistant", (ToolCallPart('a"><x', "f", "{}"),)), user("go"))
    assert 'call_id="a&quot;&gt;&lt;x"' in render_prompt(Conversation(turns))


def test_images_stand_where_they_were_numbered_in_order() -> None:
    turns = (user("look", PNG), assistant("ok"), user(PNG, "and this"))
    prompt = render_prompt(Conversation(turns))
    assert "<user>\nlook\n[image 1]\n</user>" in prompt
    assert prompt.endswith("[image 2]\nand this")
    custom = render_prompt(Conversation(turns), lambda index, image: f"@img{index}.png")
    assert "@img0.png" in custom
    assert custom.endswith("@img1.png\nand this")


def test_a_required_or_named_tool_choice_is_said_to_the_model() -> None:
    tools = (ToolSpec("get_weather"),)
    turns = (user("q"),)
    assert render_prompt(Conversation(turns, tools=tools)) == "q"
    required = render_prompt(Conversation(turns, tools=tools, tool_choice=ToolChoice("required")))
    assert required.startswith("q\n\n")
    assert "calling one of your tools" in required
    named = render_prompt(Conversation(turns, tools=tools, tool_choice=ToolChoice("function", "get_weather")))
    assert "`get_weather`" in named
