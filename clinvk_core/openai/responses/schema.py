"""Pydantic models of a Responses API request, as much as clinvk reads.

Strict like chat's (``"stream": "yes"`` is a 400), unknown fields accepted and ignored. ``input``
items are checked one by one (:mod:`.items`), so that an error names the item it is about.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from clinvk_core.openai.schema import StrictRequest

Role = Literal["user", "assistant", "system", "developer"]


class ContentPart(StrictRequest):
    """A part of a message's content, or of a function's output: text or an image."""

    type: str
    text: str | None = None
    refusal: str | None = None  # an assistant's refusal part
    image_url: str | None = None
    file_id: str | None = None
    detail: str | None = None  # accepted; every CLI takes the image as it is


Parts = Annotated[list[ContentPart], Field(min_length=1)]


class MessageItem(StrictRequest):
    type: Literal["message"] = "message"
    role: Role
    content: str | Parts
    id: str | None = None


class FunctionCallItem(StrictRequest):
    """A call the model made earlier (from a response's output, sent back by the client)."""

    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str
    arguments: str
    namespace: str | None = None
    id: str | None = None


class FunctionCallOutputItem(StrictRequest):
    """What the client's function answered to the call ``call_id``."""

    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: str | Parts
    id: str | None = None


Item = MessageItem | FunctionCallItem | FunctionCallOutputItem


class FunctionTool(StrictRequest):
    """A function the client offers: the flat Responses shape (no nested ``function`` as in chat)."""

    type: Literal["function"]
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class TextConfig(StrictRequest):
    format: dict[str, Any] | None = None
    verbosity: str | None = None  # accepted; no CLI has such a setting


class ReasoningConfig(StrictRequest):
    effort: str | None = None
    summary: str | None = None  # accepted: what reasoning a CLI shows, it shows as a summary
    generate_summary: str | None = None


class ResponseCreateRequest(StrictRequest):
    """POST /responses. Fields not listed in docs/responses.md are type-checked, then ignored."""

    model: str
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    previous_response_id: str | None = None
    store: bool | None = None
    stream: bool | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    metadata: dict[str, str] | None = None
    include: list[str] | None = None
    # Refused when set: clinvk cannot honour them (a 400 says why).
    background: bool | None = None
    conversation: str | dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None
    top_logprobs: int | None = None
    # Accepted and ignored, but still type-checked.
    max_tool_calls: int | None = None
    truncation: str | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    service_tier: str | None = None
    stream_options: dict[str, Any] | None = None
