"""Structured output held to its schema: ``clinvk_core.structured``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from clinvk_core.conversation import Conversation, OutputFormat, TextPart
from clinvk_core.errors import UpstreamFailed
from clinvk_core.events import Completed, Event, ReasoningDelta, TextDelta, TokenUsage, ToolCallDone
from clinvk_core.structured import checked_output, violation

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temps": {"type": "array", "items": {"type": "number"}}},
    "required": ["city"],
}
CONVERSATION = Conversation.of("weather as JSON")
STRUCTURED = Conversation(CONVERSATION.turns, output=OutputFormat(SCHEMA, "weather", True))


async def source(events: list[Event]) -> AsyncIterator[Event]:
    for event in events:
        yield event


class Reruns:
    """The corrective turns asked for, each answered with the next scripted events."""

    def __init__(self, *answers: list[Event]) -> None:
        self.answers = list(answers)
        self.conversations: list[Conversation] = []

    @asynccontextmanager
    async def __call__(self, conversation: Conversation) -> AsyncIterator[AsyncIterator[Event]]:
        self.conversations.append(conversation)
        yield source(self.answers.pop(0))


def run(events: list[Event], reruns: Reruns) -> list[Event]:
    async def go() -> list[Event]:
        return [event async for event in checked_output(source(events), STRUCTURED, reruns)]

    return asyncio.run(go())


USAGE = TokenUsage(10, 5)


def answer(text: str, usage: TokenUsage | None = USAGE) -> list[Event]:
    return [ReasoningDelta("hmm"), TextDelta(text[:3]), TextDelta(text[3:]), Completed(usage)]


def test_violation() -> None:
    assert violation('{"city": "Paris", "temps": [1, 2.5]}', SCHEMA) is None
    assert violation("Paris", SCHEMA) == "the answer is not JSON (Expecting value at character 0)"
    assert violation('{"temps": [1]}', SCHEMA) == "at the top level: 'city' is a required property"
    assert violation('{"city": "P", "temps": ["x"]}', SCHEMA) == "at temps/0: 'x' is not of type 'number'"


def test_a_valid_answer_goes_out_whole_after_the_other_events() -> None:
    reruns = Reruns()
    events = run(answer('{"city": "Paris"}'), reruns)
    assert events == [ReasoningDelta("hmm"), TextDelta('{"city": "Paris"}'), Completed(TokenUsage(10, 5))]
    assert reruns.conversations == []


def test_an_invalid_answer_gets_one_corrective_turn_and_both_turns_count() -> None:
    reruns = Reruns(answer('{"city": "Rome"}', TokenUsage(20, 3)))
    events = run(answer("Paris!"), reruns)
    assert events[-2:] == [TextDelta('{"city": "Rome"}'), Completed(TokenUsage(30, 8))]
    [corrected] = reruns.conversations
    assert corrected.turns[:-2] == STRUCTURED.turns
    assert corrected.turns[-2].parts == (TextPart("Paris!"),)
    assert "not JSON" in corrected.turns[-1].text
    assert corrected.output == STRUCTURED.output


def test_two_invalid_answers_are_a_502_saying_why() -> None:
    with pytest.raises(UpstreamFailed, match="does not match the requested JSON schema, twice: at the top level"):
        run(answer("[1]"), Reruns(answer('{"temps": []}')))


def test_a_tool_call_or_a_cut_answer_passes_unchecked() -> None:
    call: list[Event] = [TextDelta("Let me look"), ToolCallDone(0, "f", "{}"), Completed(None, "tool_calls")]
    assert run(call, Reruns()) == [ToolCallDone(0, "f", "{}"), TextDelta("Let me look"), Completed(None, "tool_calls")]
    cut: list[Event] = [TextDelta('{"city": "Pa'), Completed(None, "length")]
    assert run(cut, Reruns()) == [TextDelta('{"city": "Pa'), Completed(None, "length")]
