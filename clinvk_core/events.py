"""The small event vocabulary every backend's output is parsed into.

Backends turn their CLI's JSON lines into these; everything above the backends
(gateway, wire formats) only ever sees these types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FinishReason = Literal["stop", "length", "tool_calls"]


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Token counts as the upstream reported them through the CLI."""

    prompt_tokens: int  # every input token, cached ones included
    completion_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0  # of the completion tokens, when the CLI says

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cached_tokens + other.cached_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )


@dataclass(frozen=True, slots=True)
class RunStarted:
    """The turn's CLI is running: started for it, or started ahead and taken from a warm pool (logged)."""

    warm: bool


@dataclass(frozen=True, slots=True)
class SessionStarted:
    """The CLI announced its session (useful in logs, and to resume later)."""

    session_id: str


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the answer, as soon as the CLI printed it."""

    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """A piece of the model's visible reasoning (never part of the answer's text)."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallStarted:
    """The model began a call of the client's tool ``name`` (the client's own name)."""

    index: int  # 0, 1, ... in the order the model made its calls this turn
    name: str


@dataclass(frozen=True, slots=True)
class ToolCallArguments:
    """A piece of a started call's arguments (JSON text), as the CLI reported it."""

    index: int
    delta: str


@dataclass(frozen=True, slots=True)
class ToolCallDone:
    """A call is complete: its name and whole arguments (a JSON object's text)."""

    index: int
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Completed:
    """The turn ended: normally, at a length limit, or with calls of client tools."""

    usage: TokenUsage | None
    finish_reason: FinishReason = "stop"
    final_text: str | None = None  # the answer as the CLI restates it at the end, when it does


@dataclass(frozen=True, slots=True)
class Failed:
    """The CLI reported a failure; the provider's HTTP status and retry delay when known."""

    message: str
    upstream_status: int | None = None
    retry_after: int | None = None  # seconds


ToolCallEvent = ToolCallStarted | ToolCallArguments | ToolCallDone
Event = RunStarted | SessionStarted | TextDelta | ReasoningDelta | ToolCallEvent | Completed | Failed
