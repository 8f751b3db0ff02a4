"""Pydantic models of the OpenAI chat and models APIs, as much as clinvk reads or writes.

Requests are strict (no silent coercion: ``"stream": "yes"`` is a 400) and keep unknown
fields, which are accepted and ignored like the OpenAI API does.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class ContentPart(_Request):
    type: str
    text: str | None = None


class ChatMessage(_Request):
    role: Role
    content: str | list[ContentPart] | None  # required; null only makes sense for assistant turns
    name: str | None = None


class StreamOptions(_Request):
    include_usage: bool | None = None


class ChatCompletionRequest(_Request):
    """POST /chat/completions. Typed fields not listed in the docs are validated, then ignored."""

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    n: int | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    response_format: dict[str, Any] | None = None
    # Accepted and ignored (the CLIs expose no such knobs), but still type-checked.
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    stop: str | list[str] | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    user: str | None = None
    seed: int | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    parallel_tool_calls: bool | None = None
    tool_choice: str | dict[str, Any] | None = None
    reasoning_effort: str | None = None
    service_tier: str | None = None


class PromptTokensDetails(BaseModel):
    cached_tokens: int


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage | None
    system_fingerprint: None = None


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 1704067200
    owned_by: str = "clinvk"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    error: ErrorDetail
