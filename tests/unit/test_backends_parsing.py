"""Each backend's output parser over the real CLI outputs (tests/fixtures/captures) and hand-written lines."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from clinvk_core.backends import BACKENDS, Backend, RunRequest
from clinvk_core.backends.claude import Claude
from clinvk_core.backends.codex import Codex
from clinvk_core.backends.gemini import Gemini
from clinvk_core.conversation import Conversation, OutputFormat, ToolSpec
from clinvk_core.events import (
    Completed,
    Event,
    Failed,
    ReasoningDelta,
    SessionStarted,
    TextDelta,
    TokenUsage,
    ToolCallArguments,
    ToolCallDone,
    ToolCallStarted,
)

Capture = Callable[[str], list[str]]

ANSWER = "pong from fake"
CLAUDE_500 = (
    "API Error: 500 fake internal server error. This is a server-side issue, usually temporary — try again "
    "in a moment. If it persists, check your inference gateway (127.0.0.1:18080)."
)
CODEX_HIGH_DEMAND = "We\u2019re currently experiencing high demand, which may cause temporary errors."


def parse(backend: Backend, lines: list[str], model: str | None = None, **fields: Any) -> list[Event]:
    """The events of one run's ``lines`` (``fields``: of its Conversation; tools come with a bridge)."""
    server = "http://127.0.0.1:9/mcp/x" if fields.get("tools") else None
    parser = backend.parser(RunRequest(Conversation((), **fields), model, server))
    return [event for line in lines for event in parser.feed(line)]


def feed(backend: Backend, raw: str, model: str | None = None) -> list[Event]:
    return parse(backend, [raw], model)


def text_of(events: list[Event]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


def line(obj: dict[str, Any]) -> str:
    return json.dumps(obj) + "\n"


# --- claude -------------------------------------------------------------------------------------------


def test_claude_partial_messages_give_token_deltas_and_usage(capture: Capture) -> None:
    events = parse(Claude(), capture("claude-stream-json-partial.txt"))
    assert events == [
        SessionStarted("cc5a0318-7f57-4ea1-a248-27d520ec94c5"),
        TextDelta("pong "),
        TextDelta("from "),
        TextDelta("fake"),
        Completed(TokenUsage(prompt_tokens=10, completion_tokens=5, cached_tokens=0), "stop", ANSWER),
    ]
    assert text_of(events) == ANSWER


def test_claude_full_assistant_message_is_not_text_again(capture: Capture) -> None:
    """With partial messages the answer also comes whole in an ``assistant`` line: counted once only."""
    lines = capture("claude-stream-json-partial.txt")
    assistant = [raw for raw in lines if json.loads(raw)["type"] == "assistant"]
    assert len(assistant) == 1
    assert ANSWER in assistant[0]
    assert feed(Claude(), assistant[0], None) == []


@pytest.mark.parametrize(
    ("name", "session"),
    [
        ("claude-stream-json.txt", "d071a49c-dd1e-4f6e-ad93-474c70a0dccb"),
        ("claude2.1.197-stream-json.txt", "9f6b5352-a94b-4e98-8026-e15c0b90e188"),
    ],
)
def test_claude_stream_json_without_partial_messages(capture: Capture, name: str, session: str) -> None:
    """Key order differs between versions; parsing is by key. No delta: the result line restates the answer."""
    events = parse(Claude(), capture(name))
    assert events == [SessionStarted(session), Completed(TokenUsage(10, 5, 0), "stop", ANSWER)]


@pytest.mark.parametrize("name", ["claude-json.txt", "claude2.1.197-json.txt"])
def test_claude_json_result_line(capture: Capture, name: str) -> None:
    assert parse(Claude(), capture(name)) == [Completed(TokenUsage(10, 5, 0), "stop", ANSWER)]


def test_claude_stream_error500(capture: Capture) -> None:
    lines = capture("claude-stream-json-error500.txt")
    events = parse(Claude(), lines)
    assert events == [SessionStarted("418f7762-e214-463d-83a0-87f9c94e7c34"), Failed(CLAUDE_500, 500)]
    # The CLI also prints the error as a synthetic assistant message: that is not the answer.
    synthetic = next(raw for raw in lines if '"<synthetic>"' in raw)
    assert feed(Claude(), synthetic, None) == []
    assert text_of(events) == ""


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("claude-json-error401.txt", Failed("Failed to authenticate. API Error: 401 fake: invalid api key", 401)),
        ("claude-json-error500.txt", Failed(CLAUDE_500, 500)),
        ("claude-json-error-nokey.txt", Failed("Not logged in · Please run /login", None)),
    ],
)
def test_claude_errors_keep_subtype_success_but_fail(capture: Capture, name: str, expected: Failed) -> None:
    assert parse(Claude(), capture(name)) == [expected]


