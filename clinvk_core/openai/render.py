"""Events -> OpenAI objects: the completion, its stream chunks, usage. Pure functions."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from clinvk_core.errors import GatewayError
from clinvk_core.events import Completed, TokenUsage
from clinvk_core.openai.errors import error_body
from clinvk_core.openai.schema import (
    AssistantMessage,
    ChatCompletion,
    Choice,
    CompletionUsage,
    PromptTokensDetails,
)


@dataclass(frozen=True)
class ResponseMeta:
    """What the response object, or every chunk, of one request repeats."""

    id: str
    created: int
    model: str  # echoes the requested model string


def usage_of(usage: TokenUsage | None) -> CompletionUsage | None:
    """The CLI's own counts; None rather than an estimate when it gave none."""
    if usage is None:
        return None
    return CompletionUsage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=usage.cached_tokens),
    )


def completion(meta: ResponseMeta, text: str, completed: Completed) -> ChatCompletion:
    return ChatCompletion(
        id=meta.id,
        created=meta.created,
        model=meta.model,
        choices=[Choice(message=AssistantMessage(content=text), finish_reason=completed.finish_reason)],
        usage=usage_of(completed.usage),
    )


def sse(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def chunk(meta: ResponseMeta, delta: dict[str, str], finish_reason: str | None = None) -> bytes:
    """One ``chat.completion.chunk`` event with its single choice."""
    return sse(
        {
            "id": meta.id,
            "object": "chat.completion.chunk",
            "created": meta.created,
            "model": meta.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
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
KEEPALIVE = b": keep-alive\n\n"
