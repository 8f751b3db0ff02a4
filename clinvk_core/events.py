"""The small event vocabulary every backend's output is parsed into.

Backends turn their CLI's JSON lines into these; everything above the backends
(gateway, OpenAI layer) only ever sees these types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Token counts as the upstream reported them through the CLI."""

    prompt_tokens: int  # every input token, cached ones included
    completion_tokens: int
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class SessionStarted:
    """The CLI announced its session (useful in logs, and to resume later)."""

    session_id: str


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the answer, as soon as the CLI printed it."""

    text: str


@dataclass(frozen=True, slots=True)
class Completed:
    """The turn ended normally."""

    usage: TokenUsage | None
    finish_reason: FinishReason = "stop"
    final_text: str | None = None  # the answer as the CLI restates it at the end, when it does


@dataclass(frozen=True, slots=True)
class Failed:
    """The CLI reported a failure; the provider's HTTP status and retry delay when known."""

    message: str
    upstream_status: int | None = None
    retry_after: int | None = None  # seconds


Event = SessionStarted | TextDelta | Completed | Failed