def test_claude_usage_counts_cached_tokens_as_prompt_tokens() -> None:
    result = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": "x",
        "stop_reason": "end_turn",
        "usage": {
            "input_tokens": 3,
            "cache_creation_input_tokens": 7,
            "cache_read_input_tokens": 11,
            "output_tokens": 5,
        },
    }
    [event] = feed(Claude(), line(result), "sonnet")
    assert event == Completed(TokenUsage(prompt_tokens=21, completion_tokens=5, cached_tokens=11), "stop", "x")
    assert isinstance(event, Completed)
    assert event.usage is not None
    assert event.usage.total_tokens == 26


def test_claude_max_tokens_is_finish_reason_length() -> None:
    result = {"type": "result", "is_error": False, "stop_reason": "max_tokens", "usage": {"output_tokens": 9}}
    assert feed(Claude(), line(result), None) == [Completed(TokenUsage(0, 9, 0), "length")]


def test_claude_result_without_usage_is_completed_without_usage() -> None:
    assert feed(Claude(), line({"type": "result", "is_error": False}), None) == [Completed(None)]


def test_claude_ignores_subagent_deltas_and_keeps_thinking_apart_from_text() -> None:
    def delta(kind: str, parent: str | None) -> str:
        body = {"type": kind, "text" if kind == "text_delta" else "thinking": "secret"}
        event = {"type": "content_block_delta", "index": 0, "delta": body}
        return line({"type": "stream_event", "event": event, "parent_tool_use_id": parent})

    assert feed(Claude(), delta("text_delta", "toolu_1"), None) == []
    assert feed(Claude(), delta("thinking_delta", "toolu_1"), None) == []
    assert feed(Claude(), delta("thinking_delta", None), None) == [ReasoningDelta("secret")]
    assert feed(Claude(), delta("text_delta", None), None) == [TextDelta("secret")]


# --- codex --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "thread"),
    [
        ("codex-json.txt", "01a21491-b87d-75b1-a5f0-aea4e8232fb5"),
        ("codex-json-unknown-model.txt", "01a21491-66d2-7193-89f5-f9e6a3f2f35c"),
        ("codex-json-builtin-openai-provider-ws-fallback.txt", "01a21491-0799-7e21-95e0-d24f4c1662f1"),
    ],
)
def test_codex_success(capture: Capture, name: str, thread: str) -> None:
    """Warnings (``item.type == "error"``) and "Reconnecting..." notices are not events."""
    events = parse(Codex(), capture(name))
    assert events == [SessionStarted(thread), TextDelta(ANSWER), Completed(TokenUsage(10, 5, 0))]


