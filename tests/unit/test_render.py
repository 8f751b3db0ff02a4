"""Events -> OpenAI objects, checked with the official SDK's own types in strict mode."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, cast

import openai.types.chat as sdk
import pytest

from clinvk_core.answer import Answer, Turn
from clinvk_core.errors import RateLimited, Timeout, UpstreamFailed
from clinvk_core.events import Completed, Event, TextDelta, TokenUsage, ToolCallDone
from clinvk_core.openai.render import (
    DONE,
    ResponseMeta,
    chunk,
    completion,
    error_event,
    sse,
    usage_chunk,
    usage_of,
)
from clinvk_core.web.run_response import KEEPALIVE, with_keepalive

META = ResponseMeta(id="chatcmpl-0123456789abcdef", created=1_767_225_600, model="claude/sonnet")
USAGE = TokenUsage(prompt_tokens=21, completion_tokens=5, cached_tokens=11)


def event_data(raw: bytes) -> dict[str, Any]:
    assert raw.startswith(b"data: ")
    assert raw.endswith(b"\n\n")
    assert b"\n" not in raw[:-2]  # one SSE event, one data line
    data = json.loads(raw[len(b"data: ") :])
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize(
    ("delta", "finish"),
    [
        ({"role": "assistant", "content": ""}, None),
        ({"content": 'pong é 🚀 "quoted"\nnext'}, None),
        ({}, "stop"),
        ({}, "length"),
    ],
)
def test_chunks_validate_with_the_sdk(delta: dict[str, str], finish: str | None) -> None:
    data = event_data(chunk(META, delta, finish))
    parsed = sdk.ChatCompletionChunk.model_validate(data, strict=True)
    assert parsed.id == META.id
    assert parsed.created == META.created
    assert parsed.model == META.model
    assert parsed.object == "chat.completion.chunk"
    assert len(parsed.choices) == 1
    assert parsed.choices[0].index == 0
    assert parsed.choices[0].finish_reason == finish
    assert parsed.choices[0].delta.content == delta.get("content")
    assert parsed.usage is None
    assert "usage" not in data or data["usage"] is None


def test_chunk_keeps_unicode_unescaped() -> None:
    assert "🚀".encode() in chunk(META, {"content": "🚀"})


def test_usage_chunk_has_no_choices_and_the_usage() -> None:
    data = event_data(usage_chunk(META, USAGE))
    parsed = sdk.ChatCompletionChunk.model_validate(data, strict=True)
    assert parsed.choices == []
    assert parsed.usage is not None
    assert (parsed.usage.prompt_tokens, parsed.usage.completion_tokens, parsed.usage.total_tokens) == (21, 5, 26)
    assert parsed.usage.prompt_tokens_details is not None
    assert parsed.usage.prompt_tokens_details.cached_tokens == 11


def test_usage_chunk_without_counts_says_null_rather_than_estimating() -> None:
    data = event_data(usage_chunk(META, None))
    assert data["usage"] is None
    assert data["choices"] == []
    sdk.ChatCompletionChunk.model_validate(data, strict=True)


def test_completion_validates_with_the_sdk() -> None:
    body = completion(META, [Answer(Completed(USAGE, "length"), "pong from fake")]).model_dump()
    parsed = sdk.ChatCompletion.model_validate(json.loads(json.dumps(body)), strict=True)
    assert parsed.object == "chat.completion"
    assert parsed.model == "claude/sonnet"
    [choice] = parsed.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == "pong from fake"
    assert choice.finish_reason == "length"
    assert parsed.usage is not None
    assert parsed.usage.total_tokens == 26
    assert parsed.usage.prompt_tokens_details is not None
    assert parsed.usage.prompt_tokens_details.cached_tokens == 11


def test_completion_without_usage() -> None:
    body = completion(META, [Answer(Completed(None))]).model_dump()
    assert body["usage"] is None
    parsed = sdk.ChatCompletion.model_validate(body, strict=True)
    assert parsed.choices[0].message.content == ""
    assert parsed.choices[0].finish_reason == "stop"
    assert "tool_calls" not in body["choices"][0]["message"]  # absent, not null


CALLS = [ToolCallDone(0, "get_weather", '{"city": "Paris"}'), ToolCallDone(1, "get_time", "{}")]


def test_tool_calls_validate_with_the_sdk_and_have_unique_ids() -> None:
    body = completion(META, [Answer(Completed(USAGE, "tool_calls"), "", calls=CALLS)]).model_dump()
    parsed = sdk.ChatCompletion.model_validate(json.loads(json.dumps(body)), strict=True)
    [choice] = parsed.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None  # no text before the calls
    calls = choice.message.tool_calls or []
    assert [(c.function.name, c.function.arguments) for c in calls if c.type == "function"] == [
        ("get_weather", '{"city": "Paris"}'),
        ("get_time", "{}"),
    ]
    assert all(call.id.startswith("call_") for call in calls)
    assert len({call.id for call in calls}) == 2


def test_text_before_the_calls_is_the_content() -> None:
    body = completion(META, [Answer(Completed(None, "tool_calls"), "Let me check.", calls=CALLS)]).model_dump()
    assert body["choices"][0]["message"]["content"] == "Let me check."


def test_legacy_functions_get_a_function_call_and_its_finish_reason() -> None:
    meta = ResponseMeta(id="chatcmpl-1", created=1, model="claude", legacy_functions=True)
    body = completion(meta, [Answer(Completed(None, "tool_calls"), calls=CALLS)]).model_dump()
    parsed = sdk.ChatCompletion.model_validate(body, strict=True)
    assert parsed.choices[0].finish_reason == "function_call"
    assert parsed.choices[0].message.function_call is not None
    assert parsed.choices[0].message.function_call.name == "get_weather"
    assert "tool_calls" not in body["choices"][0]["message"]


def test_n_choices_and_their_usage_summed() -> None:
    answers = [Answer(Completed(USAGE), "one"), Answer(Completed(TokenUsage(1, 1, 0, 1)), "two")]
    body = completion(META, answers).model_dump()
    parsed = sdk.ChatCompletion.model_validate(body, strict=True)
    assert [(c.index, c.message.content) for c in parsed.choices] == [(0, "one"), (1, "two")]
    assert parsed.usage is not None
    assert (parsed.usage.prompt_tokens, parsed.usage.completion_tokens) == (22, 6)
    assert completion(META, [answers[0], Answer(Completed(None), "x")]).usage is None  # never part of a count


def test_reasoning_only_when_asked_for() -> None:
    answer = Answer(Completed(None), "42", reasoning="thinking it over")
    assert "reasoning_content" not in completion(META, [answer]).model_dump()["choices"][0]["message"]
    meta = ResponseMeta(id="chatcmpl-1", created=1, model="claude", include_reasoning=True)
    message = completion(meta, [answer]).model_dump()["choices"][0]["message"]
    assert (message["content"], message["reasoning_content"]) == ("42", "thinking it over")


def test_usage_of() -> None:
    assert usage_of(None) is None
    rendered = usage_of(TokenUsage(3, 4))
    assert rendered is not None
    assert rendered.model_dump() == {
        "prompt_tokens": 3,
        "completion_tokens": 4,
        "total_tokens": 7,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


@pytest.mark.parametrize(
    ("error", "type_", "code"),
    [
        (UpstreamFailed("claude: API Error: 500"), "upstream_error", "upstream_error"),
        (Timeout("too slow"), "timeout", "timeout"),
        (RateLimited("slow down"), "rate_limit_error", "rate_limit_exceeded"),
    ],
)
def test_error_event_is_an_openai_error_body(error: UpstreamFailed, type_: str, code: str) -> None:
    data = event_data(error_event(error))
    assert data == {"error": {"message": error.message, "type": type_, "param": None, "code": code}}


def test_sse_constants() -> None:
    assert DONE == b"data: [DONE]\n\n"
    assert KEEPALIVE.startswith(b":")  # an SSE comment: ignored by clients
    assert KEEPALIVE.endswith(b"\n\n")
    assert sse({"a": 1}) == b'data: {"a":1}\n\n'


async def _slow(items: list[str], pause: float) -> AsyncIterator[str]:
    for item in items:
        await asyncio.sleep(pause)
        yield item


def test_with_keepalive_yields_none_while_the_source_is_silent() -> None:
    async def main() -> list[str | None]:
        return [item async for item in with_keepalive(_slow(["a", "b"], 0.12), 0.05)]

    out = asyncio.run(main())
    assert [item for item in out if item is not None] == ["a", "b"]
    assert out[-1] == "b"
    before_a = out[: out.index("a")]
    assert len(before_a) >= 1
    assert set(before_a) == {None}
    assert None in out[out.index("a") + 1 : out.index("b")]


def test_with_keepalive_passes_a_fast_source_through_unchanged() -> None:
    async def main() -> list[str | None]:
        return [item async for item in with_keepalive(_slow(["x", "y", "z"], 0), 10)]

    assert asyncio.run(main()) == ["x", "y", "z"]


def test_with_keepalive_propagates_errors() -> None:
    async def failing() -> AsyncIterator[str]:
        yield "first"
        await asyncio.sleep(0.05)
        raise UpstreamFailed("the CLI failed")

    async def main() -> list[str | None]:
        seen: list[str | None] = []
        with pytest.raises(UpstreamFailed):
            async for item in with_keepalive(failing(), 0.01):
                seen.append(item)
        return seen

    seen = asyncio.run(main())
    assert seen[0] == "first"
    assert None in seen


def test_with_keepalive_closing_early_cancels_the_pending_read() -> None:
    async def main() -> bool:
        was_cancelled = asyncio.Event()

        async def stuck() -> AsyncIterator[str]:
            try:
                yield "only"
                await asyncio.sleep(30)
                yield "never"
            except asyncio.CancelledError:
                was_cancelled.set()
                raise

        stream = cast(AsyncGenerator[str | None, None], with_keepalive(stuck(), 0.01))
        assert await anext(stream) == "only"
        assert await anext(stream) is None  # silent: a keep-alive
        await stream.aclose()  # the client went away
        return was_cancelled.is_set()

    assert asyncio.run(asyncio.wait_for(main(), 5))


def test_turn_ends_at_its_end_and_fails_without_one() -> None:
    async def events(*items: Event) -> AsyncIterator[Event]:
        for item in items:
            yield item

    async def read(turn: Turn) -> list[Event]:
        return [event async for event in turn]

    end = Completed(USAGE)
    turn = Turn(events(TextDelta("hi"), end, TextDelta("after the end: nobody waits for it")))
    assert asyncio.run(read(turn)) == [TextDelta("hi"), end]
    assert turn.completed == end
    cut = Turn(events(TextDelta("hi")))
    assert asyncio.run(read(cut)) == [TextDelta("hi")]
    with pytest.raises(UpstreamFailed, match="without completing the turn"):
        _ = cut.completed
