"""A turn's events -> Responses API output items, stream events and response objects, each checked with the
official SDK's own types in strict mode, and the stream fed through the SDK's own accumulator."""

from __future__ import annotations

import json
import typing
from typing import Any

import pytest
from openai import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseErrorEvent, ResponseFailedEvent, ResponseStreamEvent
from pydantic import BaseModel

from clinvk_core.errors import RateLimited, UpstreamFailed
from clinvk_core.events import (
    Completed,
    Event,
    ReasoningDelta,
    SessionStarted,
    TextDelta,
    TokenUsage,
    ToolCallArguments,
    ToolCallDone,
    ToolCallStarted,
)
from clinvk_core.openai.responses.render import (
    OutputBuilder,
    ResponseMeta,
    error_fields,
    failed_response,
    finished_response,
    response_object,
)
from clinvk_core.web.run_response import named_sse as sse

USAGE = TokenUsage(prompt_tokens=21, completion_tokens=5, cached_tokens=11, reasoning_tokens=2)
SETTINGS = {
    "instructions": "Be brief.",
    "max_output_tokens": None,
    "max_tool_calls": None,
    "metadata": {"k": "v"},
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "reasoning": {"effort": None, "summary": None},
    "store": True,
    "temperature": None,
    "text": {"format": {"type": "text"}},
    "tool_choice": "auto",
    "tools": [{"type": "function", "name": "get_weather", "description": None,
               "parameters": {"type": "object", "properties": {}}, "strict": None}],
    "top_p": None,
    "truncation": "disabled",
    "user": None,
}  # fmt: skip
META = ResponseMeta("resp_0123", 1_767_225_600, "claude/sonnet", SETTINGS, {"spawn_agent": "multi_agent_v1"})


def _event_classes() -> dict[str, type[BaseModel]]:
    """The SDK's stream event class for each ``type``."""
    union = typing.get_args(ResponseStreamEvent)[0]
    classes: dict[str, type[BaseModel]] = {}
    for cls in typing.get_args(union):
        [kind] = typing.get_args(cls.model_fields["type"].annotation)
        classes[kind] = cls
    return classes


EVENT_CLASSES = _event_classes()


def run(events: list[Event]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The stream events and final response of one turn, as the stream sends them (numbering included)."""
    builder = OutputBuilder(META.namespaces)
    started = response_object(META, "in_progress", [])
    out = [builder.event("response.created", response=started), builder.event("response.in_progress", response=started)]
    for event in events:
        if isinstance(event, Completed):
            out += builder.finish(event)
            response = finished_response(META, builder.items, event)
            kind = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
            return [*out, builder.event(kind, response=response)], response
        out += builder.feed(event)
    raise AssertionError("no Completed event")


def validated(events: list[dict[str, Any]]) -> list[Any]:
    """Each event parsed strictly as the SDK's own class for its type; numbered 0, 1, 2..."""
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    return [EVENT_CLASSES[event["type"]].model_validate(event, strict=True) for event in events]


def accumulated(events: list[dict[str, Any]]) -> Any:
    """The final response as the SDK's own stream helper (``responses.stream``) puts it together."""
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    final = None
    for parsed in validated(events):
        for out in state.handle_event(parsed):
            if out.type == "response.completed":
                final = out.response
    return final


def test_a_text_answer_streams_as_one_message_and_the_sdk_puts_it_together() -> None:
    events, response = run([SessionStarted("s"), TextDelta("pong "), TextDelta("é 🚀"), Completed(USAGE)])
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed",
    ]  # fmt: skip
    parsed = Response.model_validate(response, strict=True)
    assert parsed.output_text == "pong é 🚀"
    assert (parsed.status, parsed.id, parsed.model, parsed.instructions) == ("completed", "resp_0123", "claude/sonnet",
                                                                            "Be brief.")  # fmt: skip
    assert parsed.usage is not None
    assert (parsed.usage.input_tokens, parsed.usage.output_tokens, parsed.usage.total_tokens) == (21, 5, 26)
    assert parsed.usage.input_tokens_details.cached_tokens == 11
    assert parsed.usage.output_tokens_details.reasoning_tokens == 2
    final = accumulated(events)
    assert final.output_text == "pong é 🚀"
    assert final.id == "resp_0123"
    assert events[2]["item"]["id"] == events[-2]["item"]["id"] == response["output"][0]["id"]


def test_reasoning_comes_as_a_reasoning_item_with_its_summary_before_the_message() -> None:
    events, response = run([ReasoningDelta("think"), ReasoningDelta("ing"), TextDelta("42"), Completed(USAGE)])
    validated(events)
    parsed = Response.model_validate(response, strict=True)
    reasoning, message = parsed.output
    assert reasoning.type == "reasoning"
    assert [part.text for part in reasoning.summary] == ["thinking"]
    assert message.type == "message"
    assert parsed.output_text == "42"
    deltas = [e["delta"] for e in events if e["type"] == "response.reasoning_summary_text.delta"]
    assert deltas == ["think", "ing"]