@pytest.mark.parametrize(
    "name",
    [
        "codex-json-unknown-model.txt",
        "codex-json-builtin-openai-provider-ws-fallback.txt",
        "codex-json-error500-default-retries.txt",
        "codex-json-error401.txt",
    ],
)
def test_codex_error_lines_and_warning_items_produce_nothing(capture: Capture, name: str) -> None:
    noise = [
        raw
        for raw in capture(name)
        if json.loads(raw)["type"] == "error" or json.loads(raw).get("item", {}).get("type") == "error"
    ]
    assert noise
    assert parse(Codex(), noise) == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "codex-json-error401.txt",
            Failed(
                "unexpected status 401 Unauthorized: fake: invalid api key, url: http://127.0.0.1:18080/v1/responses",
                401,
            ),
        ),
        ("codex-json-error500.txt", Failed(CODEX_HIGH_DEMAND, None)),
        ("codex-json-error500-default-retries.txt", Failed(CODEX_HIGH_DEMAND, None)),
        ("codex-json-error-missing-key.txt", Failed("Missing environment variable: `FAKE_OPENAI_KEY`.", None)),
    ],
)
def test_codex_failures(capture: Capture, name: str, expected: Failed) -> None:
    events = parse(Codex(), capture(name))
    assert events[1:] == [expected]
    assert isinstance(events[0], SessionStarted)


def test_codex_429_status_is_parsed() -> None:
    failed = {"type": "turn.failed", "error": {"message": "unexpected status 429 Too Many Requests: slow down"}}
    assert feed(Codex(), line(failed), None) == [Failed("unexpected status 429 Too Many Requests: slow down", 429)]


def test_codex_usage_input_tokens_already_include_cached() -> None:
    usage = {"input_tokens": 100, "cached_input_tokens": 40, "output_tokens": 7, "reasoning_output_tokens": 3}
    completed = line({"type": "turn.completed", "usage": usage})
    assert feed(Codex(), completed, "gpt-5.5") == [
        Completed(TokenUsage(prompt_tokens=100, completion_tokens=7, cached_tokens=40, reasoning_tokens=3))
    ]


def test_codex_each_agent_message_is_one_delta_and_reasoning_stays_apart() -> None:
    item = {"type": "item.completed", "item": {"id": "item_3", "type": "agent_message", "text": "a\nb"}}
    reasoning = {"type": "item.completed", "item": {"id": "item_2", "type": "reasoning", "text": "hmm"}}
    assert feed(Codex(), line(item), None) == [TextDelta("a\nb")]
    assert feed(Codex(), line(reasoning), None) == [ReasoningDelta("hmm")]


# --- gemini -------------------------------------------------------------------------------------------


def test_gemini_stream_deltas_and_usage_of_all_models_without_model(capture: Capture) -> None:
    events = parse(Gemini(), capture("gemini-stream-json.txt"), None)
    assert events == [
        SessionStarted("edbac903-7668-4b5b-af18-91feee108748"),
        TextDelta("pong "),
        TextDelta("from "),
        TextDelta("fake"),
        Completed(TokenUsage(prompt_tokens=20, completion_tokens=10, cached_tokens=0)),
    ]
    assert text_of(events) == ANSWER


def test_gemini_usage_counts_only_the_requested_model(capture: Capture) -> None:
    """The router's call (gemini-3.5-flash-lite) is not the user's tokens."""
    events = parse(Gemini(), capture("gemini-stream-json.txt"), "gemini-3.8-flash")
    assert events[-1] == Completed(TokenUsage(10, 5, 0))
    assert text_of(events) == ANSWER


def test_gemini_user_message_echo_is_not_text(capture: Capture) -> None:
    user = next(raw for raw in capture("gemini-stream-json.txt") if '"role":"user"' in raw)
    assert feed(Gemini(), user, None) == []


@pytest.mark.parametrize(
    ("name", "status", "message"),
    [
        ("gemini-stream-json-error401.txt", 401, '"code":401,"message":"fake: invalid api key"'),
        ("gemini-stream-json-error500.txt", 500, '"code":500,"message":"fake internal server error"'),
    ],
)
def test_gemini_failures_take_status_from_embedded_json(capture: Capture, name: str, status: int, message: str) -> None:
    events = parse(Gemini(), capture(name), "gemini-2.5-pro")
    assert len(events) == 2
    assert isinstance(events[0], SessionStarted)
    failed = events[1]
    assert isinstance(failed, Failed)
    assert failed.upstream_status == status
    assert failed.message.startswith("[API Error: {")
    assert message in failed.message


