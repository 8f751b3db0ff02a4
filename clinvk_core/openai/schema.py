"""Pydantic models of the OpenAI chat and models APIs (and the request base of every OpenAI endpoint).

Requests are strict (no silent coercion: ``"stream": "yes"`` is a 400) and keep unknown
fields, which are accepted and ignored like the OpenAI API does.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class StrictRequest(BaseModel):
    """A request model of any OpenAI endpoint: no silent coercion; unknown fields kept, and ignored."""

    model_config = ConfigDict(strict=True, extra="allow")


class ImageUrl(StrictRequest):
    url: str
    detail: str | None = None  # accepted; every CLI takes the image as it is


class ContentPart(StrictRequest):
    type: str
    text: str | None = None
    image_url: ImageUrl | None = None


class FunctionCall(StrictRequest):
    name: str
    arguments: str


class ToolCall(StrictRequest):
    id: str
    type: str = "function"
    function: FunctionCall


class ChatMessage(StrictRequest):
    role: Role
    # Required, except on assistant messages that carry calls (checked when translated).
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    function_call: FunctionCall | None = None  # legacy


class FunctionDefinition(StrictRequest):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDefinition(StrictRequest):
    type: str
    function: FunctionDefinition | None = None


class StreamOptions(StrictRequest):
    include_usage: bool | None = None


class ChatCompletionRequest(StrictRequest):
    """POST /chat/completions. Typed fields not listed in the docs are validated, then ignored."""

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    n: int | None = None
    tools: list[ToolDefinition] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    functions: list[FunctionDefinition] | None = None  # legacy
    function_call: str | dict[str, Any] | None = None  # legacy
    response_format: dict[str, Any] | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    reasoning_effort: str | None = None
    include_reasoning: bool | None = None  # clinvk's own: the model's visible reasoning as reasoning_content
    # Accepted and ignored (no CLI exposes such knobs), but still type-checked.
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
    service_tier: str | None = None


class PromptTokensDetails(BaseModel):
    cached_tokens: int


class CompletionTokensDetails(BaseModel):
    reasoning_tokens: int


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails
    completion_tokens_details: CompletionTokensDetails


class FunctionCallOut(BaseModel):
    name: str
    arguments: str


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallOut


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: None = None
    tool_calls: list[ToolCallOut] | None = None
    function_call: FunctionCallOut | None = None  # legacy: the answer to a request with `functions`
    reasoning_content: str | None = None  # clinvk's own, when the client asks for it (include_reasoning)

    @model_serializer(mode="wrap")
    def _without_absent_extras(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """No ``tool_calls: null`` (or the like) keys: clients test for their presence."""
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if v is not None or k not in _OPTIONAL_KEYS}


_OPTIONAL_KEYS = frozenset({"tool_calls", "function_call", "reasoning_content"})


FinishReason = Literal["stop", "length", "tool_calls", "function_call"]


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason
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
