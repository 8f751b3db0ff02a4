"""Events -> Anthropic objects, checked with the ``anthropic`` SDK's own types and stream accumulator.

A message of a whole answer must validate strictly as ``anthropic.types.Message``; every stream event as
``RawMessageStreamEvent``; and the message the SDK accumulates from the events must be the buffered one.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, ModelInfo, RawMessageStreamEvent
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import TypeAdapter

from clinvk_core.answer import Answer
from clinvk_core.anthropic.errors import CountingUnavailable, error_body, error_response
from clinvk_core.anthropic.render import MessageMeta, message
from clinvk_core.anthropic.schema import ModelInfo as ModelInfoOut
from clinvk_core.anthropic.stops import StopScanner, cut
from clinvk_core.anthropic.stream import Blocks
from clinvk_core.errors import (
    AuthenticationFailed,
    BackendUnavailable,
    GatewayError,
    InvalidRequest,
    MethodNotAllowed,
    ModelNotFound,
    NotFound,
    RateLimited,
    RequestTooLarge,
    Timeout,
    UpstreamFailed,
)
from clinvk_core.events import (
    Completed,
    Event,
    ReasoningDelta,
    TextDelta,
    TokenUsage,
    ToolCallArguments,
    ToolCallDone,
    ToolCallStarted,
)
from clinvk_core.web.run_response import named_sse as sse

META = MessageMeta(id="msg_test", model="gemini")
USAGE = TokenUsage(prompt_tokens=123, completion_tokens=7, cached_tokens=23)
STREAM_EVENT = TypeAdapter(RawMessageStreamEvent)
A_CALL: list[Event] = [ToolCallStarted(0, "f"), ToolCallDone(0, "f", "{}")]


def answer_of(events: Sequence[Event]) -> Answer:
    """What ``collect`` gathers from the same events."""
    completed = next(event for event in events if isinstance(event, Completed))
    text = "".join(event.text for event in events if isinstance(event, TextDelta))
    reasoning = "".join(event.text for event in events if isinstance(event, ReasoningDelta))
    return Answer(completed, text, reasoning, [event for event in events if isinstance(event, ToolCallDone)])


def accumulated(meta: MessageMeta, events: Sequence[Event]) -> tuple[Message, list[dict[str, Any]]]:
    """The message the SDK accumulates from the stream of ``events``, and the stream's event data."""
    blocks = Blocks(meta)
    start = {"type": "message_start", "message": {"id": meta.id, "type": "message", "role": "assistant",
             "model": meta.model, "content": [], "stop_reason": None, "stop_sequence": None,
             "usage": {"input_tokens": 0, "output_tokens": 0}}}  # fmt: skip
    data = [start, *(item for event in events for item in blocks.feed(event))]
    snapshot = None
    buffers: dict[int, bytes] = {}
    for item in data:
        event = STREAM_EVENT.validate_python(item, strict=True)
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=buffers)
    assert snapshot is not None
    return Message.model_validate(snapshot.model_dump(), strict=True), data


def rendered(meta: MessageMeta, events: Sequence[Event]) -> Message:
    return Message.model_validate(message(meta, answer_of(events)).model_dump(), strict=True)


def without_ids(message: Message) -> dict[str, Any]:
    dumped = message.model_dump(exclude_none=True)
    for block in dumped["content"]:
        block.pop("id", None)
    return dumped


def same_both_ways(meta: MessageMeta, events: Sequence[Event]) -> Message:
    """The buffered message and the one accumulated from the stream, equal but for the tool_use ids."""
    buffered = rendered(meta, events)
    streamed, _ = accumulated(meta, events)
    assert without_ids(streamed) == without_ids(buffered)
    return buffered


# --- messages -------------------------------------------------------------------------------------


def test_a_text_answer_with_exact_usage() -> None:
    result = same_both_ways(META, [TextDelta("The answer "), TextDelta("is 42."), Completed(USAGE)])
    assert result.id == "msg_test"
    assert (result.type, result.role, result.model) == ("message", "assistant", "gemini")
    assert [(block.type, getattr(block, "text", None)) for block in result.content] == [("text", "The answer is 42.")]
    assert (result.stop_reason, result.stop_sequence) == ("end_turn", None)
    usage = result.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (100, 23, 0)
    assert usage.output_tokens == 7