def test_gemini_429_takes_the_suggested_retry_delay() -> None:
    message = "[API Error: Resource has been exhausted (e.g. check quota).\nSuggested retry after 7s.]"
    result = line({"type": "result", "status": "error", "error": {"type": "unknown", "message": message}})
    assert feed(Gemini(), result, "gemini-2.5-pro") == [Failed(message, 429, 7)]


def test_gemini_usage_from_stats_or_the_named_model() -> None:
    stats = {
        "input_tokens": 30,
        "output_tokens": 12,
        "cached": 9,
        "input": 21,
        "models": {"gemini-2.5-pro": {"input_tokens": 20, "output_tokens": 8, "cached": 6, "input": 14}},
    }
    result = line({"type": "result", "status": "success", "stats": stats})
    assert feed(Gemini(), result, "gemini-2.5-pro") == [Completed(TokenUsage(20, 8, 6))]
    assert feed(Gemini(), result, "gemini-other") == [Completed(TokenUsage(30, 12, 9))]
    assert feed(Gemini(), result, None) == [Completed(TokenUsage(30, 12, 9))]


def test_gemini_result_without_stats_or_error_object() -> None:
    assert feed(Gemini(), line({"type": "result", "status": "success"}), None) == [Completed(None)]
    assert feed(Gemini(), line({"type": "result", "status": "error"}), None) == [Failed("gemini failed", None)]


# --- all backends -------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", list(BACKENDS.values()), ids=list(BACKENDS))
@pytest.mark.parametrize(
    "raw",
    [
        "",
        "\n",
        "not json at all\n",
        "Warning: 256-color support not detected.\n",
        "[1, 2]\n",
        "null\n",
        '"result"\n',
        "{truncated\n",
        '{"type": 5}\n',
        '{"no_type": true}\n',
    ],
)
def test_stray_lines_are_ignored(backend: Backend, raw: str) -> None:
    assert feed(backend, raw) == []


def test_odd_token_counts_count_as_zero() -> None:
    usage = {"input_tokens": "10", "output_tokens": True, "cached_input_tokens": None}
    assert feed(Codex(), line({"type": "turn.completed", "usage": usage}), None) == [Completed(TokenUsage(0, 0, 0))]


# --- client tool calls --------------------------------------------------------------------------------

WEATHER = ToolSpec("get_weather", "", {"type": "object", "properties": {"city": {"type": "string"}}})
TIME = ToolSpec("get_time", "", {"type": "object", "properties": {"tz": {"type": "string"}}})
TOOLS = (WEATHER, TIME)


def calls_of(events: list[Event]) -> list[tuple[int, str, str]]:
    return [(e.index, e.name, e.arguments) for e in events if isinstance(e, ToolCallDone)]


def test_claude_tool_calls_stream_as_started_argument_pieces_and_done(capture: Capture) -> None:
    events = parse(Claude(), capture("claude-stream-json-tool-calls.txt"), tools=TOOLS)
    tool_events = [e for e in events if isinstance(e, ToolCallStarted | ToolCallArguments | ToolCallDone)]
    assert tool_events == [
        ToolCallStarted(0, "get_weather"),  # the client's own name, not mcp__clinvk__get_weather
        ToolCallArguments(0, '{"city": "Paris"}'),
        ToolCallDone(0, "get_weather", '{"city": "Paris"}'),
        ToolCallStarted(1, "get_time"),
        ToolCallArguments(1, '{"tz": "UTC"}'),
        ToolCallDone(1, "get_time", '{"tz": "UTC"}'),
    ]
    # The turn ends where the model's message does, not at the bridge: claude calls the first tool as soon
    # as its block is complete, before the second has streamed.
    assert events[-1] == Completed(TokenUsage(prompt_tokens=10, completion_tokens=5, cached_tokens=0), "tool_calls")
    assert sum(isinstance(e, Completed) for e in events) == 1


def test_claude_usage_so_far_counts_every_model_call_of_the_turn(capture: Capture) -> None:
    parser = Claude().parser(RunRequest(Conversation((), tools=TOOLS), None, "http://x"))
    for raw in capture("claude-stream-json-tool-calls.txt"):
        parser.feed(raw)
    assert parser.usage_so_far() == TokenUsage(prompt_tokens=10, completion_tokens=5, cached_tokens=0)