def test_calls_become_function_call_items_with_call_ids_and_whole_arguments() -> None:
    turn: list[Event] = [
        TextDelta("Let me check."),
        ToolCallStarted(0, "get_weather"),
        ToolCallArguments(0, '{"city": '),
        ToolCallArguments(0, '"Paris"}'),
        ToolCallDone(0, "get_weather", '{"city": "Paris"}'),
        ToolCallStarted(1, "spawn_agent"),  # a namespaced function: its calls name the namespace
        ToolCallDone(1, "spawn_agent", "{}"),  # no argument deltas at all: one delta with the whole
        Completed(USAGE, "tool_calls"),
    ]
    events, response = run(turn)
    parsed = Response.model_validate(response, strict=True)
    message, weather, spawn = parsed.output
    assert message.type == "message"
    assert weather.type == spawn.type == "function_call"
    assert (weather.name, weather.arguments, weather.status, weather.namespace) == (
        "get_weather", '{"city": "Paris"}', "completed", None)  # fmt: skip
    assert (spawn.name, spawn.arguments, spawn.namespace) == ("spawn_agent", "{}", "multi_agent_v1")
    assert weather.call_id.startswith("call_")
    assert weather.id is not None
    assert weather.id.startswith("fc_")
    assert weather.call_id != spawn.call_id
    assert parsed.status == "completed"  # a turn that ends with calls is complete: the client runs them
    final = accumulated(events)
    assert [item.arguments for item in final.output[1:]] == ['{"city": "Paris"}', "{}"]
    for index in (1, 2):
        deltas = [e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"
                  and e["output_index"] == index]  # fmt: skip
        assert "".join(deltas) == response["output"][index]["arguments"]


def test_a_call_still_open_at_the_end_of_the_turn_is_closed_with_what_it_got() -> None:
    events, response = run([ToolCallStarted(0, "get_weather"), ToolCallArguments(0, "{}"), Completed(None)])
    validated(events)
    [call] = Response.model_validate(response, strict=True).output
    assert call.type == "function_call"
    assert (call.arguments, call.status) == ("{}", "completed")


def test_the_length_limit_makes_an_incomplete_response() -> None:
    events, response = run([TextDelta("cut sh"), Completed(USAGE, "length")])
    validated(events)
    assert events[-1]["type"] == "response.incomplete"
    parsed = Response.model_validate(response, strict=True)
    assert parsed.status == "incomplete"
    assert parsed.incomplete_details is not None
    assert parsed.incomplete_details.reason == "max_output_tokens"
    assert parsed.output[0].type == "message"
    assert parsed.output[0].status == "incomplete"


def test_an_answer_without_output_is_one_empty_message_and_no_usage_is_null() -> None:
    events, response = run([Completed(None)])
    validated(events)
    parsed = Response.model_validate(response, strict=True)
    assert parsed.output_text == ""
    assert len(parsed.output) == 1
    assert parsed.usage is None


@pytest.mark.parametrize(
    ("error", "code", "failed_code"),
    [(UpstreamFailed("claude: 500 overloaded"), "upstream_error", "server_error"),
     (RateLimited("slow down", retry_after=3), "rate_limit_exceeded", "rate_limit_exceeded")],
)  # fmt: skip
def test_a_failure_after_the_headers_is_an_error_event_and_a_failed_response(
    error: UpstreamFailed, code: str, failed_code: str
) -> None:
    builder = OutputBuilder()
    builder.feed(TextDelta("partial"))
    error_event = builder.event("error", **error_fields(error))
    failed = builder.event("response.failed", response=failed_response(META, builder.items, error))
    parsed_error = ResponseErrorEvent.model_validate(error_event, strict=True)
    parsed_failed = ResponseFailedEvent.model_validate(failed, strict=True)
    assert (parsed_error.code, parsed_error.message) == (code, error.message)
    assert parsed_failed.response.status == "failed"
    assert parsed_failed.response.error is not None
    assert (parsed_failed.response.error.code, parsed_failed.response.error.message) == (failed_code, error.message)


def test_sse_framing_names_the_event_and_holds_one_data_line() -> None:
    raw = sse({"type": "response.output_text.delta", "sequence_number": 3, "delta": "a\nb"})
    event, data, end = raw.split(b"\n", 2)
    assert event == b"event: response.output_text.delta"
    assert json.loads(data.removeprefix(b"data: "))["delta"] == "a\nb"
    assert end == b"\n"