def test_tool_calls_become_tool_use_blocks_with_the_clients_names() -> None:
    events: list[Event] = [
        TextDelta("Looking."),
        ToolCallStarted(0, "get_weather"),
        ToolCallArguments(0, '{"city": '),
        ToolCallArguments(0, '"Paris"}'),
        ToolCallDone(0, "get_weather", '{"city": "Paris"}'),
        ToolCallStarted(1, "get_time"),
        ToolCallDone(1, "get_time", '{"tz": "UTC"}'),  # a call reported whole
        Completed(None, "tool_calls"),
    ]
    result = same_both_ways(META, events)
    text, weather, time = result.content
    assert text.type == "text"
    assert weather.type == "tool_use"
    assert time.type == "tool_use"
    assert (weather.name, weather.input, time.name, time.input) == ("get_weather", {"city": "Paris"}, "get_time",
                                                                    {"tz": "UTC"})  # fmt: skip
    assert weather.id.startswith("toolu_")
    assert weather.id != time.id
    assert result.stop_reason == "tool_use"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (0, 0)  # the CLI reported none


def test_thinking_only_when_the_request_asks_for_it() -> None:
    events: list[Event] = [ReasoningDelta("Let me think. "), ReasoningDelta("Done."), TextDelta("42"), Completed(USAGE)]
    shown = same_both_ways(MessageMeta("msg_t", "claude", show_thinking=True), events)
    thinking, _text = shown.content
    assert thinking.type == "thinking"
    assert (thinking.thinking, thinking.signature) == ("Let me think. Done.", "")
    assert [block.type for block in same_both_ways(META, events).content] == ["text"]


def test_a_length_stop_is_max_tokens() -> None:
    assert same_both_ways(META, [TextDelta("cut"), Completed(USAGE, "length")]).stop_reason == "max_tokens"


def test_an_empty_answer_is_one_empty_text_block() -> None:
    result = same_both_ways(META, [Completed(USAGE)])
    assert [(block.type, getattr(block, "text", None)) for block in result.content] == [("text", "")]


def test_arguments_that_are_not_an_object_are_an_upstream_failure() -> None:
    events: list[Event] = [ToolCallStarted(0, "f"), ToolCallDone(0, "f", "[1, 2]"), Completed(None, "tool_calls")]
    with pytest.raises(UpstreamFailed):
        message(META, answer_of(events))


def test_stream_events_in_order() -> None:
    events: list[Event] = [TextDelta("a"), *A_CALL, Completed(USAGE, "tool_calls")]
    _, data = accumulated(META, events)
    assert [item["type"] for item in data] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert [item.get("index") for item in data if "index" in item] == [0, 0, 0, 1, 1, 1]
    assert data[-2]["usage"] == {"input_tokens": 100, "output_tokens": 7, "cache_creation_input_tokens": 0,
                                 "cache_read_input_tokens": 23}  # fmt: skip


def test_sse_framing() -> None:
    assert sse({"type": "ping"}) == b'event: ping\ndata: {"type":"ping"}\n\n'
    assert sse({"type": "x", "text": "é"}) == 'event: x\ndata: {"type":"x","text":"é"}\n\n'.encode()


# --- stop sequences -------------------------------------------------------------------------------


def test_a_stop_sequence_cuts_the_answer_and_drops_later_calls() -> None:
    meta = MessageMeta("msg_s", "codex", stop_sequences=("END", "\n\nHuman:"))
    events: list[Event] = [
        TextDelta("one two E"),
        TextDelta("N"),
        TextDelta("D three"),
        ToolCallStarted(0, "f"),
        ToolCallDone(0, "f", "{}"),
        Completed(USAGE, "tool_calls"),
    ]
    result = same_both_ways(meta, events)
    assert [(block.type, getattr(block, "text", None)) for block in result.content] == [("text", "one two ")]
    assert (result.stop_reason, result.stop_sequence) == ("stop_sequence", "END")
    assert result.usage.output_tokens == 7  # what the upstream generated, the cut text included


def test_text_held_back_as_a_possible_stop_sequence_goes_out_when_it_is_not_one() -> None:
    meta = MessageMeta("msg_s", "codex", stop_sequences=("END",))
    events: list[Event] = [TextDelta("ab E"), *A_CALL, Completed(USAGE, "tool_calls")]
    result = same_both_ways(meta, events)
    assert [getattr(block, "text", None) for block in result.content] == ["ab E", None]
    assert (result.stop_reason, result.stop_sequence) == ("tool_use", None)