def test_claude_own_tools_are_no_client_calls() -> None:
    start = {"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "name": "Bash"}}
    stop = {"type": "message_delta", "delta": {"stop_reason": "tool_use"}}
    lines = [line({"type": "stream_event", "event": e, "parent_tool_use_id": None}) for e in (start, stop)]
    assert parse(Claude(), lines) == []  # nor is the end of its message the end of the turn


def test_claude_structured_output_is_the_answer_text() -> None:
    result = {"type": "result", "subtype": "success", "is_error": False, "result": "Done.",
              "structured_output": {"answer": "42"}, "usage": {"input_tokens": 1, "output_tokens": 2}}  # fmt: skip
    text = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Done."}}
    events = parse(Claude(), [line({"type": "stream_event", "event": text}), line(result)],
                   output=OutputFormat({"type": "object"}))  # fmt: skip
    assert events == [Completed(TokenUsage(1, 2), "stop", '{"answer": "42"}')]


def test_codex_shows_its_first_mcp_call_whole(capture: Capture) -> None:
    events = parse(Codex(), capture("codex-json-tool-call.txt"), tools=TOOLS)
    assert events[1:] == [
        ToolCallStarted(0, "get_weather"),
        ToolCallArguments(0, '{"city": "Paris"}'),
        ToolCallDone(0, "get_weather", '{"city": "Paris"}'),
    ]


def test_gemini_tool_calls_without_its_own_wait_for_previous_argument(capture: Capture) -> None:
    events = parse(Gemini(), capture("gemini-stream-json-tool-calls.txt"), "gemini-2.5-pro", tools=TOOLS)
    assert calls_of(events) == [(0, "get_weather", '{"city": "Paris"}'), (1, "get_time", '{"tz": "UTC"}')]


def test_gemini_keeps_wait_for_previous_when_the_client_declared_it() -> None:
    own = ToolSpec("wait", "", {"type": "object", "properties": {"wait_for_previous": {"type": "boolean"}}})
    use = {"type": "tool_use", "tool_name": "mcp_clinvk_wait", "parameters": {"wait_for_previous": True}}
    assert calls_of(parse(Gemini(), [line(use)], tools=(own,))) == [(0, "wait", '{"wait_for_previous": true}')]


def test_gemini_maps_a_sanitized_long_name_back_to_the_client_tool() -> None:
    long_tool = ToolSpec("t" * 64)
    shown = "mcp_clinvk_" + "t" * 19 + "..." + "t" * 30
    use = {"type": "tool_use", "tool_name": shown, "parameters": {}}
    assert calls_of(parse(Gemini(), [line(use)], tools=(long_tool,))) == [(0, "t" * 64, "{}")]


def test_gemini_quota_error_without_a_delay_is_a_429() -> None:
    error = {"type": "error", "message": "You exceeded your current quota. Please wait and try again later."}
    result = line({"type": "result", "status": "error", "error": error})
    [failed] = feed(Gemini(), result)
    assert isinstance(failed, Failed)
    assert (failed.upstream_status, failed.retry_after) == (429, None)


def test_claude_answer_cut_at_the_output_limit_ends_the_turn_there() -> None:
    """claude would ask the model to go on ("Output token limit hit. Resume directly"): the cut is the answer."""
    start = {"type": "message_start", "message": {"usage": {"input_tokens": 10, "output_tokens": 1}}}
    text = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "cut "}}
    stop = {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 5}}
    lines = [line({"type": "stream_event", "event": e, "parent_tool_use_id": None}) for e in (start, text, stop)]
    assert parse(Claude(), lines) == [TextDelta("cut "), Completed(TokenUsage(10, 5), "length")]


def test_codex_incomplete_answer_is_cut_not_failed() -> None:
    message = "Incomplete response returned, reason: max_output_tokens"
    assert feed(Codex(), line({"type": "turn.failed", "error": {"message": message}})) == [Completed(None, "length")]
