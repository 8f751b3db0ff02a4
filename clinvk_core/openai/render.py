"""Events -> OpenAI objects: the completion, its stream chunks, usage. Pure functions."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from clinvk_core.answer import Answer, total_usage
from clinvk_core.errors import GatewayError
from clinvk_core.events import Completed, TokenUsage
from clinvk_core.openai.errors import error_body
from clinvk_core.openai.schema import (
    AssistantMessage,
    ChatCompletion,
    Choice,
    CompletionTokensDetails,
    CompletionUsage,
    FinishReason,
    FunctionCallOut,
    PromptTokensDetails,
    ToolCallOut,
)


@dataclass(frozen=True)
class ResponseMeta:
    """What the response object, or every chunk, of one request repeats."""

    id: str
    created: int
    model: str  # echoes the requested model string
    legacy_functions: bool = False  # the request sent `functions`: calls come back as `function_call`
    include_reasoning: bool = False  # the client asked for the model's reasoning (`include_reasoning`)


def call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


def usage_of(usage: TokenUsage | None) -> CompletionUsage | None:
    """The CLI's own counts; None rather than an estimate when it gave none."""
    if usage is None:
        return None
    return CompletionUsage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=usage.cached_tokens),
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=usage.reasoning_tokens),
    )


def finish_reason(meta: ResponseMeta, completed: Completed) -> FinishReason:
    if completed.finish_reason == "tool_calls" and meta.legacy_functions:
        return "function_call"
    return completed.finish_reason


def message(meta: ResponseMeta, answer: Answer) -> AssistantMessage:
    """The assistant message of a whole answer: text (or null), and its calls in the request's style."""
    calls = [
        ToolCallOut(id=call_id(), function=FunctionCallOut(name=call.name, arguments=call.arguments))
        for call in answer.calls
    ]
    content = answer.text or (None if calls else "")
    reasoning = answer.reasoning if meta.include_reasoning and answer.reasoning else None
    if meta.legacy_functions and calls:
        return AssistantMessage(content=content, function_call=calls[0].function, reasoning_content=reasoning)
    return AssistantMessage(content=content, tool_calls=calls or None, reasoning_content=reasoning)


def completion(meta: ResponseMeta, answers: list[Answer]) -> ChatCompletion:
    """The ``chat.completion`` of one answer per choice (``n`` of them), usage summed."""
    usage = total_usage(answer.completed.usage for answer in answers)
    choices = [
        Choice(index=index, message=message(meta, answer), finish_reason=finish_reason(meta, answer.completed))
        for index, answer in enumerate(answers)
    ]
    return ChatCompletion(id=meta.id, created=meta.created, model=meta.model, choices=choices, usage=usage_of(usage))


def sse(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def chunk(meta: ResponseMeta, delta: dict[str, Any], finish_reason: str | None = None, *, index: int = 0) -> bytes:
    """One ``chat.completion.chunk`` event with its single choice."""
    return sse(
        {
            "id": meta.id,
            "object": "chat.completion.chunk",
            "created": meta.created,
            "model": meta.model,
            "choices": [{"index": index, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
        }
    )


def usage_chunk(meta: ResponseMeta, usage: TokenUsage | None) -> bytes:
    """The last chunk when ``stream_options.include_usage`` is set: no choices, the usage."""
    rendered = usage_of(usage)
    return sse(
        {
            "id": meta.id,
            "object": "chat.completion.chunk",
            "created": meta.created,
            "model": meta.model,
            "choices": [],
            "usage": rendered.model_dump() if rendered else None,
        }
    )


def error_event(error: GatewayError) -> bytes:
    """A failure after the headers went out: the OpenAI SDK raises on this event."""
    return sse(error_body(error))


DONE = b"data: [DONE]\n\n"