@given(
    text=st.text(alphabet="abE ND", max_size=40),
    cuts=st.lists(st.integers(0, 40), max_size=6),
    sequences=st.lists(st.text(alphabet="abEND", min_size=1, max_size=4), max_size=3),
)
@example(text="DND", cuts=[2], sequences=["N", "DND"])  # "N" is complete first, though "DND" starts first
def test_stop_sequences_cut_a_stream_as_they_cut_the_whole_text(
    text: str, cuts: list[int], sequences: list[str]
) -> None:
    scanner = StopScanner(sequences)
    bounds = [0, *sorted(cuts), len(text)]
    out = "".join(scanner.feed(text[a:b]) for a, b in itertools.pairwise(bounds)) + scanner.flush()
    assert (out, scanner.matched) == cut(text, sequences)
    assert out == text if scanner.matched is None else text.startswith(out + scanner.matched)
    if scanner.matched is not None:  # no stop sequence is complete before the one that cut the text
        end = len(out) + len(scanner.matched)
        assert not any(s in text[: end - 1] for s in sequences)


# --- errors ---------------------------------------------------------------------------------------

ERRORS: list[tuple[GatewayError, int, str, type[anthropic.APIStatusError]]] = [
    (InvalidRequest("bad"), 400, "invalid_request_error", anthropic.BadRequestError),
    (AuthenticationFailed("who?"), 401, "authentication_error", anthropic.AuthenticationError),
    (NotFound("no route"), 404, "not_found_error", anthropic.NotFoundError),
    (ModelNotFound("no model"), 404, "not_found_error", anthropic.NotFoundError),
    (MethodNotAllowed("GET?"), 405, "invalid_request_error", anthropic.APIStatusError),
    (RequestTooLarge("big"), 413, "request_too_large", anthropic.ContentTooLargeError),
    (RateLimited("slow down", retry_after=7), 429, "rate_limit_error", anthropic.RateLimitError),
    (GatewayError("bug"), 500, "api_error", anthropic.InternalServerError),
    (CountingUnavailable("no count"), 501, "api_error", anthropic.HTTPNotImplementedError),
    (UpstreamFailed("claude: boom"), 502, "api_error", anthropic.InternalServerError),
    (BackendUnavailable("disabled"), 503, "overloaded_error", anthropic.ServiceUnavailableError),
    (Timeout("late"), 504, "timeout_error", anthropic.GatewayTimeoutError),
]


@pytest.mark.parametrize(("error", "status", "kind", "sdk_error"), ERRORS, ids=[type(e[0]).__name__ for e in ERRORS])
def test_errors_in_anthropics_shape_as_the_sdk_reads_them(
    error: GatewayError, status: int, kind: str, sdk_error: type[anthropic.APIStatusError]
) -> None:
    response = error_response(error)
    assert response.status_code == status
    assert error_body(error) == {"type": "error", "error": {"type": kind, "message": error.message}}
    request = httpx2.Request("POST", "http://gateway/anthropic/v1/messages")
    raised = anthropic.Anthropic(api_key="x")._make_status_error_from_response(
        httpx2.Response(status, content=bytes(response.body), headers=dict(response.headers), request=request)
    )
    assert type(raised) is sdk_error
    assert (raised.type, raised.api_message) == (kind, error.message)


def test_error_headers_say_when_to_retry() -> None:
    assert error_response(RateLimited("x", retry_after=7)).headers["retry-after"] == "7"
    assert error_response(BackendUnavailable("x")).headers["x-should-retry"] == "false"
    assert error_response(CountingUnavailable("x")).headers["x-should-retry"] == "false"
    assert "x-should-retry" not in error_response(UpstreamFailed("x")).headers


# --- models ---------------------------------------------------------------------------------------


def test_model_info_is_what_the_sdk_reads() -> None:
    ours = ModelInfoOut(id="claude/sonnet", display_name="claude/sonnet (claude CLI)")
    info = ModelInfo.model_validate_json(ours.model_dump_json(), strict=True)
    assert (info.id, info.type, info.lifecycle, info.created_at.year) == ("claude/sonnet", "model", "active", 2024)
