"""Events -> Anthropic objects: the message of a whole answer, usage, stop reasons. Pure functions."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from clinvk_core.answer import Answer
from clinvk_core.anthropic.schema import (
    MessageOut,
    StopReason,
    TextBlock,
    ThinkingBlock,
    ToolUseBlock,
    Usage,
)
from clinvk_core.anthropic.stops import cut
from clinvk_core.errors import UpstreamFailed
from clinvk_core.events import Completed, FinishReason, TokenUsage

STOP_REASONS: dict[FinishReason, StopReason] = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


@dataclass(frozen=True)
class MessageMeta:
    """What the message of one request is made with, beyond its events."""

    id: str
    model: str  # echoes the requested model string
    stop_sequences: tuple[str, ...] = ()
    show_thinking: bool = False  # the request enabled thinking, and did not ask for it omitted


def message_id() -> str:
    return f"msg_{secrets.token_hex(12)}"


def tool_use_id() -> str:
    return f"toolu_{secrets.token_hex(12)}"


def usage_of(usage: TokenUsage | None) -> Usage:
    """The CLI's own counts: input not read from the cache, cache reads, output.

    0s when the CLI reported none (codex and gemini, for a turn that a client tool call ends before
    their own end): Anthropic's usage has no way to say "unknown", and an estimate would be a lie.
    """
    if usage is None:
        return Usage(input_tokens=0, output_tokens=0)
    return Usage(
        input_tokens=usage.prompt_tokens - usage.cached_tokens,
        output_tokens=usage.completion_tokens,
        cache_read_input_tokens=usage.cached_tokens,
    )


def stop_reason(completed: Completed, stop_sequence: str | None) -> StopReason:
    return "stop_sequence" if stop_sequence is not None else STOP_REASONS[completed.finish_reason]


def tool_input(arguments: str) -> dict[str, Any]:
    """A call's arguments as the object a ``tool_use`` block holds."""
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise UpstreamFailed("The model called a tool with arguments that are not a JSON object.")
    return value


def message(meta: MessageMeta, answer: Answer) -> MessageOut:
    """The message of a whole answer: thinking (when asked), text (cut at a stop sequence), tool calls."""
    text, matched = cut(answer.text, meta.stop_sequences)
    content: list[ThinkingBlock | TextBlock | ToolUseBlock] = []
    if meta.show_thinking and answer.reasoning:
        content.append(ThinkingBlock(thinking=answer.reasoning))
    if text:
        content.append(TextBlock(text=text))
    if not matched:  # else the model stopped at the sequence, before any later call
        content += [ToolUseBlock(id=tool_use_id(), name=c.name, input=tool_input(c.arguments)) for c in answer.calls]
    return MessageOut(
        id=meta.id,
        model=meta.model,
        content=content or [TextBlock(text="")],  # an empty answer is an empty text, as in a stream
        stop_reason=stop_reason(answer.completed, matched),
        stop_sequence=matched,
        usage=usage_of(answer.completed.usage),
    )
