"""Pydantic models of the Anthropic Messages and Models APIs, as much as clinvk reads or writes.

Requests are strict (``"max_tokens": "8"`` is a 400) and keep unknown fields, which are accepted and
ignored as Anthropic's own clients send them (``cache_control``, ``metadata``, ``context_management``...).
Content blocks are read loosely, each field typed, so that the translation can say in plain words which
block type is not supported instead of a union's validation error.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class Source(_Request):
    """Where an image is: ``base64`` (``media_type``, ``data``) or ``url``."""

    type: str
    media_type: str | None = None
    data: str | None = None
    url: str | None = None


class ContentBlock(_Request):
    """Any content block; which fields matter depends on ``type`` (checked when translated)."""

    type: str
    text: str | None = None  # text
    source: Source | str | None = None  # image
    id: str | None = None  # tool_use
    name: str | None = None  # tool_use
    input: dict[str, Any] | None = None  # tool_use
    tool_use_id: str | None = None  # tool_result
    content: str | list[ContentBlock] | None = None  # tool_result
    is_error: bool | None = None  # tool_result
    tool_name: str | None = None  # tool_reference (in a tool result of Claude Code's tool search)
    tool: dict[str, Any] | None = None  # tool_addition, tool_removal (in a system turn)


class Message(_Request):
    role: Literal["user", "assistant", "system"]  # system: a system turn mid-conversation (Claude Code)
    content: str | list[ContentBlock]


class Tool(_Request):
    name: str
    type: str | None = None  # absent or "custom"; others are Anthropic's server tools
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    defer_loading: bool | None = None  # offered once a tool_reference names it (tool search)


class ToolChoice(_Request):
    type: str
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class OutputConfig(_Request):
    effort: str | None = None
    format: dict[str, Any] | None = None


class Thinking(_Request):
    type: str
    budget_tokens: int | None = None
    display: str | None = None


class CountTokensRequest(_Request):
    """POST /v1/messages/count_tokens: what a message request has, but the sampling and streaming."""

    model: str
    messages: list[Message] = Field(min_length=1)
    system: str | list[ContentBlock] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None
    output_config: OutputConfig | None = None
    mcp_servers: list[Any] | None = None


class MessagesRequest(CountTokensRequest):
    """POST /v1/messages."""

    max_tokens: int
    stream: bool | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    metadata: dict[str, Any] | None = None
    service_tier: str | None = None


# --- responses ------------------------------------------------------------------------------------


class TextBlock(BaseModel):
    type: Literal["text"] = "text"
    text: str


class ThinkingBlock(BaseModel):
    type: Literal["thinking"] = "thinking"
    thinking: str
    signature: str = ""  # nothing to sign: the CLIs take no thinking back, and clinvk ignores it in history


class ToolUseBlock(BaseModel):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]


class Usage(BaseModel):
    input_tokens: int  # not read from the cache
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]


class MessageOut(BaseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[ThinkingBlock | TextBlock | ToolUseBlock]
    stop_reason: StopReason | None
    stop_sequence: str | None = None
    usage: Usage


class ModelInfo(BaseModel):
    type: Literal["model"] = "model"
    id: str
    display_name: str
    created_at: str = "2024-01-01T00:00:00Z"  # the OpenAI side's `created`; the CLIs give no date
    lifecycle: Literal["active"] = "active"


class ModelList(BaseModel):
    data: list[ModelInfo]
    has_more: bool = False
    first_id: str | None
    last_id: str | None
